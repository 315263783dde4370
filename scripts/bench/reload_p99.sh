#!/usr/bin/env bash
# Reload and upgrade latency benchmark: what a steady client load sees while the proxy reloads
# its config (SIGHUP) or upgrades its binary in place (SIGUSR2), against the same load with no
# event. Three phases of RELOAD_SECONDS each, on the same running proxy (an SSD store attached,
# so that upgrades hand it over):
#   baseline  no event
#   reload    RELOAD_COUNT SIGHUPs, evenly spread
#   upgrade   UPGRADE_COUNT SIGUSR2s, evenly spread; each waits (≤ 60 s) until /status names a
#             new pid before the next (the upgrade starts the same binary again)
# The load (tests/support/steady_load_main.cc) runs LOAD_KEEP_ALIVE keep-alive clients and
# LOAD_FRESH clients that connect for every request, on small cacheable objects (hits after
# the first round), and checks every byte; a keep-alive connection closed between two requests
# is retried once (as browsers and players do) and counted as a retry, not a failure.
# Prints one table row per phase: requests, failed, refused, retried, p50, p99, max.
#
# Knobs: RELOAD_SECONDS=30 RELOAD_COUNT=10 UPGRADE_COUNT=3 LOAD_KEEP_ALIVE=6 LOAD_FRESH=2
#        BENCH_SE_CPU=0 BENCH_LOAD_CPU=1 BENCH_SKIP_BUILD=1 STREAMEDGE_BIN=...
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$STREAMEDGE_ROOT" || exit 1

PHASE_SECONDS=${RELOAD_SECONDS:-30}
RELOADS=${RELOAD_COUNT:-10}
UPGRADES=${UPGRADE_COUNT:-3}
KEEP_ALIVE=${LOAD_KEEP_ALIVE:-6}
FRESH=${LOAD_FRESH:-2}
SE_CPU=${BENCH_SE_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SIM_BIN=build/release/tests/origin_sim
LOAD_BIN=build/release/tests/steady_load
SE_BIN=$(realpath "${STREAMEDGE_BIN:-build/release/proxy/streamedge}")

ensure_packages curl
[[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] || release_build streamedge origin_sim steady_load
[[ -x "$SE_BIN" && -x "$SIM_BIN" && -x "$LOAD_BIN" ]] || die "build/release binaries missing"
((PHASE_SECONDS >= 10)) || die "RELOAD_SECONDS must be at least 10"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/streamedge-reload.XXXXXX") || die "mktemp failed"
PIDS=()
SE_GROUP=""
cleanup() {
  local p
  # The proxy's process group outlives upgrades (the new process is the old one's child).
  [[ -n "$SE_GROUP" ]] && kill -TERM -- "-$SE_GROUP" 2>/dev/null
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT
head -c 32 /dev/urandom >"$WORK/store.key"
chmod 600 "$WORK/store.key"
start_sim

PORT=$(port)
ADMIN=$(port)
cat >"$WORK/se.toml" <<CONF
[server]
workers = 1
drain_timeout = "10s"
upgrade_timeout = "30s"
[admin]
address = "127.0.0.1:$ADMIN"
[[listener]]
address = "127.0.0.1:$PORT"
[cache.ram]
size = "256MiB"
[cache.ssd]
path = "$WORK/store"
size = "1GiB"
key_file = "$WORK/store.key"
[log]
access_log = "off"
$(se_routes)
CONF
setsid taskset -c "$SE_CPU" "$SE_BIN" -c "$WORK/se.toml" >>"$WORK/se.log" 2>&1 &
SE_GROUP=$!
wait_for_port "$PORT" 30 "$SE_GROUP" || die "streamedge did not start (see $WORK/se.log)"

main_pid() { curl -s --max-time 2 "http://127.0.0.1:$ADMIN/status" | sed -nE 's/.*"pid":([0-9]+).*/\1/p'; }

# phase NAME SIGNAL COUNT: the load for PHASE_SECONDS with COUNT signals to the main process.
phase() {
  local name=$1 sig=$2 count=$3 lp pid i t now gap line
  taskset -c "$LOAD_CPU" "$LOAD_BIN" --port "$PORT" --seconds "$PHASE_SECONDS" \
    --keep-alive "$KEEP_ALIVE" --fresh "$FRESH" --out "$WORK/$name.samples" >"$WORK/$name.out" &
  lp=$!
  if ((count > 0)); then
    # Events from 2 s in to 2 s before the end, evenly spread.
    gap=$(awk -v s="$PHASE_SECONDS" -v n="$count" 'BEGIN { printf "%.3f", (s - 4) / n }')
    sleep 2
    for ((i = 0; i < count; i++)); do
      t=$(date +%s%N)
      pid=$(main_pid)
      [[ -n "$pid" ]] || die "no /status answer (see $WORK/se.log)"
      kill "-$sig" "$pid"
      if [[ "$sig" == USR2 ]]; then
        for ((j = 0; j < 600; j++)); do
          now=$(main_pid)
          [[ -n "$now" && "$now" != "$pid" ]] && break
          sleep 0.1
        done
        [[ -n "$now" && "$now" != "$pid" ]] || die "upgrade $((i + 1)) did not take over within 60 s (see $WORK/se.log)"
      fi
      now=$(date +%s%N)
      sleep "$(awk -v g="$gap" -v e="$(((now - t) / 1000000))" 'BEGIN { r = g - e / 1000; print (r > 0 ? r : 0) }')"
    done
  fi
  wait "$lp"
  line=$(cat "$WORK/$name.out")
  val() { sed -nE "s/.*$1=([0-9.]+).*/\1/p" <<<"$line"; }
  printf '| %s | %s | %s | %s | %s | %s ms | %s ms | %s ms |\n' "$name" "$(val requests)" \
    "$(val failed)" "$(val refused)" "$(val retried)" "$(val p50_ms)" "$(val p99_ms)" "$(val max_ms)"
}

log "streamedge $("$SE_BIN" --version | head -1), $KEEP_ALIVE keep-alive + $FRESH new-connection clients, ${PHASE_SECONDS}s per phase"
printf '| phase | requests | failed | refused | retried | p50 | p99 | max |\n'
printf '| --- | --: | --: | --: | --: | --: | --: | --: |\n'
phase baseline none 0
phase "reload-x$RELOADS" HUP "$RELOADS"
phase "upgrade-x$UPGRADES" USR2 "$UPGRADES"
grep -c "upgrade failed" "$WORK/se.log" >/dev/null && warn "$(grep "upgrade failed" "$WORK/se.log" | head -3)"
exit 0
