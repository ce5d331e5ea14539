#!/bin/sh
# Runs every scenario in both runsc versions, from the host. Raw logs and observations land in
# $SANDKUBE_LAB_DIR/scenarios/<runsc>/<scenario>/ (outside the repository).
# usage: lab/gvisor-scenarios/run-all.sh [new|old ...]   (after `npm run build`)
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LAB="${SANDKUBE_LAB_DIR:-/var/cache/sandkube-lab}"
[ $# -eq 0 ] && set -- new old
for runsc in "$@"; do
  for scenario in kernel-surface runc "containerd default" "containerd research" "containerd research-as-published" \
    "kubelet default" "kubelet research" "kubelet research-kmsg" "kubelet provisioned"; do
    script="${scenario%% *}"; mode=""; [ "$script" != "$scenario" ] && mode="${scenario#* }"
    out="$LAB/scenarios/$runsc/$script${mode:+-$mode}"
    rm -rf "$out"
    echo "== $runsc $scenario -> $out"
    # shellcheck disable=SC2086
    node "$REPO/dist/lab/gvisor.js" --runsc "$runsc" --timeout 600 --out "$out" \
      sh "$HERE/$script.sh" $mode >"$out.console.log" 2>&1
    echo "   exit $?"
  done
done
