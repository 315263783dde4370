#!/usr/bin/env bash
# Builds the Debian package of streamedge with Debian's own tooling (dpkg-buildpackage and
# debhelper, from debian/), then checks it:
#   1. lintian (errors and warnings fail; info tags are printed);
#   2. the file list (dpkg-deb -c), the conffiles, the resolved Depends (dpkg-shlibdeps) and the
#      maintainer scripts (user, directories, systemd enable/start snippets);
#   3. extracted into a throw-away root (dpkg -x): the packaged binary runs and accepts the
#      packaged config (-t), the man page renders without warnings;
#   4. systemd-analyze verify accepts the packaged unit.
# With STREAMEDGE_PACKAGE_INSTALL=1 it also installs the package on this machine (apt-get;
# services are not started), checks the user and the directories, runs the installed binary the
# way the unit does (as streamedge, with NOTIFY_SOCKET) until READY=1, stops it, and purges the
# package again (STREAMEDGE_PACKAGE_KEEP=1 keeps it installed).
#
# The build compiles the whole project with Debian's flags (not the tests): several minutes on a
# small machine; it runs under `nice -n 10` with ccache. Output: build/package/*.deb.
# Knobs: STREAMEDGE_JOBS=2, STREAMEDGE_PACKAGE_SKIP_BUILD=1 (check the existing .deb only).
# Needs root or sudo to install build dependencies (apt-get build-dep, non-interactive).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$STREAMEDGE_ROOT"
out="$STREAMEDGE_ROOT/build/package"
src="$out/src"
jobs="${STREAMEDGE_JOBS:-2}"
failures=()
check() {  # check NAME COMMAND...: runs it, records a failure instead of stopping
  local name="$1"; shift
  if "$@"; then ok "ok: $name"; else warn "FAILED: $name"; failures+=("$name"); fi
}

sudo=()
((EUID == 0)) || sudo=(sudo)

# --- tools and build dependencies ------------------------------------------------------------
ensure_packages dpkg-dev debhelper lintian fakeroot ccache man-db logrotate systemd
if ! dpkg-checkbuilddeps debian/control 2>/dev/null; then
  log "installing the build dependencies of debian/control (apt-get build-dep)"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q || die "apt-get update failed"
  "${sudo[@]}" apt-get build-dep -y -q --no-install-recommends "$STREAMEDGE_ROOT" ||
    die "apt-get build-dep failed"
  dpkg-checkbuilddeps debian/control || die "build dependencies still missing"
fi

version="$(dpkg-parsechangelog -l debian/changelog -S Version)"
arch="$(dpkg-architecture -q DEB_HOST_ARCH)"
deb="$out/streamedge_${version}_${arch}.deb"

# --- build -----------------------------------------------------------------------------------
if [[ "${STREAMEDGE_PACKAGE_SKIP_BUILD:-0}" != 1 ]]; then
  # An exported tree (tracked and new files, nothing ignored): the package never sees a build
  # directory or a local certificate. Always the same path, so that ccache finds its entries.
  commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
  [[ -z "$(git status --porcelain 2>/dev/null)" ]] || commit="${commit}-dirty"
  rm -rf "$src" && mkdir -p "$src"
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$src"
  rm -f "$out"/streamedge_*
  log "building $deb (dpkg-buildpackage, $jobs jobs, nice 10, ccache)"
  start=$(date +%s)
  (
    cd "$src"
    export STREAMEDGE_CMAKE_ARGS="-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DSTREAMEDGE_GIT_COMMIT=$commit"
    export DEB_BUILD_OPTIONS="parallel=$jobs${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}"
    nice -n 10 dpkg-buildpackage -b -us -uc
  ) > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; die "dpkg-buildpackage failed (log: $out/build.log)"; }
  log "built in $(( $(date +%s) - start )) s (log: $out/build.log)"
fi
[[ -f "$deb" ]] || die "no package at $deb"

# --- 1. lintian --------------------------------------------------------------------------------
log "lintian $deb"
lintian_out="$(lintian --info --display-info "$deb" 2>&1 || true)"
[[ -n "$lintian_out" ]] && printf '%s\n' "$lintian_out"
lintian_bad() { ! grep -Eq '^[EW]: ' <<<"$lintian_out"; }
check "lintian: no errors or warnings" lintian_bad

# --- 2. contents, conffiles, Depends, maintainer scripts --------------------------------------
listing="$(dpkg-deb -c "$deb")"
printf '%s\n' "$listing" | awk '{print "  " $1, $2, $6}'
has_file() { grep -Eq "[[:space:]]\\.$1\$" <<<"$listing"; }
for f in /usr/sbin/streamedge /etc/streamedge/streamedge.toml /etc/streamedge/conf.d/ \
         /lib/systemd/system/streamedge.service /etc/logrotate.d/streamedge \
         /usr/share/man/man8/streamedge.8.gz /usr/share/doc/streamedge/copyright \
         /usr/share/doc/streamedge/examples/streamedge.example.toml; do
  check "contains $f" has_file "$f"
