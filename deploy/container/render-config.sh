#!/bin/bash
# render-config TEMPLATE OUTPUT: writes TEMPLATE to OUTPUT with the per-pod values filled in,
# atomically (a temporary file in OUTPUT's directory, then rename).
#
# streamedge reads no environment variables in its config, but a cluster member's config
# differs per pod (`[cluster] self`, the namespace in the peers' names). The Kubernetes
# manifests therefore keep the main config as a template in a ConfigMap and render it into an
# emptyDir before the edge starts (and again before each reload, in the reloader sidecar).
# Only these placeholders are replaced, nothing else of the file is touched:
#   @POD_NAME@  @POD_NAMESPACE@  @POD_IP@  @PEER_SERVICE@
# Each must be set in the environment when the template uses it (the Downward API).
set -euo pipefail
template=$1 output=$2
for var in POD_NAME POD_NAMESPACE POD_IP PEER_SERVICE; do
  if grep -q "@${var}@" "$template" && [ -z "${!var:-}" ]; then
    echo "render-config: $template uses @${var}@ but \$${var} is not set" >&2
    exit 1
  fi
done
# Values go through sed as literal replacement text: escape \, & and the delimiter |.
esc() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
tmp=$(mktemp "$(dirname "$output")/.render.XXXXXX")
trap 'rm -f "$tmp"' EXIT
sed -e "s|@POD_NAME@|$(esc "${POD_NAME:-}")|g" \
    -e "s|@POD_NAMESPACE@|$(esc "${POD_NAMESPACE:-}")|g" \
    -e "s|@POD_IP@|$(esc "${POD_IP:-}")|g" \
    -e "s|@PEER_SERVICE@|$(esc "${PEER_SERVICE:-}")|g" \
    "$template" > "$tmp"
chmod 0640 "$tmp"
mv -f "$tmp" "$output"
trap - EXIT
