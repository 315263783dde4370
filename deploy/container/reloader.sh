#!/bin/bash
# reloader: the Kubernetes sidecar that makes a ConfigMap (or Secret) change reach a running
# streamedge without a restart. Needs `shareProcessNamespace: true` in the pod and the same
# uid as the edge (10001), so that it may signal it, and the same volumes (the check reads the
# included files, certificates and keys).
#
# Kubernetes updates a mounted ConfigMap by swapping its `..data` symlink (a create/moved_to
# in the directory; subPath mounts are never updated, so mount whole directories). On every
# change of a watched directory - or every $POLL_SECONDS if an event is missed - it compares a
# fingerprint of the files; when it changed it renders the template to a candidate file,
# checks it with `streamedge -t`, moves it over the live config and sends SIGHUP to the edge.
# A config that fails the check is logged and not installed; the edge keeps running on its
# current config (it would refuse a broken one on SIGHUP anyway).
#
# Environment:
#   STREAMEDGE_TEMPLATE  main config template (render-config placeholders); "" = none, then
#                        STREAMEDGE_CONFIG is the ConfigMap file itself and only checked
#   STREAMEDGE_CONFIG    the config the edge runs with (-c)
#   WATCH_DIRS           space-separated directories to watch (the mounted ConfigMaps/Secrets)
#   POLL_SECONDS         the longest wait between two fingerprint checks (default 60)
#   STREAMEDGE_BINARY    default /usr/sbin/streamedge
#   RENDER_CONFIG        default /usr/lib/streamedge/render-config
set -uo pipefail
template=${STREAMEDGE_TEMPLATE:-}
config=${STREAMEDGE_CONFIG:-/run/streamedge/streamedge.toml}
read -r -a dirs <<< "${WATCH_DIRS:-/etc/streamedge}"
poll=${POLL_SECONDS:-60}
binary=${STREAMEDGE_BINARY:-/usr/sbin/streamedge}
render=${RENDER_CONFIG:-/usr/lib/streamedge/render-config}

log() { echo "reloader: $*" >&2; }

# Contents of every visible file (the ConfigMap's `..data`, `..2024_...` entries are hidden).
fingerprint() {
  find -L "${dirs[@]}" -type f -not -path '*/..*' -print0 2>/dev/null | sort -z \
    | xargs -0 -r sha256sum 2>/dev/null | sha256sum
}

# The edge: a process running $binary that is not a config check (-t) of ours.
edge_pid() {
  local found="" pid exe args
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    exe=$(readlink "$dir/exe" 2>/dev/null) || continue
    [ "$exe" = "$binary" ] || continue
    args=$(tr '\0' ' ' < "$dir/cmdline" 2>/dev/null) || continue
    case " $args" in *" -t "*) continue ;; esac
    if [ -n "$found" ]; then log "several streamedge processes ($found $pid): not signalling"; return 1; fi
    found=$pid
  done
  [ -n "$found" ] || { log "no streamedge process visible (shareProcessNamespace: true?)"; return 1; }
  echo "$found"
}

reload() {
  local candidate=$config
  if [ -n "$template" ]; then
    candidate="$(dirname "$config")/.candidate.toml"
    "$render" "$template" "$candidate" || return 1
  fi
  if ! "$binary" -t -c "$candidate"; then
    log "the changed config does not check: not installed, the edge keeps its config"
    [ "$candidate" != "$config" ] && rm -f "$candidate"
    return 1
  fi
  [ "$candidate" != "$config" ] && mv -f "$candidate" "$config"
  local pid
  pid=$(edge_pid) || return 1
  kill -HUP "$pid" && log "config changed: SIGHUP sent to streamedge (pid $pid)"
}

last=$(fingerprint)
log "watching ${dirs[*]} (poll every ${poll}s)"
while true; do
  # Returns on an event, after $poll seconds, or at once if a directory is missing (then the
  # sleep bounds the loop).
  inotifywait -q -q -t "$poll" -e create,delete,moved_to,close_write,attrib "${dirs[@]}" \
    || sleep 1
  now=$(fingerprint)
  [ "$now" = "$last" ] && continue
  sleep 2  # let the rest of an update land (ConfigMap and Secret change separately)
  now=$(fingerprint)
  reload && last=$now
  # A failed reload is retried at the next change or poll (last stays the old fingerprint).
done
