#!/usr/bin/env bash
# Failover benchmark: steady viewer load through streamedge on two origin simulators, "dc-a"
# (priority 1) and "dc-b" (priority 2), while dc-a is killed, restarted, made to reset every
# answer mid-body, made to hang, and healed. The load (failover_load) is a live HLS reload loop
# plus VOD segments that are always misses, so every switch is seen by fills in flight.
# Prints, per event, the requests started in the EVENT_WINDOW seconds after it: client-visible
# failures (errors and bad statuses), truncated bodies, wrong bytes (targets: 0) and the p99
# latency against the baseline before the first event.
#
#   scripts/bench/failover.sh
# Knobs: PHASE_SECONDS=8 (between events), EVENT_WINDOW=5, FO_CLIENTS=8, FO_VOD_SIZE=2097152
#        (bytes per VOD segment), BENCH_SKIP_BUILD=1, BENCH_PROXY_CPU=0, BENCH_LOAD_CPU=1,
#        BENCH_KEEP=1 (keep the work directory: configs, logs, per-request samples),
#        FO_HEALTH_CHECK=0 (no active health checks: failures found by real traffic only).
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$STREAMEDGE_ROOT" || exit 1

PHASE=${PHASE_SECONDS:-8}
WINDOW=${EVENT_WINDOW:-5}
CLIENTS=${FO_CLIENTS:-8}
VOD_SIZE=${FO_VOD_SIZE:-2097152}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SIM_BIN=build/release/tests/origin_sim
LOAD_BIN=build/release/tests/failover_load
SE_BIN=build/release/proxy/streamedge

ensure_packages curl
[[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] || release_build streamedge origin_sim failover_load
[[ -x "$SE_BIN" && -x "$SIM_BIN" && -x "$LOAD_BIN" ]] || die "build/release binaries missing"

WORK=$(mktemp -d /tmp/streamedge-failover.XXXXXX)
PIDS=()
PRIMARY_PID=""
cleanup() {
  local p
  for p in "${PIDS[@]}" $PRIMARY_PID; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}" $PRIMARY_PID; do wait "$p" 2>/dev/null; done
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

A_PORT=$(port)
B_PORT=$(port)
SE_PORT=$(port)
ADMIN_PORT=$(port)

start_primary() {
  setsid taskset -c "$LOAD_CPU" "$SIM_BIN" --listen "127.0.0.1:$A_PORT" --name dc-a \
    >>"$WORK/dc-a.log" 2>&1 &
  PRIMARY_PID=$!
  wait_for_port "$A_PORT" 10 "$PRIMARY_PID" || die "dc-a did not start"
}
start_primary
setsid taskset -c "$LOAD_CPU" "$SIM_BIN" --listen "127.0.0.1:$B_PORT" --name dc-b >"$WORK/dc-b.log" 2>&1 &
PIDS+=($!)
wait_for_port "$B_PORT" 10 "$!" || die "dc-b did not start"

HEALTH_CHECK=""
if [[ "${FO_HEALTH_CHECK:-1}" == 1 ]]; then
  HEALTH_CHECK=$'  [origin_group.health_check]\n  path = "/healthz"\n  interval = "1s"'
fi
cat >"$WORK/streamedge.toml" <<CONF
[server]
workers = 1
[admin]
address = "127.0.0.1:$ADMIN_PORT"
[[listener]]
address = "127.0.0.1:$SE_PORT"
[cache.ram]
size = "512MiB"
[log]
access_log = "off"
[[origin_group]]
name = "main"
$HEALTH_CHECK
  [[origin_group.origin]]
  url = "http://127.0.0.1:$A_PORT"
  dc = "dc-a"
  priority = 1
  first_byte_timeout = "2s"
  read_timeout = "2s"
  [[origin_group.origin]]
  url = "http://127.0.0.1:$B_PORT"
  dc = "dc-b"
  priority = 2
  first_byte_timeout = "2s"
  read_timeout = "2s"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
CONF
setsid taskset -c "$PROXY_CPU" "$SE_BIN" -c "$WORK/streamedge.toml" >"$WORK/streamedge.log" 2>&1 &
PIDS+=($!)
wait_for_port "$SE_PORT" 10 "$!" || { tail -20 "$WORK/streamedge.log"; die "streamedge did not start"; }

TOTAL=$((PHASE * 6))
log "load: $CLIENTS clients for ${TOTAL}s (live reloads + ${VOD_SIZE}-byte VOD misses)"
taskset -c "$LOAD_CPU" "$LOAD_BIN" --port "$SE_PORT" --seconds "$TOTAL" --clients "$CLIENTS" \
  --vod-size "$VOD_SIZE" --out "$WORK/samples.txt" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!

now_ms() { date +%s%3N; }
sim_fault() { curl -sf "http://127.0.0.1:$A_PORT/_sim/fault?$1" >/dev/null; }
: >"$WORK/events.txt"
event() { echo "$(now_ms) $1" >>"$WORK/events.txt"; log "$(date +%T) $1"; }

sleep "$PHASE"; event "kill dc-a"
kill -KILL "$PRIMARY_PID"; wait "$PRIMARY_PID" 2>/dev/null; PRIMARY_PID=""
sleep "$PHASE"; event "restart dc-a"
start_primary
sleep "$PHASE"; event "dc-a resets mid-body"
sim_fault "all=1&mode=reset" || warn "could not arm the reset fault"
sleep "$PHASE"; event "dc-a hangs"
sim_fault "all=1&mode=hang" || warn "could not arm the hang fault"
sleep "$PHASE"; event "dc-a healed"
sim_fault "mode=off" || warn "could not disarm the faults"
wait "$LOAD_PID"
cat "$WORK/load.log"

/usr/bin/python3 - "$WORK/samples.txt" "$WORK/events.txt" "$WINDOW" <<'PY'
import sys
samples = [l.split() for l in open(sys.argv[1]) if l.strip()]
events = [l.rstrip("\n").split(" ", 1) for l in open(sys.argv[2]) if l.strip()]
window = float(sys.argv[3]) * 1000
rows = [(int(s[0]), float(s[1]), s[2], s[3]) for s in samples]
def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else float("nan")
first = int(events[0][0]) if events else max(r[0] for r in rows) + 1
start = min(r[0] for r in rows) + 2000
base = [r for r in rows if start <= r[0] < first]
base_p99 = p99([r[1] for r in base])
print("| phase | requests | failed | truncated | wrong bytes | p99 ms | added p99 ms |")
print("| --- | --: | --: | --: | --: | --: | --: |")
print(f"| baseline | {len(base)} | {sum(r[3] in ('error','status') for r in base)} | "
      f"{sum(r[3]=='truncated' for r in base)} | {sum(r[3]=='wrong' for r in base)} | {base_p99:.0f} | — |")
for t, name in events:
    t = int(t)
    w = [r for r in rows if t <= r[0] < t + window]
    q = p99([r[1] for r in w])
    print(f"| {name} | {len(w)} | {sum(r[3] in ('error','status') for r in w)} | "
          f"{sum(r[3]=='truncated' for r in w)} | {sum(r[3]=='wrong' for r in w)} | {q:.0f} | {q - base_p99:+.0f} |")
bad = [r for r in rows if r[3] != "ok"]
print(f"\nall: {len(rows)} requests, {len(bad)} not ok "
      f"({sum(r[3]=='truncated' for r in bad)} truncated, {sum(r[3]=='wrong' for r in bad)} wrong bytes)")
PY
