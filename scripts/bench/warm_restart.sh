#!/usr/bin/env bash
# Warm-restart benchmark: how long after a restart the proxy serves its first SSD hit, with the
# index checkpoint and without it (the whole store scanned), for several store sizes.
#
# Per size: ssd_fill writes a store file of that size (2 MiB objects under the keys of
# GET /obj/warm/<i>.ts, encrypted with a key file, 90 % full) and closes it gracefully (writing
# the checkpoint, as a proxy does at SIGTERM). Then, RUNS times each:
#   checkpoint: start streamedge on the store (background rebuild, the default) and ask for a
#               new object every few milliseconds until one is an SSD hit (X-Cache HIT: none of
#               them was ever in RAM) → milliseconds from exec to that answer; stop gracefully
#               (the proxy writes the checkpoint again)
#   full scan:  remove the checkpoint, the same → the time the whole-store scan costs
# The store file is on BENCH_STORE_DIR's disk, read with O_DIRECT (no page cache).
#
# Knobs: WARM_SIZES_GIB="1 4 8" WARM_OBJECT_KIB=2048 RUNS=3 BENCH_STORE_DIR=/var/tmp
#        BENCH_SKIP_BUILD=1
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$STREAMEDGE_ROOT" || exit 1

SIZES=${WARM_SIZES_GIB:-1 4 8}
RUNS=${RUNS:-3}
OBJECT_KIB=${WARM_OBJECT_KIB:-2048}
STORE_DIR=${BENCH_STORE_DIR:-/var/tmp}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SIM_BIN=build/release/tests/origin_sim
FILL_BIN=build/release/tests/ssd_fill
SE_BIN=${STREAMEDGE_BIN:-build/release/proxy/streamedge}

ensure_packages curl
[[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] || release_build streamedge origin_sim ssd_fill
[[ -x "$SE_BIN" && -x "$SIM_BIN" && -x "$FILL_BIN" ]] || die "build/release binaries missing"

WORK=$(mktemp -d "$STORE_DIR/streamedge-warm.XXXXXX") || die "mktemp in $STORE_DIR failed"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
head -c 32 /dev/urandom >"$WORK/store.key"
chmod 600 "$WORK/store.key"
start_sim

# first_ssd_hit SIZE_GIB: starts the proxy, returns (prints) milliseconds to the first SSD hit
# and stops it gracefully.
first_ssd_hit() {
  local size=$1 port admin conf="$WORK/se.toml" t0 t1 j=0 xc pid
  port=$(port)
  admin=$(port)
  cat >"$conf" <<CONF
[server]
workers = 1
[admin]
address = "127.0.0.1:$admin"
[[listener]]
address = "127.0.0.1:$port"
[cache.ram]
size = "256MiB"
[cache.ssd]
path = "$WORK/store"
size = "${size}GiB"
key_file = "$WORK/store.key"
[log]
access_log = "off"
[[origin_group]]
name = "sim"
  [[origin_group.origin]]
  url = "http://127.0.0.1:$SIM_PORT"
[[vhost]]
name = "warm"
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "sim"
CONF
  t0=$(date +%s%N)
  setsid "$SE_BIN" -c "$conf" >>"$WORK/se.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_for_port "$port" 30 "$pid" || die "streamedge did not start (see $WORK/se.log)"
  for ((j = 0; j < 20000; j++)); do
    xc=$(curl -s -o /dev/null -D - "http://127.0.0.1:$port/obj/warm/$j.ts" | tr -d '\r' |
      awk -F': ' 'tolower($1) == "x-cache" { print $2 }')
    if [[ "$xc" == HIT* ]]; then break; fi
    sleep 0.005
  done
  t1=$(date +%s%N)
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null
  [[ "$xc" == HIT* ]] || die "no SSD hit after $j requests (see $WORK/se.log)"
  echo $(((t1 - t0) / 1000000))
}

range() { tr ' ' '\n' | grep -v '^$' | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }

printf '| store | objects | checkpoint | first SSD hit, checkpoint | first SSD hit, full scan |\n'
printf '| --: | --: | --: | --: | --: |\n'
for size in $SIZES; do
  fill=$("$FILL_BIN" --store "$WORK/store" --key-file "$WORK/store.key" --size-mib $((size * 1024)) --object-kib "$OBJECT_KIB" --vhost warm) ||
    die "ssd_fill failed"
  objects=$(sed -E 's/.*objects=([0-9]+).*/\1/' <<<"$fill")
  cp_bytes=$(stat -c %s "$WORK/store.checkpoint" 2>/dev/null || echo 0)
  with=""
  without=""
  for ((r = 0; r < RUNS; r++)); do
    with+=" $(first_ssd_hit "$size")"
  done
  for ((r = 0; r < RUNS; r++)); do
    rm -f "$WORK/store.checkpoint"
    without+=" $(first_ssd_hit "$size")"
  done
  printf '| %s GiB | %s | %s KiB | %s ms | %s ms |\n' "$size" "$objects" $((cp_bytes / 1024)) \
    "$(range <<<"$with")" "$(range <<<"$without")"
  rm -f "$WORK/store" "$WORK/store.checkpoint" "$WORK/store.keys"
done
