#!/usr/bin/env bash
# 200 simulated LL-HLS viewers straight to the origin simulator and then through streamedge:
# origin requests per second and how late the viewers had each part (tests/support/
# ll_viewers_main.cc: a blocking playlist reload for the hinted part, then the part, at the live
# edge, over and over; latency = answer arrived − the part was complete at the origin).
#
#   scripts/bench/ll_hls.sh
#
# Knobs: LL_VIEWERS=200, LL_SECONDS=20, LL_TARGET_S=2, LL_PART_MS=500, BENCH_SKIP_BUILD=1.
# The simulator and streamedge (one worker) share CPU 0, the viewers run on CPU 1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$STREAMEDGE_ROOT" || exit 1

VIEWERS=${LL_VIEWERS:-200}
RUN_SECONDS=${LL_SECONDS:-20}
TARGET_S=${LL_TARGET_S:-2}
PART_MS=${LL_PART_MS:-500}
LOAD_CPU=0
VIEWER_CPU=1
( ensure_packages --no-start-services curl ) || die "could not install curl"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || die "cmake failed"
  cmake --build build/release -j2 --target streamedge origin_sim ll_viewers >/dev/null || die "build failed"
fi
SIM_BIN=build/release/tests/origin_sim
VIEWERS_BIN=build/release/tests/ll_viewers
EDGE_BIN=build/release/proxy/streamedge
for b in "$SIM_BIN" "$VIEWERS_BIN" "$EDGE_BIN"; do [[ -x "$b" ]] || die "$b not built"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/streamedge-llhls.XXXXXX") || die "mktemp failed"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

SIM_PORT=$(port)
setsid taskset -c "$LOAD_CPU" "$SIM_BIN" --listen "127.0.0.1:$SIM_PORT" --name ll \
  --target-duration "$TARGET_S" --part-ms "$PART_MS" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_for_port "$SIM_PORT" 10 "$!" || die "origin simulator did not start"
EDGE_PORT=$(port)
ADMIN_PORT=$(port)
cat >"$WORK/edge.toml" <<CONF
[server]
workers = 1
[admin]
address = "127.0.0.1:$ADMIN_PORT"
[[listener]]
address = "127.0.0.1:$EDGE_PORT"
[cache.ram]
size = "256MiB"
[log]
access_log = "off"
$(se_routes)
CONF
setsid taskset -c "$LOAD_CPU" "$EDGE_BIN" -c "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
PIDS+=($!)
wait_for_port "$EDGE_PORT" 10 "$!" || die "streamedge did not start: $(tail -3 "$WORK/edge.log")"

origin_requests() {  # every request the simulator has counted
  curl -s "http://127.0.0.1:$SIM_PORT/_sim/counts" |
    tr ',' '\n' | awk -F: '{gsub(/[^0-9]/, "", $NF); s += $NF} END {print s + 0}'
}

run() {  # $1 = label, $2 = port, $3 = rendition
  local before after line
  before=$(origin_requests)
  line=$(taskset -c "$VIEWER_CPU" "$VIEWERS_BIN" --port "$2" --path "/ll/$3/index.m3u8" \
         --viewers "$VIEWERS" --seconds "$RUN_SECONDS" --target-s "$TARGET_S" --part-ms "$PART_MS")
  after=$(origin_requests)
  printf '%-10s %s origin_requests_per_s=%s\n' "$1" "$line" \
    "$(awk -v a="$before" -v b="$after" -v s="$RUN_SECONDS" 'BEGIN { printf "%.1f", (b - a) / s }')"
}

log "$VIEWERS LL-HLS viewers, ${RUN_SECONDS}s each, target ${TARGET_S}s, parts ${PART_MS}ms"
run direct "$SIM_PORT" direct
run edge "$EDGE_PORT" edge
