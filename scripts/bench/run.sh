#!/usr/bin/env bash
# Side-by-side benchmark: streamedge against nginx proxy_cache, Varnish and Apache Traffic Server,
# all on this machine, in one run, against the origin simulator.
#
#   scripts/bench/run.sh                        # all four, ~2-3 minutes
#   BENCH_ONLY=streamedge,nginx scripts/bench/run.sh
#
# Every proxy is pinned to one core (BENCH_PROXY_CPU, default 0) with one worker / thread pool;
# wrk, the herd client and the origin simulator share the other core (BENCH_LOAD_CPU, default 1).
# Tests per proxy:
#   (a) hot hits on a 2 KiB playlist: wrk -t1 -c64 → req/s, p50, p99, server CPU µs per request
#   (b) hot hits on 2 MiB segments (rotating over a few objects) → Gbit/s, server CPU µs per MiB
#   (c) the herd: 200 clients at once on a fresh 2 MiB object that the origin sends in ~1 s
#       → how many requests reached the origin, time to first / last byte
# Server CPU is read from /proc/<pid>/stat (utime+stime) of every process in the server's
# process group before and after the run. Results are printed and written to
# scripts/bench/results-<date>.md (not committed automatically).
#
# Knobs (environment):
#   BENCH_SECONDS=10      duration of each measured wrk run
#   BENCH_WARM_SECONDS=2  unmeasured wrk run before each measured one
#   BENCH_ONLY=...        comma list of streamedge,nginx,varnish,ats (default: all)
#   BENCH_CONNS=64        wrk connections for (a);  BENCH_SEG_CONNS=16 for (b)
#   BENCH_SEGMENTS=4      distinct 2 MiB objects in (b)
#   HERD_CLIENTS=200      clients in (c)
#   BENCH_PROXY_CPU=0 BENCH_LOAD_CPU=1
#   BENCH_SKIP_BUILD=1    use the existing build/release binaries
#   BENCH_KEEP=1          keep the temporary work directory (configs, logs) for inspection
#   BENCH_STREAMEDGE_ACCESS_LOG=off   streamedge's [log] access_log: "off" (default, like the
#                         other proxies), "file" (a file in the work directory) or a path; to
#                         measure the access log's cost on the hot path
#   ORIGIN_SIM_BIN, HERD_BIN, STREAMEDGE_BIN   override the binaries (development)
set -uo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$STREAMEDGE_ROOT" || exit 1
BENCH_DIR="$STREAMEDGE_ROOT/scripts/bench"

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARM_SECONDS=${BENCH_WARM_SECONDS:-2}
BENCH_CONNS=${BENCH_CONNS:-64}
BENCH_SEG_CONNS=${BENCH_SEG_CONNS:-16}
BENCH_SEGMENTS=${BENCH_SEGMENTS:-4}
HERD_CLIENTS=${HERD_CLIENTS:-200}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
ORIGIN_SIM_BIN=${ORIGIN_SIM_BIN:-build/release/tests/origin_sim}
HERD_BIN=${HERD_BIN:-build/release/tests/herd}
STREAMEDGE_BIN=${STREAMEDGE_BIN:-build/release/proxy/streamedge}

PLAYLIST_SIZE=2048
SEG_SIZE=2097152
HERD_RATE=2097152            # bytes/s from the origin: the herd object takes ~1 s
CC='cc=max-age%3D3600'       # Cache-Control the simulator sends: max-age=3600
CLK_TCK=$(getconf CLK_TCK)
RUN_ID="$(date +%s)-$$"

# ---- which proxies ---------------------------------------------------------------------------
PROXIES=()
IFS=',' read -r -a _only <<<"${BENCH_ONLY:-streamedge,nginx,varnish,ats}"
for p in "${_only[@]}"; do
  p=${p// /}
  case "$p" in
    streamedge|nginx|varnish) PROXIES+=("$p") ;;
    ats|trafficserver|traffic_server|traffic-server) PROXIES+=(ats) ;;
    '') ;;
    *) die "BENCH_ONLY: unknown proxy '$p' (known: streamedge, nginx, varnish, ats)" ;;
  esac
