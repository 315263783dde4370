#!/usr/bin/env bash
# Instructions per 2 KiB hit, counted by valgrind's callgrind: a figure that does not move with
# the load on a shared machine (wall-clock and CPU-time ratios do), for before/after comparisons
# of the hit path. Counts every instruction inside the worker's event loop (parse, lookup,
# delivery, libevent, system call wrappers; not the kernel) over a 10 s wrk run against one
# cached object, divided by the requests served.
#
#   scripts/bench/hit_instructions.sh                          # build/release/proxy/streamedge
#   scripts/bench/hit_instructions.sh OLD_BINARY NEW_BINARY    # one line per binary
#
# Knobs: HIT_SECONDS=10, HIT_PORT_BASE=18180 (proxy; +1 origin_sim, +11 admin),
# ORIGIN_SIM_BIN=build/release/tests/origin_sim.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$STREAMEDGE_ROOT" || exit 1

( ensure_packages --no-start-services valgrind wrk curl ) || die "could not install valgrind, wrk, curl"
SECONDS_RUN=${HIT_SECONDS:-10}
PORT=${HIT_PORT_BASE:-18180}
SIM_PORT=$((PORT + 1))
ADMIN_PORT=$((PORT + 11))
SIM=${ORIGIN_SIM_BIN:-build/release/tests/origin_sim}
[[ -x "$SIM" ]] || die "origin simulator not found at $SIM (build it first)"
(($# > 0)) || set -- build/release/proxy/streamedge
WORK=$(mktemp -d "${TMPDIR:-/tmp}/streamedge-hit.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$WORK"' EXIT
URL="http://127.0.0.1:$PORT/obj/hit/playlist.m3u8?size=2048"

cat >"$WORK/edge.toml" <<CONF
[server]
workers = 1
[admin]
address = "127.0.0.1:$ADMIN_PORT"
[[listener]]
address = "127.0.0.1:$PORT"
[cache.ram]
size = "64MiB"
[log]
access_log = "off"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:$SIM_PORT"
  dc = "dc-a"
  priority = 1
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
CONF

requests() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^streamedge_requests_total/ {s += $2} END {printf "%d", s}'
}

for bin in "$@"; do
  [[ -x "$bin" ]] || die "not an executable: $bin"
  "$SIM" --listen "127.0.0.1:$SIM_PORT" --name dc-a >"$WORK/sim.log" 2>&1 &
  sim=$!
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect=event_base_loop \
    --callgrind-out-file="$WORK/cg.%p" "$bin" -c "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
  edge=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "$URL" && break; sleep 0.5; done
  wrk -t1 -c8 -d2s "$URL" >/dev/null             # the object is a hit from here on
  wrk -t1 -c8 -d"${SECONDS_RUN}s" "$URL" >/dev/null
  served=$(requests)
  kill -TERM "$edge"; wait "$edge"
  kill -TERM "$sim"; wait "$sim" 2>/dev/null
  ir=0
  for f in "$WORK"/cg.*; do
    n=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    ir=$((ir + ${n:-0}))
  done
  rm -f "$WORK"/cg.*
  ((served > 0)) || die "$bin served no request (log: $(tail -3 "$WORK/edge.log"))"
  printf '%s: %d requests, %d instructions per request\n' "$bin" "$served" $((ir / served))
done
