#!/usr/bin/env bash
# A real player through streamedge: ffmpeg (the Debian package) plays the origin simulator's live
# HLS and live DASH through the edge for 30 s each and must decode them without errors.
#
#   scripts/player_test.sh
#
# 1. installs ffmpeg if missing (apt-get, non-interactive, --no-install-recommends)
# 2. makes 85 s of real media with ffmpeg in a temporary directory (320x240 test pattern at
#    25 fps, H.264 with a key frame every second, a 48 kHz AAC tone), cut into 1 s MPEG-TS
#    segments and 1 s fMP4 (CMAF) segments with one init segment per track
# 3. starts build/release/tests/origin_sim --media-dir on that media, and
#    build/release/proxy/streamedge in front of it, on free loopback ports
# 4. for HLS and then DASH: two ffmpeg players at once on the same live stream through the edge
#    (`-t 30 -f null -`, each bounded by `timeout 60`), and checks each player's exit status,
#    that it logged nothing at level error, that it decoded >= 90 % of 30 s x 25 frames, and that
#    the edge served the players (streamedge_requests_total moved, hits among them) while the
#    simulator saw no more segment requests than the players made
# 5. stops every process it started (by PID) and prints a summary; exits 1 on any failure.
#
# Knobs: PLAYER_SECONDS=30, PLAYER_KEEP=1 (keep the work directory and print its path),
# STREAMEDGE_SKIP_BUILD=1 (use the binaries already in build/release).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STREAMEDGE_ROOT"

PLAY_S=${PLAYER_SECONDS:-30}
# The simulator maps live segments to files from its start on (file k = the k-th second since
# the start of its first live window), and HLS then DASH play one after the other, so the media
# must outlast both plays and the start-ups: then no player sees the files wrap around.
MEDIA_S=$((2 * PLAY_S + 25))
FPS=25
SIM_BIN=build/release/tests/origin_sim
EDGE_BIN=build/release/proxy/streamedge

