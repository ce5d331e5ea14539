#!/usr/bin/env bash
# The one test command for a fresh machine and for CI: set up, build the gVisor lab (cached outside
# the repository), then run every tier.
#
# CoreDNS, local-path-provisioner and helm are the slowest builds of a cold lab (together about
# as long as the rest), and only the node scenarios and the add-on tests need them. So they build
# in the background while the tests that do not need them run; the rest run once they are done.
set -euo pipefail
cd "$(dirname "$0")/.."
late_builds="coredns,local-path-provisioner,helm"
late_tests=(
  dist/test/host/addon-images.test.js
  dist/test/host/addons-apiserver.test.js
  dist/test/host/node-up.test.js
  dist/test/host/registry-node.test.js
  dist/test/gvisor/node-up.test.js
  dist/test/gvisor/registry-node.test.js
)

bash scripts/setup.sh
npm run --silent lab:build -- --except "$late_builds"
build_log=$(mktemp)
taps=$(mktemp -d)
trap 'rm -rf "$build_log" "$taps"' EXIT
npm run --silent lab:build -- --only "$late_builds" >"$build_log" 2>&1 &
late_build=$!
node dist/lab/runtime-tools.js build
npm run --silent lint

early_tests=()
for file in dist/test/unit/*.test.js dist/test/host/*.test.js dist/test/gvisor/*.test.js; do
  [[ " ${late_tests[*]} " == *" $file "* ]] || early_tests+=("$file")
done
status=0
SANDKUBE_TAP_OUT="$taps/early.tap" bash scripts/run-tests.sh "${early_tests[@]}" || status=1

echo "waiting for the background build of $late_builds"
build_status=0
wait "$late_build" || build_status=$?
cat "$build_log"
[ "$build_status" -eq 0 ] || status=1
present=()
for file in "${late_tests[@]}"; do [ ! -e "$file" ] || present+=("$file"); done
SANDKUBE_TAP_OUT="$taps/late.tap" bash scripts/run-tests.sh "${present[@]}" || status=1

sum() {
  for tap in "$taps"/*.tap; do sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" | tail -n 1; done |
    awk '{ s += $1 } END { print s + 0 }'
}
echo "all tiers: $(sum pass) passed, $(sum fail) failed, $(sum skipped) skipped"
exit "$status"