done
((${#PROXIES[@]} > 0)) || die "BENCH_ONLY selects no proxy"
wants() { local x; for x in "${PROXIES[@]}"; do [[ "$x" == "$1" ]] && return 0; done; return 1; }

declare -A LABEL=([streamedge]=streamedge [nginx]="nginx proxy_cache" [varnish]=Varnish [ats]="Traffic Server")

# ---- packages and build ----------------------------------------------------------------------
pkgs=(wrk curl procps util-linux)
if wants nginx && ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
  pkgs+=(nginx-light)
fi
wants varnish && pkgs+=(varnish)
wants ats && pkgs+=(trafficserver)
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then pkgs+=("${STREAMEDGE_BUILD_PACKAGES[@]}"); fi
( ensure_packages --no-start-services "${pkgs[@]}" ) || die "could not install the benchmark's packages"
export PATH="$PATH:/usr/sbin:/sbin"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building build/release (origin_sim, herd, streamedge)"
  if ! ( release_build origin_sim herd streamedge ) >"${TMPDIR:-/tmp}/streamedge-bench-build.log" 2>&1; then
    warn "building all three targets failed; trying one by one (log: ${TMPDIR:-/tmp}/streamedge-bench-build.log)"
    for t in origin_sim herd streamedge; do
      ( release_build "$t" ) >>"${TMPDIR:-/tmp}/streamedge-bench-build.log" 2>&1 || warn "target $t does not build"
    done
  fi
fi
[[ -x "$ORIGIN_SIM_BIN" ]] || die "origin simulator not found at $ORIGIN_SIM_BIN (build failed?)"

# ---- work directory, process bookkeeping ------------------------------------------------------
# Caches (nginx's files, ATS's cache file) go to tmpfs; Varnish compiles its VCL into a shared
# object in its work dir, which must not be on a noexec mount, so the rest stays in /tmp.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/streamedge-bench.XXXXXX") || die "mktemp failed"
if [[ -d /dev/shm && -w /dev/shm ]]; then
  SHM=$(mktemp -d /dev/shm/streamedge-bench.XXXXXX) || SHM="$WORK/shm"
else
  SHM="$WORK/shm"
fi
mkdir -p "$SHM"
chmod 755 "$WORK" "$SHM"

declare -A SRV_PID=()   # name → pid of a process started with setsid (so also its pgid)

# start_server NAME CPU LOG CMD...: starts CMD pinned to CPU in a new session, output to LOG.
start_server() {
  local name=$1 cpu=$2 logf=$3
  shift 3
  setsid taskset -c "$cpu" "$@" >"$logf" 2>&1 </dev/null &
  SRV_PID[$name]=$!
}

# stop_server NAME: SIGTERM to the server's process group, SIGKILL after 10 s.
stop_server() {
  local name=$1 pid=${SRV_PID[$1]:-} i
  [[ -n "$pid" ]] || return 0
  local target=(-- "-$pid")
  kill -0 -- "-$pid" 2>/dev/null || target=("$pid")
  kill -TERM "${target[@]}" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "${target[@]}" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "${target[@]}" 2>/dev/null; then
    warn "$name (pid $pid) did not stop in 10 s; killing it"
    kill -KILL "${target[@]}" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  unset "SRV_PID[$name]"
}

cleanup() {
  local n
  for n in "${!SRV_PID[@]}"; do stop_server "$n"; done
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
    log "kept work directories: $WORK $SHM"
  else
    rm -rf "$WORK" "$SHM"
  fi
}
trap cleanup EXIT
trap 'echo; warn "interrupted"; exit 130' INT TERM

# pick_port: a random free port on 127.0.0.1 (not one we already handed out).
declare -A _PORTS=()
pick_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 30000))
    [[ -n "${_PORTS[$p]:-}" ]] && continue
    port_in_use "$p" && continue
    _PORTS[$p]=1
    echo "$p"
    return 0
  done
  return 1
}

# group_ticks PGID: utime+stime (clock ticks) summed over the live processes of a group.
group_ticks() {
  sed -E 's/^[0-9]+ \(.*\) //' /proc/[0-9]*/stat 2>/dev/null |
    awk -v g="$1" '$3 == g { s += $12 + $13 } END { print s + 0 }'
}

# group_pids PGID: the pids of a process group.
group_pids() {
  local f
  for f in /proc/[0-9]*/stat; do
    sed -E 's/^([0-9]+) \(.*\) [A-Za-z] [0-9]+ ([0-9]+) .*/\1 \2/' "$f" 2>/dev/null
  done | awk -v g="$1" '$2 == g { print $1 }'
}

