#!/usr/bin/env bash
# pod-smoke.sh EDGE_IMAGE RELOADER_IMAGE: runs the two images the way the Kubernetes manifests
# do, in a podman pod (shared PID namespace, no network), and checks the result:
#   * the init step renders the config template for the pod and `streamedge -t` accepts it;
#   * the edge runs as uid 10001 on a read-only root with every capability dropped, and
#     /healthz answers 200 (also through the image's HEALTHCHECK);
#   * a conf.d file added on the host (a [[listener]] on 8090) reaches the edge through the
#     reloader (check, SIGHUP) and the new port accepts connections;
#   * `podman stop` (SIGTERM) ends the edge with exit status 0.
# Needs podman. On hosts where it cannot set rlimits or use crun, give it a containers.conf:
#   CONTAINERS_CONF=my.conf deploy/container/pod-smoke.sh streamedge:dev streamedge-reloader:dev
# (e.g. [containers] default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"],
#  [engine] runtime = "runc"). Removes its pod and temporary files at the end.
set -euo pipefail
edge_image=${1:?edge image}
reloader_image=${2:?reloader image}
pod=streamedge-smoke-$$
dir=$(mktemp -d)
cleanup() { podman pod rm -f "$pod" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "pod-smoke: FAIL: $*" >&2; podman logs "$pod-edge" 2>&1 | tail -20 >&2 || true; exit 1; }

mkdir -p "$dir/template" "$dir/conf.d" "$dir/run"
chown 10001:10001 "$dir/run" 2>/dev/null || chmod 0777 "$dir/run"
cat > "$dir/template/streamedge.toml.in" <<'TOML'
# pod @POD_NAME@ in @POD_NAMESPACE@
include = ["/etc/streamedge/conf.d/*.toml"]
[server]
workers = 1
drain_timeout = "2s"
[admin]
address = "0.0.0.0:9901"
[[listener]]
address = "0.0.0.0:8080"
[cache.ram]
size = "32MiB"
[log]
access_log = "stdout"
TOML
cat > "$dir/conf.d/origin.toml" <<'TOML'
[[origin_group]]
name = "o"
  [[origin_group.origin]]
  url = "http://127.0.0.1:9"
  dc = "a"
  priority = 1
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "o"
TOML
mounts=(-v "$dir/template:/etc/streamedge/template:ro" -v "$dir/conf.d:/etc/streamedge/conf.d:ro"
        -v "$dir/run:/run/streamedge")
env=(-e POD_NAME=streamedge-0 -e POD_NAMESPACE=smoke -e PEER_SERVICE=streamedge-peers)
hardening=(--read-only --cap-drop ALL --security-opt no-new-privileges)

podman pod create --name "$pod" --share pid,ipc,uts,net --network none >/dev/null
podman run --rm --pod "$pod" "${env[@]}" "${mounts[@]}" "${hardening[@]}" --entrypoint /bin/sh \
  "$edge_image" -c '/usr/lib/streamedge/render-config /etc/streamedge/template/streamedge.toml.in /run/streamedge/streamedge.toml && exec /usr/sbin/streamedge -t -c /run/streamedge/streamedge.toml' ||
  fail "render-config / streamedge -t"
grep -qx '# pod streamedge-0 in smoke' "$dir/run/streamedge.toml" || fail "placeholders not rendered"
podman run -d --pod "$pod" --name "$pod-edge" "${env[@]}" "${mounts[@]}" "${hardening[@]}" \
  "$edge_image" -c /run/streamedge/streamedge.toml >/dev/null
podman run -d --pod "$pod" --name "$pod-reloader" "${env[@]}" "${mounts[@]}" "${hardening[@]}" \
  -e STREAMEDGE_TEMPLATE=/etc/streamedge/template/streamedge.toml.in \
  -e STREAMEDGE_CONFIG=/run/streamedge/streamedge.toml \
  -e "WATCH_DIRS=/etc/streamedge/template /etc/streamedge/conf.d" -e POLL_SECONDS=5 \
  "$reloader_image" >/dev/null

in_edge() { podman exec "$pod-edge" "$@" 2>/dev/null; }
connects() { in_edge bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"; }
for _ in $(seq 1 50); do in_edge /usr/lib/streamedge/healthcheck 127.0.0.1 9901 /healthz && break; sleep 0.2; done
in_edge /usr/lib/streamedge/healthcheck 127.0.0.1 9901 /healthz || fail "/healthz"
[[ "$(in_edge id -u)" == 10001 ]] || fail "not uid 10001"
podman healthcheck run "$pod-edge" >/dev/null 2>&1 || fail "image HEALTHCHECK"
! connects 8090 || fail "8090 open before the change"
printf '[[listener]]\naddress = "0.0.0.0:8090"\n' > "$dir/conf.d/extra.toml"
for _ in $(seq 1 60); do connects 8090 && break; sleep 0.5; done
connects 8090 || fail "the added listener was not bound (reloader: $(podman logs "$pod-reloader" 2>&1 | tail -3))"
podman logs "$pod-reloader" 2>&1 | grep -q 'SIGHUP sent to streamedge' || fail "no SIGHUP from the reloader"
podman stop -t 20 "$pod-edge" >/dev/null
[[ "$(podman inspect "$pod-edge" --format '{{.State.ExitCode}}')" == 0 ]] || fail "exit status after SIGTERM"
echo "pod-smoke: 1 passed, 0 failed (render + check, hardened edge, healthcheck, reload via sidecar, SIGTERM)"
