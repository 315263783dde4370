#!/usr/bin/env bash
# SSD-hit benchmark: streamedge's SSD tier against nginx proxy_cache on disk, same working set,
# same memory budget, same disk. Each server runs in a memory cgroup of BENCH_MEM_LIMIT (512 MiB;
# page cache is charged to it), so neither can keep the working set (SSD_OBJECTS × 2 MiB,
# default 1 GiB: 2× the cgroup, 4× a 256 MiB RAM tier) in memory behind our back:
#   streamedge: [cache.ram] 256 MiB (peak RSS with 16 busy 2 MiB connections and a full SSD
#               write queue measured 357-365 MiB), [cache.ssd] a store file on disk (O_DIRECT,
#               io_uring, AES-256-GCM at rest, reclaim = reinsert: the defaults)
#   nginx:      proxy_cache_path on disk, sendfile + aio threads (what an operator sets for a
#               disk cache), its page cache limited with the same memory budget
# Per proxy:
#   warm-up: every object fetched once through the proxy (origin fills), then twice more (see
#            warm()), then a pause for the SSD writer
#   ssd:     wrk -c16 on random objects of the working set → Gbit/s, CPU µs per MiB, origin
#            fetches during the run (should be 0: every answer is a cache hit)
#   ram:     (streamedge) the same on 4 objects that stay in RAM → the RAM-hit reference
#
# Knobs: BENCH_SECONDS=15 SSD_OBJECTS=512 BENCH_MEM_LIMIT=512M BENCH_STORE_DIR=/var/tmp
#        BENCH_CONNS=16 BENCH_ONLY=streamedge,nginx BENCH_SKIP_BUILD=1 BENCH_PROXY_CPU=0
#        BENCH_LOAD_CPU=1 BENCH_SSD_ENCRYPT=true BENCH_SE_RAM=256MiB
#        BENCH_PERF=FILE (perf record -g of streamedge during its SSD run; the top of the report,
#        by symbol, is written to FILE, the recording to FILE.data for `perf report -i`;
#        BENCH_PERF_EVENT=sched:sched_switch records where it sleeps instead)
#        BENCH_THINK_MS=T (each wrk connection pauses ~T ms, exponential, before each request:
#        both servers get about the same offered load, CONNS / (T + latency) requests per second,
#        so their latencies compare at the same load rather than each at its own limit)
#        BENCH_ACCESS_LOG=FILE (streamedge writes its access log to FILE; after its SSD run the
#        server-side duration and time to first byte are summed up by cache result: where a
#        tail comes from. Costs the proxy some CPU: not for the CPU figures)
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$STREAMEDGE_ROOT" || exit 1

SECS=${BENCH_SECONDS:-15}
OBJECTS=${SSD_OBJECTS:-512}
MEM_LIMIT=${BENCH_MEM_LIMIT:-512M}
STORE_DIR=${BENCH_STORE_DIR:-/var/tmp}
CONNS=${BENCH_CONNS:-16}
ONLY=${BENCH_ONLY:-streamedge,nginx}
ENCRYPT=${BENCH_SSD_ENCRYPT:-true}
SE_RAM=${BENCH_SE_RAM:-256MiB}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SIM_BIN=build/release/tests/origin_sim
SE_BIN=${STREAMEDGE_BIN:-build/release/proxy/streamedge}
SEG=2097152
CC='cc=max-age%3D3600'
CLK_TCK=$(getconf CLK_TCK)
BENCH_DIR="$STREAMEDGE_ROOT/scripts/bench"

