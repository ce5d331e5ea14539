#!/bin/sh
# Stock runc 1.4 run directly on a busybox bundle inside gVisor, one adaptation at a time, so each
# failure is seen on its own: first runc's own default spec, then without the keyring, then without
# the cgroup namespace, then without cgroups.
. "$(dirname "$0")/lib.sh"
need_bin runc || exit 0
runsc_identity
note runc.version "$("$BIN/runc" --version | tr '\n' ' ')"
if CAPBSET="$(sh "$(dirname "$0")/capbset.sh" 2>&1)"; then note capbset.last "$CAPBSET"; else note capbset.last "unavailable: $CAPBSET"; fi

B="$SCRATCH/runc-bundle"
mkdir -p "$B"
make_busybox_rootfs "$B/rootfs"
(cd "$B" && "$BIN/runc" spec)
cp "$B/config.json" "$OUT/runc-default-config.json"
note spec.namespaces "$(jq -c '[.linux.namespaces[].type]' "$B/config.json")"
jq '.process.terminal=false | .process.args=["/bin/sh","-c","echo hello-from-runc; cat /proc/self/cgroup | head -3"]' "$B/config.json" > "$B/stock.json"

attempt() { # name runc-run-flags jq-filter
  name="$1"; flags="$2"; filter="$3"
  jq "$filter" "$B/stock.json" > "$B/config.json"
  # shellcheck disable=SC2086
  if timeout 60 "$BIN/runc" --root "$SCRATCH/runc-state" run $flags --bundle "$B" "sk-$name" >"$SCRATCH/out" 2>&1; then
    note "runc:$name" "ok: $(tr '\n' ' ' <"$SCRATCH/out")"
  else
    note "runc:$name" "exit $?: $(tr '\n' ' ' <"$SCRATCH/out")"
  fi
  "$BIN/runc" --root "$SCRATCH/runc-state" delete --force "sk-$name" >/dev/null 2>&1
}

attempt stock-spec-no-cgroupfs "" '.'
mount_cgroups_v1
attempt stock-spec "" '.'
attempt no-new-keyring "--no-new-keyring" '.'
attempt no-keyring-no-cgroupns "--no-new-keyring" 'del(.linux.namespaces[] | select(.type=="cgroup"))'
attempt no-keyring-no-cgroupns-no-cgroups "--no-new-keyring" 'del(.linux.namespaces[] | select(.type=="cgroup")) | del(.linux.resources) | .linux.cgroupsPath="/sk-runc"'
attempt no-cgroupns-keyring "" 'del(.linux.namespaces[] | select(.type=="cgroup"))'
exit 0
