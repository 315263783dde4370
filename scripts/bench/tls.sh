#!/usr/bin/env bash
# TLS hot-hit benchmark: streamedge against nginx (proxy_cache) with the same certificate
# (ECDSA P-256) and the same TLS 1.3 cipher suite, both pinned to one core with one worker,
# wrk on the other core, all on 127.0.0.1.
#   (a) 2 KiB playlist over HTTPS, keep-alive, wrk -c64      → req/s, CPU µs per request
#   (b) 2 MiB segment over HTTPS, keep-alive, wrk -c16       → Gbit/s, CPU µs per MiB
#   (c) new handshakes: "Connection: close" on every request → handshakes/s, CPU µs each
# Knobs: BENCH_SECONDS=8, BENCH_SKIP_BUILD=1, BENCH_PROXY_CPU=0, BENCH_LOAD_CPU=1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$STREAMEDGE_ROOT" || exit 1

SECS=${BENCH_SECONDS:-8}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SIM_BIN=build/release/tests/origin_sim
SE_BIN=${STREAMEDGE_BIN:-build/release/proxy/streamedge}
CLK_TCK=$(getconf CLK_TCK)

ensure_packages nginx-light wrk openssl curl
[[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] || release_build streamedge origin_sim
[[ -x "$SE_BIN" && -x "$SIM_BIN" ]] || die "build/release binaries missing"

WORK=$(mktemp -d /tmp/streamedge-tlsbench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1 || die "openssl req failed"

start_sim

declare -A R=()
measure() {  # NAME TEST PGID CONNS URL [extra wrk args]
  local name=$1 test=$2 pgid=$3 conns=$4 url=$5
  shift 5
  taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d2s "$@" "$url" >/dev/null 2>&1
  local t0 t1 out="$WORK/wrk-$name-$test.txt"
  t0=$(ticks "$pgid")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${SECS}s" --latency "$@" "$url" >"$out" 2>&1
  t1=$(ticks "$pgid")
  local reqs rps
  reqs=$(awk '/ requests in / { print $1 }' "$out")
  rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  R[$name:$test:rps]=$rps
  R[$name:$test:cpu_us]=$(awk -v t=$((t1 - t0)) -v r="${reqs:-0}" -v k="$CLK_TCK" \
    'BEGIN { if (r > 0) printf "%.1f", t * 1e6 / k / r; else print "—" }')
  R[$name:$test:errors]=$(awk '/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
    /Non-2xx/ { e += $5 } END { print e + 0 }' "$out")
}

run_proxy() {  # NAME PORT PGID
  local name=$1 p=$2 pgid=$3
  local pl="https://127.0.0.1:$p/obj/tlsbench/pl.m3u8?size=2048&cc=max-age%3D3600"
  local seg="https://127.0.0.1:$p/obj/tlsbench/seg.ts?size=2097152&cc=max-age%3D3600"
  curl -sk -o /dev/null "$pl"; curl -sk -o /dev/null "$seg"
  measure "$name" pl "$pgid" 64 "$pl"
  measure "$name" seg "$pgid" 16 "$seg"
  measure "$name" hs "$pgid" 16 "$pl" -H "Connection: close"
}

SUITE=TLS_AES_128_GCM_SHA256

# streamedge
SE_PORT=$(port)
cat >"$WORK/se.toml" <<CONF
[server]
workers = 1
[admin]
address = "127.0.0.1:0"
[[listener]]
address = "127.0.0.1:$SE_PORT"
tls_ciphersuites = "$SUITE"
  [[listener.certificate]]
  cert = "$WORK/cert.pem"
  key = "$WORK/key.pem"
[cache.ram]
size = "256MiB"
[log]
access_log = "off"
CONF
se_routes >>"$WORK/se.toml"
setsid taskset -c "$PROXY_CPU" "$SE_BIN" -c "$WORK/se.toml" >"$WORK/se.log" 2>&1 &
SE_PID=$!
PIDS+=("$SE_PID")
wait_for_port "$SE_PORT" 20 "$SE_PID" || die "streamedge did not start: $(tail -5 "$WORK/se.log")"
run_proxy streamedge "$SE_PORT" "$SE_PID"
kill -TERM "$SE_PID"; wait "$SE_PID" 2>/dev/null

# nginx
NG_PORT=$(port)
mkdir -p "$WORK/ng"/{tmp,logs} "$WORK/ng-cache"
cat >"$WORK/ng/nginx.conf" <<CONF
user root;
worker_processes 1;
daemon off;
pid $WORK/ng/nginx.pid;
error_log $WORK/ng/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/ng/tmp/body;
  proxy_temp_path $WORK/ng/tmp/proxy;
  fastcgi_temp_path $WORK/ng/tmp/fastcgi;
  uwsgi_temp_path $WORK/ng/tmp/uwsgi;
  scgi_temp_path $WORK/ng/tmp/scgi;
  proxy_cache_path $WORK/ng-cache keys_zone=bench:64m max_size=1g inactive=1h use_temp_path=off;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_conf_command Ciphersuites $SUITE;
  ssl_session_cache shared:SSL:10m;
  upstream sim { server 127.0.0.1:$SIM_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NG_PORT ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
    }
  }
}
CONF
setsid taskset -c "$PROXY_CPU" nginx -e stderr -p "$WORK/ng" -c "$WORK/ng/nginx.conf" >"$WORK/ng.log" 2>&1 &
NG_PID=$!
PIDS+=("$NG_PID")
wait_for_port "$NG_PORT" 15 "$NG_PID" || die "nginx did not start: $(tail -5 "$WORK/ng.log")"
run_proxy nginx "$NG_PORT" "$NG_PID"

gbit() { awk -v r="$1" 'BEGIN { printf "%.2f", r * 2097152 * 8 / 1e9 }'; }
echo
echo "# TLS hot hits — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short=12 HEAD)"
echo "one worker pinned to CPU $PROXY_CPU, wrk -t1 on CPU $LOAD_CPU, ECDSA P-256, $SUITE, ${SECS}s per run"
echo
echo "| test | streamedge | nginx | streamedge ÷ nginx | CPU: nginx ÷ streamedge |"
echo "|---|--:|--:|--:|--:|"
for t in pl seg hs; do
  case $t in
    pl) label="2 KiB playlist, req/s (CPU µs/req)" ;;
    seg) label="2 MiB segment, Gbit/s (CPU µs/req)" ;;
    hs) label="new handshakes/s (CPU µs each)" ;;
  esac
  a=${R[streamedge:$t:rps]:-0} b=${R[nginx:$t:rps]:-0}
  if [[ $t == seg ]]; then av=$(gbit "$a"); bv=$(gbit "$b"); else av=$a; bv=$b; fi
  echo "| $label | $av (${R[streamedge:$t:cpu_us]:-—}) | $bv (${R[nginx:$t:cpu_us]:-—}) | $(ratio "$a" "$b") | $(ratio "${R[nginx:$t:cpu_us]:-0}" "${R[streamedge:$t:cpu_us]:-0}") |"
done
echo
echo "errors: streamedge $(( ${R[streamedge:pl:errors]:-0} + ${R[streamedge:seg:errors]:-0} + ${R[streamedge:hs:errors]:-0} )), nginx $(( ${R[nginx:pl:errors]:-0} + ${R[nginx:seg:errors]:-0} + ${R[nginx:hs:errors]:-0} ))"
