#!/usr/bin/env bash
# Runs streamedge on this machine with a demo origin:
#   installs missing Debian packages, builds build/release (streamedge + origin_sim), starts the
#   origin simulator on 127.0.0.1:8081 in the background, then streamedge in the foreground on
#   its embedded default config (HTTP 127.0.0.1:8080, HTTPS 127.0.0.1:8443 with a self-signed
#   certificate generated at first start in ./certs/, admin 127.0.0.1:9901).
# Extra arguments go to streamedge:  scripts/run.sh -c conf/streamedge.example.toml
# Ctrl-C stops streamedge (graceful drain) and then the simulator.
#
# Knobs: STREAMEDGE_SKIP_BUILD=1 (use the existing build/release), STREAMEDGE_JOBS=2.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STREAMEDGE_ROOT"

SIM_ADDR=127.0.0.1:8081
SIM_BIN=build/release/tests/origin_sim
PROXY_BIN=build/release/proxy/streamedge

ensure_packages "${STREAMEDGE_BUILD_PACKAGES[@]}"

if [[ "${STREAMEDGE_SKIP_BUILD:-0}" != 1 ]]; then
  log "building build/release (streamedge, origin_sim)"
  release_build streamedge origin_sim
fi
[[ -x "$SIM_BIN" ]] || die "$SIM_BIN not found (build failed?)"
[[ -x "$PROXY_BIN" ]] || die "$PROXY_BIN not found (build failed?)"

SIM_PID='' WATCH_PID=''
# shellcheck disable=SC2317  # invoked by the trap below
cleanup() {
  if [[ -n "$WATCH_PID" ]]; then kill "$WATCH_PID" 2>/dev/null || true; fi
  if [[ -n "$SIM_PID" ]] && kill -0 "$SIM_PID" 2>/dev/null; then
    log "stopping origin simulator (pid $SIM_PID)"
    kill -TERM "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use "${SIM_ADDR##*:}" &&
  die "$SIM_ADDR is already in use: stop whatever listens there (the demo origin needs it)"
if (($# == 0)); then
  for p in 8080 8443 9901; do
    port_in_use "$p" && die "127.0.0.1:$p is already in use (streamedge's default config needs it)"
  done
fi

log "starting origin simulator on $SIM_ADDR"
"$SIM_BIN" --listen "$SIM_ADDR" --name demo-dc &
SIM_PID=$!
wait_for_port "${SIM_ADDR##*:}" 10 "$SIM_PID" ||
  die "the origin simulator did not start listening on $SIM_ADDR (see its output above)"

print_urls() {
  cat <<EOF

${_c_bold}streamedge is up.${_c_off} Try, in another terminal:
  curl -i http://127.0.0.1:8080/live/master.m3u8
  curl -i http://127.0.0.1:8080/live/720p/index.m3u8
  curl -i http://127.0.0.1:8080/dash/manifest.mpd
  curl -i http://127.0.0.1:8080/vod/demo/index.m3u8
  curl -i --cacert certs/streamedge-selfsigned.pem https://localhost:8443/live/master.m3u8
  curl http://127.0.0.1:9901/metrics
Repeat a request to see X-Cache change from MISS to HIT. Ctrl-C stops everything.

EOF
}

if (($# == 0)); then
  # Print the URLs once the default listener accepts, without taking the foreground.
  ( wait_for_port 8080 30 && print_urls ) &
  WATCH_PID=$!
else
  log "streamedge runs with your arguments: $*"
  log "the demo origin is at http://$SIM_ADDR; adjust the URLs below to your listeners"
  print_urls
fi

log "starting streamedge (foreground): $PROXY_BIN $*"
rc=0
"$PROXY_BIN" "$@" || rc=$?
exit "$rc"