ensure_packages nginx-light wrk curl util-linux
[[ -n "${BENCH_PERF:-}" ]] && ensure_packages linux-perf
[[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] || release_build streamedge origin_sim
SE_BIN=$(realpath "$SE_BIN")
[[ -x "$SE_BIN" && -x "$SIM_BIN" ]] || die "build/release binaries missing"
export PATH="$PATH:/usr/sbin:/sbin"

WORK=$(mktemp -d "$STORE_DIR/streamedge-ssdbench.XXXXXX") || die "mktemp in $STORE_DIR failed"
PIDS=()
CGROUPS=()
cleanup() {
  local p c
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for c in "${CGROUPS[@]}"; do rmdir "$c" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- memory cgroups (v2 where it has the memory controller, else v1) -------------------------
CG_KIND=none
if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CG_KIND=v2 CG_ROOT=/sys/fs/cgroup
elif [[ -d /sys/fs/cgroup/memory && -w /sys/fs/cgroup/memory ]]; then
  CG_KIND=v1 CG_ROOT=/sys/fs/cgroup/memory
fi
# make_cgroup NAME → prints the cgroup dir (empty when cgroups are unusable)
make_cgroup() {
  local dir="$CG_ROOT/streamedge-bench-$1-$$"
  [[ $CG_KIND == none ]] && return 0
  mkdir -p "$dir" 2>/dev/null || return 0
  CGROUPS+=("$dir")
  if [[ $CG_KIND == v2 ]]; then
    echo "$MEM_LIMIT" >"$dir/memory.max" 2>/dev/null || return 0
  else
    echo "$MEM_LIMIT" >"$dir/memory.limit_in_bytes" 2>/dev/null || return 0
  fi
  echo "$dir"
}
[[ $CG_KIND == none ]] && warn "no writable memory cgroup: page caches are not limited, nginx numbers are RAM hits"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

start_sim
sim_total() {  # requests the simulator has answered for the bench paths
  curl -s --max-time 5 "http://127.0.0.1:$SIM_PORT/_sim/counts" |
    grep -Eo '"/obj/ssdbench/[^"]*":[0-9]+' | awk -F: '{ s += $NF } END { print s + 0 }'
}

# start_in_cgroup NAME CGDIR LOG CMD...: runs CMD pinned to PROXY_CPU, in a new session, inside
# the cgroup (so every child it forks is charged there too). Sets LAST_PID.
start_in_cgroup() {
  local name=$1 cg=$2 logf=$3
  shift 3
  if [[ -n "$cg" ]]; then
    setsid sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
      taskset -c "$PROXY_CPU" "$@" >"$logf" 2>&1 </dev/null &
  else
    setsid taskset -c "$PROXY_CPU" "$@" >"$logf" 2>&1 </dev/null &
  fi
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

declare -A R=()
paths() {  # NAME → the working set's paths
  local i
  for ((i = 0; i < OBJECTS; i++)); do echo "/obj/ssdbench/$1/seg-$i.ts?size=$SEG&$CC"; done
}

warm() {  # NAME PORT: every object once through the proxy
  local name=$1 port=$2 p bad=0
  log "$name: warming $OBJECTS × 2 MiB ($((OBJECTS * 2)) MiB) through the proxy"
  while read -r p; do
    out=$(curl -s -o /dev/null --max-time 30 -w '%{http_code} %{size_download}' "http://127.0.0.1:$port$p")
    [[ "$out" == "200 $SEG" ]] || bad=$((bad + 1))
  done < <(paths "$name")
  ((bad == 0)) || warn "$name: $bad warm-up fetches failed"
  # Then every object twice more. streamedge writes to its SSD when RAM evicts (admission =
  # evict), so after one pass the last quarter of the fills is still in RAM only, and the first
  # seconds of the run would be spent writing it while the SSD hits that push it out wait
  # (measured: hits up to ~60 ms in the run's first 2 s, ~6 ms after). Two reads promote what
  # the SSD holds into RAM, which evicts those fills and gets them written before the run starts,
  # as nginx wrote its files during its fill. Both servers get the same passes.
  log "$name: two more passes, so that every object is on disk before the run"
  while read -r p; do
    curl -s -o /dev/null --max-time 30 "http://127.0.0.1:$port$p"
    curl -s -o /dev/null --max-time 30 "http://127.0.0.1:$port$p"
  done < <(paths "$name")
  sleep 3  # the SSD writer finishes its queue
}

measure() {  # NAME TEST PGID URL LUA PATHS...
  local name=$1 test=$2 pgid=$3 url=$4 lua=$5
  shift 5
  local out="$WORK/wrk-$name-$test.txt" t0 t1 o0 o1
  drop_caches
  o0=$(sim_total)
  t0=$(ticks "$pgid")
  local perf_pid=
  if [[ -n "${BENCH_PERF:-}" && "$name:$test" == streamedge:ssd ]]; then
    perf record -q -e "${BENCH_PERF_EVENT:-cpu-clock}" -g -p "$pgid" -o "$BENCH_PERF.data" -- sleep "$SECS" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  ROTATE_THINK_MS=${BENCH_THINK_MS:-0} taskset -c "$LOAD_CPU" timeout $((SECS + 60)) wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 10s \
    --latency -s "$lua" "$url" -- "$@" >"$out" 2>&1 &
  # The load generator's own core: near 100 % busy, wrk itself is the limit of the run (its
  # latencies then include its own queueing; on loopback it also pays the receive side).
  local wrk_parent=$! wrk_pid c0 c1
  sleep 1
  wrk_pid=$(cat "/proc/$wrk_parent/task/$wrk_parent/children" 2>/dev/null | awk '{ print $1 }')
  c0=$(awk '{ print $14 + $15 }' "/proc/$wrk_pid/stat" 2>/dev/null)
  sleep $((SECS > 3 ? SECS - 2 : 1))
  c1=$(awk '{ print $14 + $15 }' "/proc/$wrk_pid/stat" 2>/dev/null)
  wait "$wrk_parent"
  R[$name:$test:client]=$(awk -v a="${c0:-}" -v b="${c1:-}" -v k="$CLK_TCK" -v s=$((SECS > 3 ? SECS - 2 : 1)) \
    'BEGIN { if (a != "" && b != "") printf "%.0f%%", (b - a) * 100 / k / s; else print "—" }')
  if [[ -n "$perf_pid" ]]; then
    wait "$perf_pid"
    perf report -i "$BENCH_PERF.data" --no-children --sort dso,sym --stdio 2>/dev/null |
      grep -E '^ +[0-9]' | head -60 >"$BENCH_PERF"
    log "profile of streamedge's SSD run written to $BENCH_PERF"
  fi
  t1=$(ticks "$pgid")
  o1=$(sim_total)
  sed 's/^/    /' "$out"
  local reqs secs
  reqs=$(awk '/ requests in / { print $1 }' "$out")
  secs=$(awk '/ requests in / { sub(/,$/, "", $4); v = $4 + 0; if ($4 ~ /ms$/) v /= 1000; print v }' "$out")
  R[$name:$test:reqs]=${reqs:-0}
  R[$name:$test:gbps]=$(awk -v r="${reqs:-0}" -v s="${secs:-0}" -v b=$SEG \
    'BEGIN { if (s > 0) printf "%.2f", r * b * 8 / s / 1e9; else print 0 }')
  R[$name:$test:cpu]=$(awk -v t=$((t1 - t0)) -v r="${reqs:-0}" -v k="$CLK_TCK" -v b=$SEG \
    'BEGIN { if (r > 0) printf "%.0f", t * 1e6 / k / (r * b / 1048576); else print "—" }')
  R[$name:$test:p99]=$(awk '$1 == "99%" { print $2 }' "$out")
  R[$name:$test:origin]=$((o1 - o0))
  R[$name:$test:errors]=$(awk '/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
    /Non-2xx/ { e += $5 } END { print e + 0 }' "$out")
}

metric() {  # ADMIN_PORT NAME → value (0 when absent)
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
    awk -v m="$2" '$1 == m { v = $2 } END { print v + 0 }'
}

run_streamedge() {
  local port admin store="$WORK/se-store"
  port=$(port)
  cat >"$WORK/se.toml" <<CONF
[server]
workers = 1
[admin]
address = "127.0.0.1:0"
[[listener]]
address = "127.0.0.1:$port"
[cache.ram]
size = "$SE_RAM"
[cache.ssd]
path = "$store"
size = "$((OBJECTS * 2 * 3 / 2))MiB"
encrypt = $ENCRYPT
[log]
access_log = "${BENCH_ACCESS_LOG:-off}"
CONF
  se_routes >>"$WORK/se.toml"
  local cg
  cg=$(make_cgroup streamedge)
  start_in_cgroup streamedge "$cg" "$WORK/se.log" "$SE_BIN" -c "$WORK/se.toml"
  local pid=$LAST_PID
  wait_for_port "$port" 30 "$pid" || { warn "streamedge did not start: $(tail -5 "$WORK/se.log")"; return 1; }
  admin=$(grep -Eo 'listening admin [0-9.]+:[0-9]+' "$WORK/se.log" | head -1 | awk -F: '{ print $NF }')
  grep -E 'ssd' "$WORK/se.log" | sed 's/^/    /'
  warm streamedge "$port"
  local h0 h1
  h0=$(metric "$admin" streamedge_ssd_hits_total)
  mapfile -t ps < <(paths streamedge)
  local lines0=0
  [[ -n "${BENCH_ACCESS_LOG:-}" ]] && { sleep 0.5; lines0=$(wc -l <"$BENCH_ACCESS_LOG"); }
  measure streamedge ssd "$pid" "http://127.0.0.1:$port" "$BENCH_DIR/rotate.lua" --random "${ps[@]}"
  if [[ -n "${BENCH_ACCESS_LOG:-}" ]]; then
    sleep 0.5  # the log writer hands lines over every 100 ms
    log "streamedge's own view of its SSD run (access log, ms):"
    tail -n +"$((lines0 + 1))" "$BENCH_ACCESS_LOG" | /usr/bin/python3 -c '
import json, sys
by = {}
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    by.setdefault(e.get("cache", "?"), []).append((e["duration_ms"], e["ttfb_ms"]))
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]
for cache, rows in sorted(by.items()):
    d = [r[0] for r in rows]
    t = [r[1] for r in rows]
    print("    %-10s %6d requests  duration p50 %6.1f p90 %6.1f p99 %6.1f max %6.1f  ttfb p50 %5.1f p99 %5.1f"
          % (cache, len(rows), pct(d, .5), pct(d, .9), pct(d, .99), max(d), pct(t, .5), pct(t, .99)))
'
  fi
  h1=$(metric "$admin" streamedge_ssd_hits_total)
  R[streamedge:ssd:share]=$(awk -v h=$((h1 - h0)) -v r="${R[streamedge:ssd:reqs]}" \
    'BEGIN { if (r > 0) printf "%.0f%%", h * 100 / r; else print "—" }')
  # The RAM reference: 4 objects, fetched twice so that they are hot in RAM.
  local hot=("${ps[@]:0:4}") p
  for p in "${hot[@]}" "${hot[@]}"; do curl -s -o /dev/null "http://127.0.0.1:$port$p"; done
  measure streamedge ram "$pid" "http://127.0.0.1:$port" "$BENCH_DIR/rotate.lua" "${hot[@]}"
  R[streamedge:rss]=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
  R[streamedge:backend]=$(curl -s "http://127.0.0.1:$admin/metrics" | grep -Eo 'streamedge_ssd_io_backend\{backend="[a-z_]+"' | cut -d'"' -f2)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
}

run_nginx() {
  local port dir="$WORK/ng"
  port=$(port)
  mkdir -p "$dir"/{tmp,logs} "$WORK/ng-cache"
  cat >"$dir/nginx.conf" <<CONF
user root;
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; }
thread_pool default threads=4;
http {
  access_log off;
  sendfile on;
  aio threads;
  tcp_nopush on;
  keepalive_requests 100000000;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  proxy_cache_path $WORK/ng-cache levels=1:2 keys_zone=bench:64m max_size=$((OBJECTS * 3))m inactive=1h use_temp_path=off;
  upstream sim { server 127.0.0.1:$SIM_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_key \$request_uri;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
    }
  }
}
CONF
  local cg
  cg=$(make_cgroup nginx)
  start_in_cgroup nginx "$cg" "$WORK/ng.log" nginx -e stderr -p "$dir" -c "$dir/nginx.conf"
  local pid=$LAST_PID
  wait_for_port "$port" 15 "$pid" || { warn "nginx did not start: $(tail -5 "$WORK/ng.log")"; return 1; }
  warm nginx "$port"
  mapfile -t ps < <(paths nginx)
  measure nginx ssd "$pid" "http://127.0.0.1:$port" "$BENCH_DIR/rotate.lua" --random "${ps[@]}"
  kill -TERM -- "-$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

[[ ",$ONLY," == *,streamedge,* ]] && run_streamedge
[[ ",$ONLY," == *,nginx,* ]] && run_nginx

echo
echo "# SSD hits — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short=12 HEAD)"
echo "working set $OBJECTS × 2 MiB on $(df --output=source "$STORE_DIR" | tail -1) ($STORE_DIR), memory cgroup $MEM_LIMIT per server ($CG_KIND),"
echo "one worker pinned to CPU $PROXY_CPU, wrk -t1 -c$CONNS on CPU $LOAD_CPU, random objects, ${SECS}s, think time ${BENCH_THINK_MS:-0} ms;"
echo "streamedge: RAM $SE_RAM, SSD store encrypt=$ENCRYPT, backend ${R[streamedge:backend]:-?}, peak RSS ${R[streamedge:rss]:-?} KiB"
echo
echo "| test | Gbit/s | CPU µs/MiB | p99 | origin fetches | errors | wrk's core busy |"
echo "|---|--:|--:|--:|--:|--:|--:|"
for k in streamedge:ssd nginx:ssd streamedge:ram; do
  [[ -n "${R[$k:reqs]:-}" ]] || continue
  case $k in
    streamedge:ssd) label="streamedge, working set 4× RAM (${R[streamedge:ssd:share]:-?} of requests from SSD)" ;;
    nginx:ssd) label="nginx proxy_cache on disk, same working set" ;;
    streamedge:ram) label="streamedge, 4 hot objects (RAM hits)" ;;
  esac
  echo "| $label | ${R[$k:gbps]} | ${R[$k:cpu]} | ${R[$k:p99]} | ${R[$k:origin]} | ${R[$k:errors]} | ${R[$k:client]} |"
done
echo
echo "streamedge ÷ nginx (SSD working set): $(ratio "${R[streamedge:ssd:gbps]:-0}" "${R[nginx:ssd:gbps]:-0}") throughput, $(ratio "${R[nginx:ssd:cpu]:-0}" "${R[streamedge:ssd:cpu]:-0}") CPU per MiB"
echo "streamedge SSD ÷ RAM: $(ratio "${R[streamedge:ssd:gbps]:-0}" "${R[streamedge:ram:gbps]:-0}")"
