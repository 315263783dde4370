#!/usr/bin/env bash
# A real player through streamedge: ffmpeg (the Debian package) plays the origin simulator's live
# HLS and live DASH through the edge for 30 s each and must decode them without errors.
#
#   scripts/player_test.sh
#
# 1. installs ffmpeg if missing (apt-get, non-interactive, --no-install-recommends)
# 2. makes 45 s of real media with ffmpeg in a temporary directory (320x240 test pattern at
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
MEDIA_S=$((PLAY_S + 15))  # the live window and the player's start-up come before the 30 s
FPS=25
SIM_BIN=build/release/tests/origin_sim
EDGE_BIN=build/release/proxy/streamedge

( ensure_packages ffmpeg ) || die "could not install ffmpeg"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/streamedge-player.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
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

log "making $MEDIA_S s of media with ffmpeg"
make_media