( ensure_packages ffmpeg ) || die "could not install ffmpeg"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/streamedge-player.XXXXXX")
PIDS=()
cleanup() {
  local p i alive
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do  # at most 10 s for a graceful stop, then SIGKILL
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ "${PLAYER_KEEP:-0}" == 1 ]]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# ---- media ------------------------------------------------------------------------------
# One encode, then the same packets cut two ways (so HLS and DASH carry the same codecs):
#   $WORK/media/hls/seg_<k>.ts                 k = 0 .. MEDIA_S-1
#   $WORK/media/dash/<video|audio>/init.mp4    one init segment per track
#   $WORK/media/dash/<video|audio>/seg_<k>.m4s k = 0 .. MEDIA_S-1
make_media() {
  local m=$WORK/media src=$WORK/src.mp4 raw=$WORK/dash-raw
  mkdir -p "$m/hls" "$m/dash/video" "$m/dash/audio" "$raw"
  timeout 120 ffmpeg -nostdin -v error \
    -f lavfi -i "testsrc=size=320x240:rate=$FPS" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$MEDIA_S" -c:v libx264 -preset ultrafast -pix_fmt yuv420p -g "$FPS" -keyint_min "$FPS" \
    -sc_threshold 0 -c:a aac -b:a 64k -ac 2 "$src"
  timeout 60 ffmpeg -nostdin -v error -i "$src" -c copy -f hls -hls_time 1 -hls_list_size 0 \
    -hls_segment_filename "$m/hls/seg_%d.ts" "$WORK/hls-vod.m3u8"
  # The DASH muxer numbers from 1 and names tracks by stream index (0 video, 1 audio).
  # shellcheck disable=SC2016  # $RepresentationID$ and $Number$ are the DASH muxer's templates
  timeout 60 ffmpeg -nostdin -v error -i "$src" -c copy -f dash -seg_duration 1 -use_template 1 \
    -use_timeline 0 -init_seg_name 'init-$RepresentationID$.m4s' \
    -media_seg_name 'seg-$RepresentationID$-$Number$.m4s' "$raw/vod.mpd"
  local idx name f n
  for idx in 0 1; do
    name=video
    ((idx == 1)) && name=audio
    mv "$raw/init-$idx.m4s" "$m/dash/$name/init.mp4"
    for f in "$raw"/seg-"$idx"-*.m4s; do
      n=${f##*-}
      n=${n%.m4s}
      mv "$f" "$m/dash/$name/seg_$((n - 1)).m4s"
    done
  done
  local nts nv na
  nts=$(find "$m/hls" -name 'seg_*.ts' | wc -l)
  nv=$(find "$m/dash/video" -name 'seg_*.m4s' | wc -l)
  na=$(find "$m/dash/audio" -name 'seg_*.m4s' | wc -l)
  ((nts >= MEDIA_S && nv >= MEDIA_S && na >= MEDIA_S)) ||
    die "ffmpeg made too few segments: $nts TS, $nv video, $na audio (want $MEDIA_S)"
  log "media: $nts TS segments, $nv+$na fMP4 segments of 1 s in $m"
}

# ---- servers -----------------------------------------------------------------------------
# A random free port below the kernel's ephemeral range (as scripts/bench/common.sh picks them),
# not one of the ports already taken by this script.
TAKEN=()
free_port() {
  local p n
  for ((n = 0; n < 50; n++)); do
    p=$((20000 + RANDOM % 12000))
    [[ " ${TAKEN[*]} " == *" $p "* ]] && continue
    port_in_use "$p" || { TAKEN+=("$p"); echo "$p"; return 0; }
  done
  return 1
}

# start_sim: the simulator on a free port (three tries: another process may take the port
# between the check and the bind). Sets SIM_PORT.
start_sim() {
  local try
  for ((try = 0; try < 3; try++)); do
    SIM_PORT=$(free_port) || die "no free port"
    TAKEN+=("$SIM_PORT")
    "$SIM_BIN" --listen "127.0.0.1:$SIM_PORT" --name player --target-duration 1 \
      --media-dir "$WORK/media" >"$WORK/sim.log" 2>&1 &
    PIDS+=($!)
    wait_for_port "$SIM_PORT" 10 "$!" && return 0
  done
  die "origin simulator did not start: $(tail -3 "$WORK/sim.log")"
}

# start_edge: streamedge in front of the simulator, access log to a file. Sets EDGE_PORT and
# ADMIN_PORT.
start_edge() {
  local try
  for ((try = 0; try < 3; try++)); do
    EDGE_PORT=$(free_port) || die "no free port"
    ADMIN_PORT=$(free_port) || die "no free port"
    TAKEN+=("$EDGE_PORT" "$ADMIN_PORT")
    cat >"$WORK/edge.toml" <<CONF
[server]
workers = 2
[admin]
address = "127.0.0.1:$ADMIN_PORT"
[[listener]]
address = "127.0.0.1:$EDGE_PORT"
[cache.ram]
size = "64MiB"
[log]
access_log = "$WORK/access.log"
[[origin_group]]
name = "sim"
  [[origin_group.origin]]
  url = "http://127.0.0.1:$SIM_PORT"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "sim"
CONF
    "$EDGE_BIN" -c "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
    PIDS+=($!)
    wait_for_port "$EDGE_PORT" 10 "$!" && wait_for_port "$ADMIN_PORT" 5 "$!" && return 0
  done
  die "streamedge did not start: $(tail -3 "$WORK/edge.log")"
}

# ---- measurements ------------------------------------------------------------------------
# metric_sum NAME [LABEL_MATCH]: the sum of the series of NAME in streamedge's /metrics whose
# labels contain LABEL_MATCH (e.g. 'result="hit"').
metric_sum() {
  curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk -v name="$1" -v match_="${2:-}" '
      index($0, name "{") == 1 || index($0, name " ") == 1 {
        if (match_ == "" || index($0, match_) > 0) s += $NF
      }
      END { printf "%d\n", s }'
}

# sim_requests REGEX: requests the simulator counted for paths matching REGEX.
sim_requests() {
  curl -fsS --max-time 5 "http://127.0.0.1:$SIM_PORT/_sim/counts" | tr -d '{}' | tr ',' '\n' |
    awk -F'":' -v re="$1" '{ p = substr($1, 2); if (p ~ re) s += $2 } END { printf "%d\n", s }'
}

# edge_requests REGEX [CACHE]: access-log lines whose path matches REGEX (and whose "cache" is
# CACHE, e.g. HIT).
edge_requests() {
  local re=$1 cache=${2:-}
  awk -v re="$re" -v cache="$cache" '
    {
      p = $0; sub(/.*"path":"/, "", p); sub(/".*/, "", p)
      c = $0; sub(/.*"cache":"/, "", c); sub(/".*/, "", c)
      if (p ~ re && (cache == "" || c == cache)) n++
    }
    END { printf "%d\n", n }' "$WORK/access.log" 2>/dev/null || echo 0
}

FAILURES=()
SUMMARY=()
fail_check() { FAILURES+=("$1"); warn "$1"; }

# play LABEL PATH SEGMENT_REGEX: two ffmpeg players on http://edge/PATH (the second a second
# later, so that it finds the first one's segments in the cache), then the checks.
play() {
  local label=$1 seg_re=$3 url="http://127.0.0.1:$EDGE_PORT$2"
  local min_frames=$((PLAY_S * FPS * 9 / 10))
  local req0 hit0 req1 hit1 i pids=() rcs=() frames errors warnings line=""
  req0=$(metric_sum streamedge_requests_total)
  hit0=$(metric_sum streamedge_requests_total 'result="hit"')
  log "$label: 2 players on $url for ${PLAY_S}s"
  for i in 1 2; do
    timeout 60 ffmpeg -nostdin -loglevel level+warning -i "$url" -t "$PLAY_S" -f null \
      -progress "$WORK/$label-$i.progress" -nostats - >/dev/null 2>"$WORK/$label-$i.err" &
    pids+=($!)
    ((i == 1)) && sleep 1
  done
  for i in 0 1; do
    rcs[i]=0
    wait "${pids[i]}" || rcs[i]=$?
  done
  sleep 0.5  # the access log reaches its file within ~110 ms
  for i in 1 2; do
    frames=$(grep -E '^frame=' "$WORK/$label-$i.progress" 2>/dev/null | tail -n1 | cut -d= -f2)
    frames=${frames:-0}
    errors=$(grep -cE '\[(error|fatal|panic)\]' "$WORK/$label-$i.err" || true)
    warnings=$(grep -c '\[warning\]' "$WORK/$label-$i.err" || true)
    line+=" player$i: exit ${rcs[i - 1]}, $frames frames, $errors errors, $warnings warnings;"
    ((rcs[i - 1] == 0)) || fail_check "$label player $i: ffmpeg exited ${rcs[i - 1]} (124: timed out)"
    ((errors == 0)) || fail_check "$label player $i: $errors lines at level error"
    ((frames >= min_frames)) || fail_check "$label player $i: $frames frames decoded, want >= $min_frames"
    if ((errors > 0 || warnings > 0)); then
      sed -n '1,5p' "$WORK/$label-$i.err" >&2
    fi
  done
  req1=$(metric_sum streamedge_requests_total)
  hit1=$(metric_sum streamedge_requests_total 'result="hit"')
  local edge_seg edge_hit edge_coalesced sim_seg
  edge_seg=$(edge_requests "$seg_re")
  edge_hit=$(edge_requests "$seg_re" HIT)
  edge_coalesced=$(edge_requests "$seg_re" COALESCED)
  sim_seg=$(sim_requests "$seg_re")
  line+=" edge: $((req1 - req0)) requests ($((hit1 - hit0)) hits), $edge_seg for segments"
  line+=" ($edge_hit hits, $edge_coalesced coalesced);"
  line+=" origin: $sim_seg segment requests"
  ((req1 > req0)) || fail_check "$label: streamedge_requests_total did not move"
  ((hit1 > hit0)) || fail_check "$label: no cache hit in streamedge_requests_total"
  ((edge_seg > 0 && edge_hit > 0)) ||
    fail_check "$label: the access log shows $edge_seg segment requests, $edge_hit hits"
  ((sim_seg > 0 && sim_seg <= edge_seg)) ||
    fail_check "$label: the simulator saw $sim_seg segment requests for $edge_seg through the edge"
  SUMMARY+=("$label:$line")
}

# ---- run ---------------------------------------------------------------------------------
if [[ "${STREAMEDGE_SKIP_BUILD:-0}" != 1 ]]; then
  release_build origin_sim streamedge
fi
for b in "$SIM_BIN" "$EDGE_BIN"; do [[ -x "$b" ]] || die "$b not built"; done

log "making $MEDIA_S s of media with ffmpeg"
make_media
start_sim
start_edge
log "origin_sim on 127.0.0.1:$SIM_PORT, streamedge on 127.0.0.1:$EDGE_PORT (admin $ADMIN_PORT)"

play HLS /live/main/index.m3u8 '^/live/main/seg_[0-9]+[.]ts$'
play DASH /dash/manifest.mpd '^/dash/(video|audio)/seg_[0-9]+[.]m4s$'

echo
printf '%s==> player test summary%s\n' "$_c_bold" "$_c_off"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
if ((${#FAILURES[@]} > 0)); then
  for line in "${FAILURES[@]}"; do printf '  %sFAIL%s %s\n' "$_c_red" "$_c_off" "$line"; done
  exit 1
fi
ok "player test passed: HLS and DASH played ${PLAY_S}s through streamedge"
