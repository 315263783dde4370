#!/usr/bin/env bash
# Site benchmark: an edge site of 1, 2 and 4 streamedge peers ([cluster], stay-small mode) on
# their own loopback addresses (127.0.0.2, .3, ...), all pinned to the proxy CPU, one origin
# simulator and the load on the other CPU. The load (site_load) sends the same seeded Zipf mix
# of objects to every site size, spread over its edges in turn as a load balancer would; the
# mix's working set is bigger than one peer's RAM tier, so a lone edge evicts and refetches
# while a site of N edges holds N RAM tiers of distinct objects (one owner per object).
#
# Per site size: origin requests (the simulator's counts), the site's hit ratio
# (1 - origin requests / requests), the clients' p50 and p99, and the proxies' CPU seconds.
# Then, on the 2-peer site, the cost of a peer hop on a hit: one cached object asked REPEAT
# times of its owner (a local RAM hit) and of the other edge (a peer hop to the owner's hit).
#
#   scripts/bench/site.sh
# Knobs: SITE_PEERS="1 2 4", SITE_OBJECTS=2000, SITE_SIZE=100000 (bytes per object; 2000 x 100 kB
#        = 200 MB of objects), SITE_RAM=64MiB (per peer), SITE_REQUESTS=20000, SITE_CLIENTS=8,
#        SITE_ZIPF=0.8, SITE_REPEAT=2000, RUNS=1, BENCH_SKIP_BUILD=1, BENCH_PROXY_CPU=0,
#        BENCH_LOAD_CPU=1, BENCH_KEEP=1 (keep the work directory).
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$STREAMEDGE_ROOT" || exit 1

PEER_COUNTS=${SITE_PEERS:-1 2 4}
OBJECTS=${SITE_OBJECTS:-2000}
SIZE=${SITE_SIZE:-100000}
RAM=${SITE_RAM:-64MiB}
REQUESTS=${SITE_REQUESTS:-20000}
CLIENTS=${SITE_CLIENTS:-8}
ZIPF=${SITE_ZIPF:-0.8}
REPEAT=${SITE_REPEAT:-2000}
RUNS=${RUNS:-1}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SIM_BIN=build/release/tests/origin_sim
LOAD_BIN=build/release/tests/site_load
SE_BIN=${STREAMEDGE_BIN:-build/release/proxy/streamedge}