done
no_build_leftovers() { ! grep -Eq 'tests?/|\.a$|/include/|origin_sim|scenario' <<<"$listing"; }
check "no test binaries, libraries or headers" no_build_leftovers
no_var() { ! grep -Eq '[[:space:]]\./var/' <<<"$listing"; }
check "no /var in the package (postinst makes the directories for their user)" no_var
control="$(dpkg-deb -f "$deb")"
printf '%s\n' "$control" | grep -E '^(Package|Version|Architecture|Depends|Recommends|Installed-Size):'
depends="$(dpkg-deb -f "$deb" Depends)"
for lib in libc6 libstdc++6 libssl3 libevent libsystemd0 liburing2 libxxhash0 libbrotli1 zlib1g libpugixml1v5 \
           libprometheus-cpp-core adduser; do
  check "Depends names $lib" grep -q "$lib" <<<"$depends"
done
work="$(mktemp -d "${TMPDIR:-/tmp}/streamedge-package.XXXXXX")"
trap 'rm -rf "$work"' EXIT
dpkg-deb -e "$deb" "$work/DEBIAN"
conffiles_ok() {
  grep -qx /etc/streamedge/streamedge.toml "$work/DEBIAN/conffiles" &&
    grep -qx /etc/logrotate.d/streamedge "$work/DEBIAN/conffiles"
}
check "conffiles: the config and the logrotate file" conffiles_ok
check "postinst creates the user streamedge" grep -q 'adduser --system --group' "$work/DEBIAN/postinst"
check "postinst enables the unit" grep -q 'deb-systemd-helper.*enable' "$work/DEBIAN/postinst"
check "postinst starts the unit" grep -q "deb-systemd-invoke start 'streamedge.service'" \
  "$work/DEBIAN/postinst"
hot_upgrade_on_upgrade() {  # an upgrade hands over with SIGUSR2 instead of a restart
  grep -q 'systemctl kill --kill-who=main --signal=USR2 streamedge.service' "$work/DEBIAN/postinst" &&
    ! grep -Eq 'deb-systemd-invoke (restart|\$_dh_action)' "$work/DEBIAN/postinst"
}
check "postinst hot-upgrades a running service instead of restarting it" hot_upgrade_on_upgrade
stops_only_on_remove() {
  ! grep -q 'deb-systemd-invoke stop' "$work/DEBIAN/prerm" ||
    grep -B2 'deb-systemd-invoke stop' "$work/DEBIAN/prerm" | grep -q '"$1" = remove'
}
check "prerm stops the unit only on remove, not on upgrade" stops_only_on_remove
check "postrm purges cache and logs" grep -q 'rm -rf /var/cache/streamedge /var/log/streamedge' "$work/DEBIAN/postrm"

# --- 3. a throw-away root ----------------------------------------------------------------------
root="$work/root"
dpkg -x "$deb" "$root"
check "the packaged binary runs (--version)" "$root/usr/sbin/streamedge" --version
check "the packaged config is valid (-t)" "$root/usr/sbin/streamedge" -t -c "$root/etc/streamedge/streamedge.toml"
man_clean() {
  local warnings
  warnings="$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z \
              "$root/usr/share/man/man8/streamedge.8.gz" 2>&1 >/dev/null)"
  [[ -z "$warnings" ]] || { printf '%s\n' "$warnings"; return 1; }
}
check "the man page renders without warnings" man_clean
logrotate_parses() {
  # logrotate resolves the `create` owner: before an install there is no user streamedge, so
  # that one name is replaced by root for the check.
  local file="$root/etc/logrotate.d/streamedge" output
  if ! getent passwd streamedge >/dev/null; then
    sed 's/^\(\s*create [0-9]* \)streamedge /\1root /' "$file" > "$work/logrotate.conf"
    file="$work/logrotate.conf"
  fi
  output="$(logrotate -d "$file" 2>&1)"
  grep -q '^error' <<<"$output" && { printf '%s\n' "$output"; return 1; }
  grep -q 'rotating pattern: /var/log/streamedge/\*.log' <<<"$output" ||
    { printf '%s\n' "$output"; return 1; }
}
check "the logrotate file parses (logrotate -d)" logrotate_parses

