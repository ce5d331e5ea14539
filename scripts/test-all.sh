#!/usr/bin/env bash
# The one test command for a fresh machine and for CI: set up, build the gVisor lab (cached outside
# the repository), then run every tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lab:build
node dist/lab/runtime-tools.js build
npm run --silent lint
npm test