ensure_packages curl
[[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] || release_build streamedge origin_sim site_load
[[ -x "$SE_BIN" && -x "$SIM_BIN" && -x "$LOAD_BIN" ]] || die "build/release binaries missing"

WORK=$(mktemp -d /tmp/streamedge-site.XXXXXX)
PIDS=()
SITE_PIDS=()
cleanup() {
  local p
  for p in "${SITE_PIDS[@]}" "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${SITE_PIDS[@]}" "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

openssl rand -hex 32 >"$WORK/peer.key" && chmod 600 "$WORK/peer.key" || die "no peer key"
start_sim
SE_PORT=$(port)

# The origin simulator's request count over every path (its control paths are not counted).
origin_requests() {
  curl -sf "http://127.0.0.1:$SIM_PORT/_sim/counts" |
    /usr/bin/python3 -c 'import json, sys; print(sum(json.load(sys.stdin).values()))'
}

# start_site N: N peers on 127.0.0.2 ... 127.0.0.(N+1), port SE_PORT, pinned to PROXY_CPU.
start_site() {
  local n=$1 i peers="" addr
  for ((i = 0; i < n; i++)); do peers+="${peers:+, }\"127.0.0.$((i + 2)):$SE_PORT\""; done
  SITE_PIDS=()
  for ((i = 0; i < n; i++)); do
    addr="127.0.0.$((i + 2)):$SE_PORT"
    {
      printf '[server]\nworkers = 1\n[admin]\naddress = "127.0.0.1:0"\n'
      printf '[[listener]]\naddress = "%s"\n[cache.ram]\nsize = "%s"\n' "$addr" "$RAM"
      printf '[log]\naccess_log = "off"\n'
      se_routes
      if ((n > 1)); then
        printf '[cluster]\npeers = [%s]\nsecret_file = "%s"\nmode = "stay-small"\n' \
          "$peers" "$WORK/peer.key"
      fi
    } >"$WORK/peer$i.toml"
    setsid taskset -c "$PROXY_CPU" "$SE_BIN" -c "$WORK/peer$i.toml" >"$WORK/peer$i.log" 2>&1 &
    SITE_PIDS+=($!)
  done
  for ((i = 0; i < n; i++)); do
    wait_for_port "$SE_PORT" 10 "${SITE_PIDS[$i]}" "127.0.0.$((i + 2))" ||
      { tail -20 "$WORK/peer$i.log"; die "peer $i did not start"; }
  done
  # Every peer answers its peer health path (the others' checks mark it up within a few
  # health intervals: wait until each edge's /readyz agrees, bounded).
  local deadline=$((SECONDS + 15)) ok
  while ((SECONDS < deadline)); do
    ok=1
    for ((i = 0; i < n; i++)); do
      curl -sf -o /dev/null "http://127.0.0.$((i + 2)):$SE_PORT/.well-known/streamedge/peer-health" || ok=0
    done
    ((ok)) && break
    sleep 0.2
  done
  sleep 3  # the peers' health checks (default interval 2 s) see each other up
}

stop_site() {
  local p
  for p in "${SITE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${SITE_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  SITE_PIDS=()
}

site_ticks() {
  local p sum=0 t
  for p in "${SITE_PIDS[@]}"; do t=$(ticks "$p"); sum=$((sum + t)); done
  echo "$sum"
}

HZ=$(getconf CLK_TCK)
RESULTS="$WORK/results.txt"
: >"$RESULTS"
for ((run = 1; run <= RUNS; run++)); do
  for n in $PEER_COUNTS; do
    edges=""
    for ((i = 0; i < n; i++)); do edges+="${edges:+,}127.0.0.$((i + 2)):$SE_PORT"; done
    curl -sf "http://127.0.0.1:$SIM_PORT/_sim/reset" >/dev/null || die "simulator reset failed"
    start_site "$n"
    t0=$(site_ticks)
    log "run $run: $n peer(s), $REQUESTS requests, $OBJECTS objects of $SIZE bytes, Zipf $ZIPF"
    out=$(taskset -c "$LOAD_CPU" "$LOAD_BIN" --edges "$edges" --objects "$OBJECTS" --size "$SIZE" \
      --requests "$REQUESTS" --clients "$CLIENTS" --zipf "$ZIPF" --seed "$run") ||
      warn "site_load reported failures: $out"
    t1=$(site_ticks)
    origin=$(origin_requests)
    echo "$out"
    hit=$(awk -v o="$origin" -v r="$REQUESTS" 'BEGIN { printf "%.1f", 100 * (1 - o / r) }')
    cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
    echo "$run $n $origin $hit $cpu $out" >>"$RESULTS"
    if ((n == 2)); then
      # A peer hop on a hit: a fresh object, asked once on the first edge (stored by its owner),
      # then REPEAT times on each edge. The owner's answers are local hits; the other edge's
      # (stay-small: it keeps nothing) are a hop to the owner's hit.
      hop_path="/obj/site-hop/run$run.bin"
      curl -sf -o /dev/null -H "Host: cdn.example" "http://127.0.0.2:$SE_PORT$hop_path?size=$SIZE" ||
        warn "hop object fetch failed"
      taskset -c "$LOAD_CPU" "$LOAD_BIN" --edges "$edges" --repeat "$hop_path" --size "$SIZE" \
        --requests "$REPEAT" >"$WORK/hop$run.txt" || warn "hop run reported failures"
      cat "$WORK/hop$run.txt"
    fi
    stop_site
  done
done

echo
echo "| peers | requests | origin requests | site hit ratio | client p50 ms | client p99 ms | proxy CPU s |"
echo "| --: | --: | --: | --: | --: | --: | --: |"
awk '{
  p50 = p99 = "";
  for (i = 6; i <= NF; i++) {
    split($i, kv, "=");
    if (kv[1] == "p50_ms") p50 = kv[2];
    if (kv[1] == "p99_ms") p99 = kv[2];
  }
  printf "| %s | %s | %s | %s %% | %s | %s | %s |\n", $2, "'"$REQUESTS"'", $3, $4, p50, p99, $5
}' "$RESULTS"
echo
echo "Peer hop on a hit (2 peers, $REPEAT sequential requests of one ${SIZE}-byte object per edge;"
echo "the edge with the higher p50 is the non-owner):"
for f in "$WORK"/hop*.txt; do [[ -e "$f" ]] && cat "$f"; done
