#!/usr/bin/env bash
# Runs the test tiers in one node --test run: the spec reporter for people, and a plain closing
# line ("N passed, N failed, N skipped") that any CI log reader understands.
set -uo pipefail
cd "$(dirname "$0")/.."
tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(dist/test/unit/ dist/test/host/ dist/test/gvisor/)
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
# One file at a time: host and gVisor tests start daemons, sandboxes and network namespaces.
node --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  "${tiers[@]}"
status=$?
count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" | tail -n 1; }
echo "tests: $(count pass) passed, $(count fail) failed, $(count skipped) skipped"
# test-all.sh runs two batches and adds them up.
[ -z "${SANDKUBE_TAP_OUT:-}" ] || cp "$tap" "$SANDKUBE_TAP_OUT"
exit $status