# --- 4. systemd-analyze verify -------------------------------------------------------------------
# Offline (systemd need not be PID 1). verify checks that ExecStart's binary and the
# Documentation= man page exist: point both at the extracted root. It exits 0 on unknown keys or
# bad values, so any output is a failure.
verify_unit() {
  local unit="$work/verify/streamedge.service" output
  mkdir -p "$work/verify"
  sed "s#/usr/sbin/streamedge#$root/usr/sbin/streamedge#g" \
    "$root/lib/systemd/system/streamedge.service" > "$unit"
  output="$(MANPATH="$root/usr/share/man" systemd-analyze verify "$unit" 2>&1)" || {
    printf '%s\n' "$output"; return 1; }
  [[ -z "$output" ]] || { printf '%s\n' "$output"; return 1; }
}
check "systemd-analyze verify accepts the unit" verify_unit

# --- optional: install it here -----------------------------------------------------------------
if [[ "${STREAMEDGE_PACKAGE_INSTALL:-0}" == 1 ]]; then
  log "installing $deb on this machine (services not started)"
  policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"; created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "$deb" > "$out/install.log" 2>&1 ||
    { cat "$out/install.log"; ((created_policy)) && "${sudo[@]}" rm -f "$policy"; die "install failed"; }
  ((created_policy)) && "${sudo[@]}" rm -f "$policy"
  login_shell_is() { [[ "$(getent passwd streamedge | cut -d: -f7)" == "$1" ]]; }
  owner_mode_is() { [[ "$(stat -c '%U:%G %a' "$1")" == "$2" ]]; }
  check "user streamedge exists without a login shell" login_shell_is /usr/sbin/nologin
  check "/etc/streamedge is root:streamedge 0750" owner_mode_is /etc/streamedge "root:streamedge 750"
  check "/var/cache/streamedge is streamedge:streamedge 0750" \
    owner_mode_is /var/cache/streamedge "streamedge:streamedge 750"
  check "/var/log/streamedge is streamedge:adm 2750" owner_mode_is /var/log/streamedge "streamedge:adm 2750"
  check "the unit is enabled" test -L /etc/systemd/system/multi-user.target.wants/streamedge.service
  # The process as the unit starts it: user streamedge, CAP_NET_BIND_SERVICE, NOTIFY_SOCKET.
  run_like_the_unit() {
    "${sudo[@]}" /usr/bin/python3 - <<'PY'
import os, signal, socket, subprocess, sys, tempfile, time, urllib.request
d = tempfile.mkdtemp(prefix="streamedge-notify-")
path = os.path.join(d, "notify.sock")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(d, 0o755); os.chmod(path, 0o777)  # the service user must be able to send
env = dict(os.environ, NOTIFY_SOCKET=path)
p = subprocess.Popen(["setpriv", "--reuid=streamedge", "--regid=streamedge", "--init-groups",
                      "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service",
                      "/usr/sbin/streamedge", "-c", "/etc/streamedge/streamedge.toml"], env=env,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
s.settimeout(0.5)
ok = False
def receive(deadline):
    while time.time() < deadline:
        try:
            return s.recv(4096).decode()
        except socket.timeout:
            if p.poll() is not None:
                raise RuntimeError("streamedge exited with status %d" % p.returncode)
    raise RuntimeError("no notification in time")
try:
    deadline = time.time() + 20
    while True:
        msg = receive(deadline)
        print("  notify:", msg.replace("\n", " | "))
        if "READY=1" in msg:
            ok = True
            break
    health = urllib.request.urlopen("http://127.0.0.1:9901/healthz", timeout=5).read().decode().strip()
    print("  /healthz:", health)
    ok = ok and health == "ok"
    p.send_signal(signal.SIGTERM)
    deadline = time.time() + 20
    while "STOPPING=1" not in receive(deadline):
        pass
    rc = p.wait(timeout=30)
    print("  exit status", rc)
    ok = ok and rc == 0
except Exception as e:
    print("  error:", e)
    ok = False
finally:
    if p.poll() is None:
        p.kill()
    print("".join("  | " + l for l in p.stdout.read().decode().splitlines(True)))
    os.unlink(path); os.rmdir(d)
sys.exit(0 if ok else 1)
PY
  }
  check "installed binary, run as the unit runs it: READY=1, /healthz ok, STOPPING=1, exit 0" run_like_the_unit
  if [[ "${STREAMEDGE_PACKAGE_KEEP:-0}" != 1 ]]; then
    "${sudo[@]}" apt-get purge -y -q streamedge > "$out/purge.log" 2>&1 || warn "purge failed (see $out/purge.log)"
    gone() { [[ ! -e /var/cache/streamedge && ! -e /var/log/streamedge ]]; }
    check "purge removed cache and logs" gone
  fi
fi

# --- summary -----------------------------------------------------------------------------------
echo
if ((${#failures[@]})); then
  die "${#failures[@]} check(s) failed: ${failures[*]}"
fi
ok "package $deb: every check passed"