# group_hwm_kib PGID: VmHWM summed over the group's processes (peak RSS, KiB).
group_hwm_kib() {
  local pid sum=0 v
  for pid in $(group_pids "$1"); do
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# pin_and_check NAME PGID: pins every thread of the server's processes to PROXY_CPU again
# (Traffic Server binds its ET_NET threads to the whole machine with hwloc, undoing taskset),
# then warns when a thread may still run elsewhere.
pin_and_check() {
  local pid t bad=0 list
  for pid in $(group_pids "$2"); do
    taskset -a -p -c "$PROXY_CPU" "$pid" >/dev/null 2>&1
  done
  for pid in $(group_pids "$2"); do
    for t in /proc/"$pid"/task/*; do
      list=$(awk '/^Cpus_allowed_list:/ { print $2 }' "$t/status" 2>/dev/null)
      [[ -z "$list" || "$list" == "$PROXY_CPU" ]] || bad=1
    done
  done
  ((bad)) && warn "$1: some threads are not pinned to CPU $PROXY_CPU only; numbers are not comparable"
  return 0
}

sim_url() { echo "http://127.0.0.1:$SIM_PORT$1"; }
sim_count() {
  local n
  n=$(curl -s --max-time 5 "$(sim_url "/_sim/count?path=$1")" 2>/dev/null | tr -dc '0-9')
  echo "${n:-?}"
}

# fetch_check URL SIZE: one GET; true when it answers 200 with SIZE bytes.
fetch_check() {
  local out
  out=$(curl -s -o /dev/null --max-time 30 -w '%{http_code} %{size_download}' "$1" 2>/dev/null)
  [[ "$out" == "200 $2" ]] && return 0
  warn "GET $1 → '${out:-no answer}' (expected '200 $2')"
  return 1
}

# to_ms VALUE-WITH-UNIT (wrk: 812.00us, 1.23ms, 2.01s, 1.50m) → milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.2f", n }'
}
to_seconds() {
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "ms") n /= 1000; else if (u == "m") n *= 60; else if (u == "h") n *= 3600
    printf "%.3f", n }'
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

declare -A R=()        # results: R[proxy:metric]
declare -A NOTE=()     # why a proxy or test was skipped

# run_wrk NAME TEST PGID CONNS URL [LUA_SCRIPT [SCRIPT_ARGS...]]: a warm-up run, then the
# measured run with the server's CPU time read around it.
# Sets R[NAME:TEST_rps|_p50|_p99|_reqs|_secs|_ticks|_errors].
run_wrk() {
  local name=$1 test=$2 pgid=$3 conns=$4 url=$5
  shift 5
  local script=()
  if (($# > 0)); then script=(-s "$1"); shift; fi
  local out="$WORK/wrk-$name-$test.txt"
  taskset -c "$LOAD_CPU" timeout $((BENCH_WARM_SECONDS + 30)) \
    wrk -t1 -c"$conns" -d"${BENCH_WARM_SECONDS}s" --timeout 10s "${script[@]}" "$url" -- "$@" \
    >/dev/null 2>&1
  local t0 t1
  t0=$(group_ticks "$pgid")
  taskset -c "$LOAD_CPU" timeout $((BENCH_SECONDS + 60)) \
    wrk -t1 -c"$conns" -d"${BENCH_SECONDS}s" --timeout 10s --latency "${script[@]}" "$url" -- "$@" \
    >"$out" 2>&1
  local rc=$?
  t1=$(group_ticks "$pgid")
  if ((rc != 0)) || ! grep -q '^Requests/sec:' "$out"; then
    warn "$name: wrk failed (exit $rc):"
    sed 's/^/    /' "$out" >&2
    return 1
  fi
  R[$name:${test}_rps]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  R[$name:${test}_p50]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  R[$name:${test}_p99]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  R[$name:${test}_reqs]=$(awk '/ requests in / { print $1 }' "$out")
  R[$name:${test}_secs]=$(to_seconds "$(awk '/ requests in / { sub(/,$/, "", $4); print $4 }' "$out")")
  R[$name:${test}_ticks]=$((t1 - t0))
  R[$name:${test}_errors]=$(awk '
    /Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { e += $5 }
    END { print e + 0 }' "$out")
  sed 's/^/    /' "$out"
}

# ---- the tests -------------------------------------------------------------------------------
test_playlist() {
  local name=$1 port=$2 pgid=$3
  local path="/obj/bench/$name-$RUN_ID/playlist.m3u8"
  local url="http://127.0.0.1:$port$path?size=$PLAYLIST_SIZE&$CC"
  log "$name: (a) hot hits, 2 KiB playlist"
  if ! fetch_check "$url" "$PLAYLIST_SIZE" || ! fetch_check "$url" "$PLAYLIST_SIZE"; then
    NOTE[$name:pl]="the playlist did not come through"
    return 1
  fi
  local before after
  before=$(sim_count "$path")
  run_wrk "$name" pl "$pgid" "$BENCH_CONNS" "$url" || { NOTE[$name:pl]="wrk failed"; return 1; }
  after=$(sim_count "$path")
  R[$name:pl_origin]=$([[ "$before$after" =~ ^[0-9]+$ ]] && echo $((after - before)) || echo '?')
  R[$name:pl_origin_total]=$after
  R[$name:pl_cpu_us]=$(calc "%.2f" "${R[$name:pl_ticks]} * 1000000 / $CLK_TCK / ${R[$name:pl_reqs]}")
}

test_segments() {
  local name=$1 port=$2 pgid=$3 i paths=()
  log "$name: (b) hot hits, $BENCH_SEGMENTS × 2 MiB segments"
  for ((i = 0; i < BENCH_SEGMENTS; i++)); do
    paths+=("/obj/bench/$name-$RUN_ID/seg-$i.ts?size=$SEG_SIZE&$CC")
    fetch_check "http://127.0.0.1:$port${paths[-1]}" "$SEG_SIZE" || {
      NOTE[$name:seg]="a segment did not come through"; return 1; }
  done
  run_wrk "$name" seg "$pgid" "$BENCH_SEG_CONNS" "http://127.0.0.1:$port" \
    "$BENCH_DIR/rotate.lua" "${paths[@]}" || { NOTE[$name:seg]="wrk failed"; return 1; }
  local reqs=${R[$name:seg_reqs]} secs=${R[$name:seg_secs]}
  R[$name:seg_gbps]=$(calc "%.2f" "$reqs * $SEG_SIZE * 8 / $secs / 1e9")
  R[$name:seg_cpu_us_mib]=$(calc "%.2f" "${R[$name:seg_ticks]} * 1000000 / $CLK_TCK / ($reqs * $SEG_SIZE / 1048576)")
}

# herd_with_curl URL N SIZE: the fallback when the herd tool is missing: one curl process
# opening N connections at once (--parallel-immediate), one line per transfer.
herd_with_curl() {
  local url=$1 n=$2 size=$3 out="$WORK/herd-curl.txt" i args=()
  for ((i = 0; i < n; i++)); do args+=(-o /dev/null "$url"); done
  taskset -c "$LOAD_CPU" curl -s --parallel --parallel-immediate --parallel-max "$n" \
    --max-time 60 -w '%{http_code} %{size_download} %{time_starttransfer} %{time_total}\n' \
    "${args[@]}" >"$out"
  awk -v n="$n" -v size="$size" '
    { if ($1 == 200 && $2 == size) ok++; f[NR] = $3 * 1000; l[NR] = $4 * 1000 }
    function pct(a, m, p,   i, j, t) {
      for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      i = int(p * m + 0.999); if (i < 1) i = 1; return a[i] }
    END {
      m = NR
      printf "clients=%d ok=%d ttfb_p50_ms=%.1f ttfb_p99_ms=%.1f ttlb_p50_ms=%.1f ttlb_p99_ms=%.1f\n",
        n, ok + 0, pct(f, m, 0.5), pct(f, m, 0.99), pct(l, m, 0.5), pct(l, m, 0.99) }' "$out"
}

test_herd() {
  local name=$1 port=$2
  local path="/obj/bench/$name-$RUN_ID/herd.ts"
  local url="http://127.0.0.1:$port$path?size=$SEG_SIZE&rate=$HERD_RATE&$CC"
  local out="$WORK/herd-$name.txt"
  log "$name: (c) herd: $HERD_CLIENTS clients on a fresh 2 MiB object served in ~1 s"
  if [[ -x "$HERD_BIN" ]]; then
    taskset -c "$LOAD_CPU" timeout 120 "$HERD_BIN" --url "$url" --clients "$HERD_CLIENTS" \
      --expect-sim-body "$path:$SEG_SIZE" >"$out" 2>&1
    R[$name:herd_tool]=herd
  else
    herd_with_curl "$url" "$HERD_CLIENTS" "$SEG_SIZE" >"$out" 2>&1
    R[$name:herd_tool]="curl fallback"
  fi
  sed 's/^/    /' "$out"
  local line k
  line=$(grep -E 'clients=[0-9]+' "$out" | tail -n1)
  if [[ -z "$line" ]]; then NOTE[$name:herd]="herd printed no result"; return 1; fi
  for k in clients ok ttfb_p50_ms ttfb_p99_ms ttlb_p50_ms ttlb_p99_ms; do
    R[$name:herd_$k]=$(grep -Eo "(^| )$k=[0-9.]+" <<<"$line" | head -n1 | cut -d= -f2)
  done
  sleep 0.5   # let a late fill finish before counting
  R[$name:herd_origin]=$(sim_count "$path")
}

# ---- the proxies -----------------------------------------------------------------------------
# Each start_* writes its config under $WORK/NAME, starts the server with start_server and
# returns 0 once it listens on PORT, or 1 with the reason in NOTE[NAME].

start_streamedge() {
  local port=$1 dir="$WORK/streamedge"
  mkdir -p "$dir"
  if [[ ! -x "$STREAMEDGE_BIN" ]]; then NOTE[streamedge]="$STREAMEDGE_BIN not built"; return 1; fi
  write_streamedge_conf() {
    cat <<EOF
# written by scripts/bench/run.sh
[server]
workers = 1
[admin]
address = "127.0.0.1:0"
[[listener]]
address = "127.0.0.1:$port"
[cache.ram]
size = "256MiB"
$1
[[origin_group]]
name = "sim"
  [[origin_group.origin]]
  url = "http://127.0.0.1:$SIM_PORT"
  dc = "bench-dc"
  priority = 1
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "sim"
EOF
  }
  # Access logs are off for every proxy unless BENCH_STREAMEDGE_ACCESS_LOG says otherwise; fall
  # back to streamedge's default if [log] is refused.
  local access_log=${BENCH_STREAMEDGE_ACCESS_LOG:-off}
  [[ "$access_log" == file ]] && access_log="$dir/access.log"
  write_streamedge_conf "[log]"$'\n'"access_log = \"$access_log\"" >"$dir/bench.toml"
  if ! "$STREAMEDGE_BIN" -t -c "$dir/bench.toml" >"$dir/check.txt" 2>&1; then
    write_streamedge_conf '' >"$dir/bench.toml"
    if ! "$STREAMEDGE_BIN" -t -c "$dir/bench.toml" >"$dir/check.txt" 2>&1; then
      NOTE[streamedge]="config check failed: $(head -c 300 "$dir/check.txt" | tr '\n' ' ')"
      return 1
    fi
    warn "streamedge refused [log] access_log = \"off\"; running with its default access log"
  fi
  start_server streamedge "$PROXY_CPU" "$dir/streamedge.log" "$STREAMEDGE_BIN" -c "$dir/bench.toml"
  wait_for_port "$port" 30 "${SRV_PID[streamedge]}" || {
    NOTE[streamedge]="did not listen on $port: $(tail -n 5 "$dir/streamedge.log" | tr '\n' ' ')"
    return 1; }
}

start_nginx() {
  local port=$1 dir="$WORK/nginx" bin user=''
  bin=$(command -v nginx || echo /usr/sbin/nginx)
  [[ -x "$bin" ]] || { NOTE[nginx]="nginx not installed"; return 1; }
  mkdir -p "$dir"/{tmp,logs} "$SHM/nginx-cache"
  ((EUID == 0)) && user='user root;'
  cat >"$dir/nginx.conf" <<EOF
# written by scripts/bench/run.sh
$user
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  proxy_cache_path $SHM/nginx-cache levels=1:2 keys_zone=bench:64m max_size=1g inactive=1h use_temp_path=off;
  upstream sim {
    server 127.0.0.1:$SIM_PORT;
    keepalive 64;
  }
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
      proxy_cache_lock_timeout 30s;
      proxy_cache_lock_age 30s;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
EOF
  "$bin" -t -q -e stderr -p "$dir" -c "$dir/nginx.conf" >"$dir/check.txt" 2>&1 || {
    NOTE[nginx]="config check failed: $(head -c 300 "$dir/check.txt" | tr '\n' ' ')"; return 1; }
  start_server nginx "$PROXY_CPU" "$dir/nginx.out" "$bin" -e stderr -p "$dir" -c "$dir/nginx.conf"
  wait_for_port "$port" 15 "${SRV_PID[nginx]}" || {
    NOTE[nginx]="did not listen on $port: $(tail -n 5 "$dir/nginx.out" "$dir/logs/error.log" 2>/dev/null | tr '\n' ' ')"
    return 1; }
}

start_varnish() {
  local port=$1 dir="$WORK/varnish" jail=()
  command -v varnishd >/dev/null || { NOTE[varnish]="varnishd not installed"; return 1; }
  mkdir -p "$dir"
  cat >"$dir/bench.vcl" <<EOF
vcl 4.1;
# written by scripts/bench/run.sh
backend sim {
  .host = "127.0.0.1";
  .port = "$SIM_PORT";
}
sub vcl_backend_response {
  set beresp.do_stream = true;
}
sub vcl_deliver {
  if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
EOF
  # As root, no privilege separation: the work dir is ours and nothing else is exposed.
  ((EUID == 0)) && jail=(-j none)
  start_server varnish "$PROXY_CPU" "$dir/varnishd.log" varnishd -F "${jail[@]}" \
    -n "$dir/work" -a "127.0.0.1:$port" -T none -f "$dir/bench.vcl" -s malloc,256m \
    -p thread_pools=1 -p thread_pool_min=100 -p thread_pool_max=1000 \
    -p thread_pool_timeout=300
  wait_for_port "$port" 30 "${SRV_PID[varnish]}" || {
    NOTE[varnish]="did not listen on $port: $(tail -n 5 "$dir/varnishd.log" | tr '\n' ' ')"
    return 1; }
}

# Debian 12 ships Traffic Server 9.2, configured by records.config (records.yaml came with 10.x).
# We give it a private runroot: its own etc/, cache, logs and runtime dirs under $WORK/$SHM,
# binaries and plugins from the package, and run traffic_server without traffic_manager.
# Coalescing uses the core features (Debian does not ship the collapsed_forwarding plugin):
# read-while-writer plus open-read retries, so waiting clients retry the cache instead of going
# to the origin. Readers can only follow the writer a whole fragment at a time
# (proxy.config.cache.target_fragment_size, 1 MiB by default), which shows in the herd's TTFB.
start_ats() {
  local port=$1 dir="$WORK/ats"
  command -v traffic_server >/dev/null || { NOTE[ats]="traffic_server not installed"; return 1; }
  mkdir -p "$dir"/{etc,run,log,var} "$SHM/ats-cache"
  if [[ -d /etc/trafficserver ]]; then
    cp -R /etc/trafficserver/. "$dir/etc/" 2>/dev/null
  fi
  cat >"$dir/runroot.yaml" <<EOF
prefix: $dir
exec_prefix: /usr
bindir: /usr/bin
sbindir: /usr/sbin
sysconfdir: $dir/etc
datadir: $dir/var
includedir: /usr/include
libdir: /usr/lib/trafficserver
libexecdir: /usr/lib/trafficserver/modules
localstatedir: $dir/var
runtimedir: $dir/run
logdir: $dir/log
cachedir: $SHM/ats-cache
EOF
  cat >"$dir/etc/records.config" <<EOF
# written by scripts/bench/run.sh (Traffic Server 9.x records.config)
CONFIG proxy.config.admin.user_id STRING #-1
CONFIG proxy.config.http.server_ports STRING $port:ipv4:ip-in=127.0.0.1
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT 1
CONFIG proxy.config.exec_thread.affinity INT 0
CONFIG proxy.config.accept_threads INT 0
CONFIG proxy.config.task_threads INT 1
CONFIG proxy.config.cache.threads_per_disk INT 1
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.http.cache.http INT 1
CONFIG proxy.config.http.cache.required_headers INT 2
CONFIG proxy.config.http.insert_response_via_str INT 0
CONFIG proxy.config.http.insert_request_via_str INT 0
CONFIG proxy.config.http.keep_alive_no_activity_timeout_in INT 120
CONFIG proxy.config.http.keep_alive_no_activity_timeout_out INT 120
CONFIG proxy.config.http.server_session_sharing.match STRING both
CONFIG proxy.config.cache.ram_cache.size INT 268435456
CONFIG proxy.config.cache.ram_cache_cutoff INT 4194304
CONFIG proxy.config.cache.max_doc_size INT 0
CONFIG proxy.config.cache.enable_read_while_writer INT 1
CONFIG proxy.config.http.background_fill_active_timeout INT 0
CONFIG proxy.config.http.background_fill_completed_threshold FLOAT 0.0
CONFIG proxy.config.http.cache.max_open_read_retries INT 100
CONFIG proxy.config.http.cache.open_read_retry_time INT 10
CONFIG proxy.config.cache.read_while_writer.max_retries INT 100
CONFIG proxy.config.cache.read_while_writer_retry.delay INT 10
CONFIG proxy.config.log.logging_enabled INT 0
CONFIG proxy.config.diags.debug.enabled INT 0
CONFIG proxy.config.net.connections_throttle INT 30000
CONFIG proxy.config.net.max_connections_in INT 30000
CONFIG proxy.config.net.max_requests_in INT 0
EOF
  cat >"$dir/etc/remap.config" <<EOF
map http://127.0.0.1:$port/ http://127.0.0.1:$SIM_PORT/
map http://localhost:$port/ http://127.0.0.1:$SIM_PORT/
EOF
  echo "$SHM/ats-cache 512M" >"$dir/etc/storage.config"
  : >"$dir/etc/plugin.config"
  : >"$dir/etc/volume.config"
  : >"$dir/etc/hosting.config"
  : >"$dir/etc/parent.config"
  : >"$dir/etc/ssl_multicert.config"
  start_server ats "$PROXY_CPU" "$dir/traffic_server.log" \
    env TS_RUNROOT="$dir/runroot.yaml" traffic_server --run-root="$dir/runroot.yaml"
  wait_for_port "$port" 60 "${SRV_PID[ats]}" || {
    NOTE[ats]="did not listen on $port: $(tail -n 5 "$dir/traffic_server.log" "$dir/log/diags.log" 2>/dev/null | tr '\n' ' ')"
    return 1; }
}

proxy_version() {
  case "$1" in
    streamedge)
      if [[ -x "$STREAMEDGE_BIN" ]]; then "$STREAMEDGE_BIN" --version 2>&1 | head -n1
      else echo "not built ($STREAMEDGE_BIN)"; fi ;;
    nginx) "$(command -v nginx || echo /usr/sbin/nginx)" -v 2>&1 | head -n1 ;;
    varnish) varnishd -V 2>&1 | head -n1 ;;
    ats) traffic_server -V 2>&1 | grep -m1 -Eo 'Traffic Server [0-9.]+' ;;
  esac
}

# ---- run -------------------------------------------------------------------------------------
SIM_PORT=$(pick_port) || die "no free port"
log "origin simulator on 127.0.0.1:$SIM_PORT (CPU $LOAD_CPU)"
start_server origin_sim "$LOAD_CPU" "$WORK/origin_sim.log" "$ORIGIN_SIM_BIN" \
  --listen "127.0.0.1:$SIM_PORT" --name bench-dc
wait_for_port "$SIM_PORT" 15 "${SRV_PID[origin_sim]}" ||
  die "the origin simulator did not start: $(tail -n 5 "$WORK/origin_sim.log")"
[[ -x "$HERD_BIN" ]] || warn "$HERD_BIN not found: the herd test uses curl with $HERD_CLIENTS parallel transfers instead"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  warn "the machine is busy (load average $LOAD_BEFORE): req/s and Gbit/s will suffer; CPU per request holds up better"
fi

declare -A VERSION=()
STREAMEDGE_HWM=''
for name in "${PROXIES[@]}"; do
  echo
  port=$(pick_port) || die "no free port"
  log "${LABEL[$name]} on 127.0.0.1:$port (CPU $PROXY_CPU)"
  VERSION[$name]=$(proxy_version "$name")
  if ! "start_$name" "$port"; then
    warn "${LABEL[$name]} skipped: ${NOTE[$name]}"
    stop_server "$name"
    continue
  fi
  pgid=${SRV_PID[$name]}
  sleep 0.5
  pin_and_check "$name" "$pgid"
  test_playlist "$name" "$port" "$pgid"
  test_segments "$name" "$port" "$pgid"
  test_herd "$name" "$port"
  R[$name:hwm_kib]=$(group_hwm_kib "$pgid")
  [[ "$name" == streamedge ]] &&
    STREAMEDGE_HWM=$(awk '/^VmHWM:/ { print $2 " " $3 }' "/proc/$pgid/status" 2>/dev/null)
  if ! kill -0 "$pgid" 2>/dev/null; then
    warn "${LABEL[$name]} died during the run: $(tail -n 5 "$WORK/$name"/*.log 2>/dev/null | tr '\n' ' ')"
  fi
  stop_server "$name"
done

# ---- report ----------------------------------------------------------------------------------
v() { local x=${R[$1]:-}; echo "${x:-—}"; }
# ratio A B: A ÷ B with two decimals, or — when either is missing or zero.
ratio() {
  [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]] || { echo '—'; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 == 0 || b + 0 == 0) print "—"; else printf "%.2f×", a / b }'
}
row_note() { local n=${NOTE[$1]:-${NOTE[$1:$2]:-}}; [[ -n "$n" ]] && echo " ($n)"; }

report() {
  local se=streamedge name
  echo "# streamedge side-by-side benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- commit: $(git -C "$STREAMEDGE_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git -C "$STREAMEDGE_ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, kernel $(uname -r)"
  echo "- each proxy pinned to CPU $PROXY_CPU with 1 worker/thread; wrk, herd and the origin simulator on CPU $LOAD_CPU; all on 127.0.0.1; access logs off (streamedge: ${BENCH_STREAMEDGE_ACCESS_LOG:-off})"
  echo "- load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews req/s and Gbit/s)"
  echo "- wrk -t1, ${BENCH_SECONDS}s per measured run after a ${BENCH_WARM_SECONDS}s warm-up; CPU = utime+stime of the proxy's processes during the run (resolution $((1000 / CLK_TCK)) ms)"
  for name in "${PROXIES[@]}"; do echo "- ${LABEL[$name]}: ${VERSION[$name]:-?}"; done
  echo
  echo "## (a) Hot hits: 2 KiB playlist (wrk -c$BENCH_CONNS)"
  echo
  echo "| proxy | req/s | p50 ms | p99 ms | CPU µs/req | errors | origin requests during run | req/s: streamedge ÷ proxy (>1: streamedge faster) | CPU/req: proxy ÷ streamedge (>1: streamedge cheaper) |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
  for name in "${PROXIES[@]}"; do
    local r1='—' r2='—'
    if [[ "$name" != "$se" ]]; then
      r1=$(ratio "$(v $se:pl_rps)" "$(v "$name:pl_rps")")
      r2=$(ratio "$(v "$name:pl_cpu_us")" "$(v $se:pl_cpu_us)")
    fi
    echo "| ${LABEL[$name]}$(row_note "$name" pl) | $(v "$name:pl_rps") | $(v "$name:pl_p50") | $(v "$name:pl_p99") | $(v "$name:pl_cpu_us") | $(v "$name:pl_errors") | $(v "$name:pl_origin") | $r1 | $r2 |"
  done
  echo
  echo "## (b) Hot hits: $BENCH_SEGMENTS × 2 MiB segments (wrk -c$BENCH_SEG_CONNS, rotating)"
  echo
  echo "| proxy | Gbit/s | req/s | p99 ms | CPU µs/MiB | errors | Gbit/s: streamedge ÷ proxy (>1: streamedge faster) | CPU/MiB: proxy ÷ streamedge (>1: streamedge cheaper) |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|"
  for name in "${PROXIES[@]}"; do
    local r1='—' r2='—'
    if [[ "$name" != "$se" ]]; then
      r1=$(ratio "$(v $se:seg_gbps)" "$(v "$name:seg_gbps")")
      r2=$(ratio "$(v "$name:seg_cpu_us_mib")" "$(v $se:seg_cpu_us_mib)")
    fi
    echo "| ${LABEL[$name]}$(row_note "$name" seg) | $(v "$name:seg_gbps") | $(v "$name:seg_rps") | $(v "$name:seg_p99") | $(v "$name:seg_cpu_us_mib") | $(v "$name:seg_errors") | $r1 | $r2 |"
  done
  echo
  echo "## (c) Herd: $HERD_CLIENTS clients at once on an uncached 2 MiB object the origin sends in ~1 s"
  echo
  echo "| proxy | origin requests (1 is ideal) | ok / clients | TTFB p50 ms | TTFB p99 ms | TTLB p50 ms | TTLB p99 ms | client |"
  echo "|---|--:|--:|--:|--:|--:|--:|---|"
  for name in "${PROXIES[@]}"; do
    echo "| ${LABEL[$name]}$(row_note "$name" herd) | $(v "$name:herd_origin") | $(v "$name:herd_ok") / $(v "$name:herd_clients") | $(v "$name:herd_ttfb_p50_ms") | $(v "$name:herd_ttfb_p99_ms") | $(v "$name:herd_ttlb_p50_ms") | $(v "$name:herd_ttlb_p99_ms") | $(v "$name:herd_tool") |"
  done
  echo
  echo "## Memory"
  echo
  echo "| proxy | peak RSS MiB (VmHWM, summed over its processes) |"
  echo "|---|--:|"
  for name in "${PROXIES[@]}"; do
    local h=${R[$name:hwm_kib]:-}
    echo "| ${LABEL[$name]} | $([[ -n "$h" ]] && calc "%.1f" "$h / 1024" || echo '—') |"
  done
  if wants streamedge; then
    echo
    echo "streamedge peak RSS (VmHWM): ${STREAMEDGE_HWM:-not measured}"
  fi
}

echo
RESULTS="$BENCH_DIR/results-$(date -u +%Y-%m-%d-%H%M).md"
report | tee "$RESULTS"
echo
log "written to ${RESULTS#"$STREAMEDGE_ROOT"/}"
