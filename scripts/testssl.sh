#!/usr/bin/env bash
# Runs testssl.sh (Debian package testssl.sh) against a streamedge TLS listener.
#   scripts/testssl.sh [HOST:PORT]      default: 127.0.0.1:8443 (the embedded default's HTTPS)
# Start streamedge first (scripts/run.sh). Expected: no SSLv2/SSLv3/TLS 1.0/TLS 1.1 offered, only
# forward-secret AEAD ciphers, no known vulnerability flagged. Output also in ${TMPDIR:-/tmp}/testssl-<port>.log.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$STREAMEDGE_ROOT"

TARGET=${1:-127.0.0.1:8443}
ensure_packages testssl.sh
command -v testssl >/dev/null || die "testssl not found after installing testssl.sh"
# --ip one: only the given address; -p protocols, -s cipher categories, -f forward secrecy,
# -U vulnerabilities, -S server defaults (certificate, tickets, OCSP stapling).
testssl --quiet --color 0 --ip one --warnings off -p -s -f -U -S "$TARGET" | tee "${TMPDIR:-/tmp}/testssl-${TARGET##*:}.log"
