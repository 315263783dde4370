#!/usr/bin/env bash
# HTTP/2 hot-hit benchmark: streamedge against nginx (proxy_cache, HTTP/2 on its TLS listener) with the same
# self-signed certificate (ECDSA P-256) and TLS 1.3 cipher suite, both pinned to one core with
# one worker, h2load (Debian's nghttp2-client) on the other core, all on 127.0.0.1.
#   (a) 2 KiB playlist over h2, h2load -c16 -m16        → req/s, CPU µs per request
#   (b) 2 MiB segment over h2, h2load -c8 -m2           → Gbit/s, CPU µs per request
#   (c) 2 KiB playlist over HTTP/1.1 TLS, h2load --h1 -c64 (streamedge only) → the h2 ÷ h1 cost
# Targets (issue 20): ≥ 1.2× nginx on (a), ≥ 1.0× on (b); (a) CPU within 1.3× of (c).
# Knobs: BENCH_SECONDS=8, BENCH_SKIP_BUILD=1, BENCH_PROXY_CPU=0, BENCH_LOAD_CPU=1.
# Not run in CI: the lead runs it on a quiet machine.
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
SE_BIN=build/release/proxy/streamedge
CLK_TCK=$(getconf CLK_TCK)

ensure_packages nginx-light nghttp2-client openssl curl
[[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] || release_build streamedge origin_sim
[[ -x "$SE_BIN" && -x "$SIM_BIN" ]] || die "build/release binaries missing"

WORK=$(mktemp -d /tmp/streamedge-h2bench.XXXXXX)
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
measure() {  # NAME TEST PGID URL [h2load args]
  local name=$1 test=$2 pgid=$3 url=$4
  shift 4
  taskset -c "$LOAD_CPU" h2load -t1 -D 2 "$@" "$url" >/dev/null 2>&1  # warm-up
  local t0 t1 out="$WORK/h2load-$name-$test.txt"
  t0=$(ticks "$pgid")
  taskset -c "$LOAD_CPU" h2load -t1 -D "$SECS" "$@" "$url" >"$out" 2>&1
  t1=$(ticks "$pgid")
  local done_reqs
  done_reqs=$(awk '/^requests:/ { print $8 }' "$out")  # "N succeeded"
  R[$name:$test:rps]=$(awk '/^finished in/ { gsub(/,/, ""); printf "%.0f", $4 }' "$out")
  R[$name:$test:cpu_us]=$(awk -v t=$((t1 - t0)) -v r="${done_reqs:-0}" -v k="$CLK_TCK" \
    'BEGIN { if (r > 0) printf "%.1f", t * 1e6 / k / r; else print "—" }')
  R[$name:$test:errors]=$(awk '/^requests:/ { print $10 + $12 + $14 }' "$out")
}

run_proxy() {  # NAME PORT PGID
  local name=$1 p=$2 pgid=$3
  local pl="https://127.0.0.1:$p/obj/h2bench/pl.m3u8?size=2048&cc=max-age%3D3600"
  local seg="https://127.0.0.1:$p/obj/h2bench/seg.ts?size=2097152&cc=max-age%3D3600"
  curl -sk --http2 -o /dev/null "$pl"; curl -sk --http2 -o /dev/null "$seg"
  measure "$name" pl "$pgid" "$pl" -c16 -m16
  measure "$name" seg "$pgid" "$seg" -c8 -m2
  [[ $name == streamedge ]] && measure "$name" h1 "$pgid" "$pl" --h1 -c64
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
http2 = true
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
  http2_max_concurrent_streams 100;
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
    # Debian 12 nginx (1.22) takes HTTP/2 as a listen parameter, not as a directive.
    listen 127.0.0.1:$NG_PORT ssl http2;
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
echo "# HTTP/2 hot hits — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short=12 HEAD)"
echo "one worker pinned to CPU $PROXY_CPU, h2load -t1 on CPU $LOAD_CPU, ECDSA P-256, $SUITE, ${SECS}s per run"
echo
echo "| test | streamedge | nginx | streamedge ÷ nginx | CPU: nginx ÷ streamedge |"
echo "|---|--:|--:|--:|--:|"
for t in pl seg; do
  case $t in
    pl) label="2 KiB playlist over h2, req/s (CPU µs/req)" ;;
    seg) label="2 MiB segment over h2, Gbit/s (CPU µs/req)" ;;
  esac
  a=${R[streamedge:$t:rps]:-0} b=${R[nginx:$t:rps]:-0}
  if [[ $t == seg ]]; then av=$(gbit "$a"); bv=$(gbit "$b"); else av=$a; bv=$b; fi
  echo "| $label | $av (${R[streamedge:$t:cpu_us]:-—}) | $bv (${R[nginx:$t:cpu_us]:-—}) | $(ratio "$a" "$b") | $(ratio "${R[nginx:$t:cpu_us]:-0}" "${R[streamedge:$t:cpu_us]:-0}") |"
done
echo
echo "streamedge 2 KiB playlist over HTTP/1.1 TLS: ${R[streamedge:h1:rps]:-—} req/s (${R[streamedge:h1:cpu_us]:-—} CPU µs/req);" \
  "h2 CPU ÷ h1 CPU: $(ratio "${R[streamedge:pl:cpu_us]:-0}" "${R[streamedge:h1:cpu_us]:-0}") (target ≤ 1.30×)"
echo "errors: streamedge $(( ${R[streamedge:pl:errors]:-0} + ${R[streamedge:seg:errors]:-0} + ${R[streamedge:h1:errors]:-0} )), nginx $(( ${R[nginx:pl:errors]:-0} + ${R[nginx:seg:errors]:-0} ))"
