#!/bin/sh
# containerd 2.x with two CRI runtime handlers, `sandkube` (BinaryName = the compiled
# sandkube-runtime) and `runc` (stock runc 1.4), driven by crictl inside gVisor: runp, create,
# start, logs, exec, exec -it, stop, rm, stopp, rmp; first a hostNetwork pod, then a pod with its own
# network namespace. Every step is one observation `<handler>:<net>:<step>`.
# usage: sandkube-runtime.sh [HANDLER...]   (default: sandkube runc)
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
RUNTIME="${SANDKUBE_RUNTIME:-$REPO/dist/bin/sandkube-runtime}"
[ $# -eq 0 ] && set -- sandkube runc
# Plugins the lab does not build (yet): ptp, built by hand with
#   GOBIN=$LAB/cni-extra go install github.com/containernetworking/plugins/plugins/main/ptp@v1.9.1
CNI_EXTRA_DIR="$LAB/cni-extra"
need_bin containerd ctr containerd-shim-runc-v2 crictl runc || exit 0
if [ ! -x "$RUNTIME" ] || [ ! -x "$(dirname "$RUNTIME")/sandkube-init" ]; then
  note missing "$RUNTIME"; echo "SKIP: $RUNTIME (with sandkube-init next to it) is not built; npm run build:native && npm run build:runtime" >&2; exit 0
fi
runsc_identity
note containerd.version "$("$BIN/containerd" --version)"
note runc.version "$("$BIN/runc" --version | head -1)"
note crictl.version "$("$BIN/crictl" --version)"
mount_cgroups_v1

# containerd 2.4 refuses to load its CRI plugin with unprivileged ports/icmp on below 4.11
# (blocker B3: runsc old says 4.4.0); runsc new's 4.19 passes, so there containerd keeps its defaults.
UNPRIVILEGED=true
case "$(uname -r)" in 4.4.*|4.[0-9].*|4.10.*|3.*) UNPRIVILEGED=false ;; esac
note cri.enable_unprivileged "$UNPRIVILEGED"

mkdir -p /etc/containerd /etc/cni/net.d
cat > /etc/containerd/config.toml <<TOML
version = 3
[plugins.'io.containerd.cri.v1.runtime']
  enable_unprivileged_ports = $UNPRIVILEGED
  enable_unprivileged_icmp = $UNPRIVILEGED
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = '$BIN/runc'
    SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.sandkube]
    runtime_type = 'io.containerd.runc.v2'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.sandkube.options]
    BinaryName = '$RUNTIME'
    SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$CNI_DIR', '$CNI_EXTRA_DIR']
    conf_dir = '/etc/cni/net.d'
TOML
cp /etc/containerd/config.toml "$OUT/containerd-config.toml"
printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 30\n' > /etc/crictl.yaml
CRICTL="$BIN/crictl"

step "start containerd"
PATH="$BIN:$PATH" "$BIN/containerd" --config /etc/containerd/config.toml --log-level debug >"$OUT/containerd.log" 2>&1 &
CONTAINERD_PID=$!
for _ in $(seq 1 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
sleep 1
note plugin:cri "$("$BIN/ctr" plugins ls 2>&1 | awk '$1=="io.containerd.grpc.v1" && $2=="cri" {print $NF}')"

step "import images"
make_oci_tarball docker.io/library/busybox:sk '["/bin/sh"]' "$SCRATCH/busybox.tar"
# containerd 2.4's pinned sandbox image; imported under that name so runp never tries a pull (B13).
make_oci_tarball registry.k8s.io/pause:3.10.2 '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 1; done"]' "$SCRATCH/pause.tar"
# Unpacks the single layer of an image tarball into an overlayfs snapshot by hand and commits it
# under the layer's chain id, which is all CRI checks (image.IsUnpacked stats the chain id). The
# snapshotter hands the first layer out as an `rbind` mount, and runsc old rejects MS_REC (B5), so
# the file copy is done here with tar instead of through a mount. The container's own snapshot then
# has a parent, and the overlayfs snapshotter mounts it as `overlay` (overlay.go mounts()), no bind.
preunpack_snapshot() { # image-name tarball
  t="$2"; key="sk-preunpack-$1"; CTR_S="$BIN/ctr -n k8s.io snapshots --snapshotter overlayfs"
  manifest="$(tar -xOf "$t" ./index.json | jq -r '.manifests[0].digest | sub("sha256:"; "")')"
  layer="$(tar -xOf "$t" "./blobs/sha256/$manifest" | jq -r '.layers[0].digest | sub("sha256:"; "")')"
  config="$(tar -xOf "$t" "./blobs/sha256/$manifest" | jq -r '.config.digest')"
  diff_id="$(tar -xOf "$t" "./blobs/sha256/${config#sha256:}" | jq -r '.rootfs.diff_ids[0]')"
  $CTR_S prepare "$key" || return 1
  dir="$($CTR_S mounts /unused "$key" | grep -o '/[^ ]*/io.containerd.snapshotter.v1.overlayfs/snapshots/[0-9]*/fs' | head -1)"
  [ -d "$dir" ] || { echo "no snapshot directory for $key" >&2; return 1; }
  tar -xOf "$t" "./blobs/sha256/$layer" | gunzip | tar -x --numeric-owner -C "$dir" || return 1
  $CTR_S commit "$diff_id" "$key" || return 1
  # What the unpacker sets, so garbage collection keeps the snapshot while the image exists.
  "$BIN/ctr" -n k8s.io content label "$config" "containerd.io/gc.ref.snapshot.overlayfs=$diff_id" >/dev/null
}

for img in busybox pause; do
  if "$BIN/ctr" -n k8s.io images import "$SCRATCH/$img.tar" >"$SCRATCH/err" 2>&1; then note "import:$img" ok
  else
    note "import:$img" "$(tail -1 "$SCRATCH/err")"
    # Without unpacking the import itself needs no mount; CRI then unpacks when a pod needs the
    # image (seen: the same rbind EINVAL at runp), unless the snapshot already exists.
    if "$BIN/ctr" -n k8s.io images import --no-unpack "$SCRATCH/$img.tar" >"$SCRATCH/err" 2>&1; then note "import-no-unpack:$img" ok
    else note "import-no-unpack:$img" "$(tail -1 "$SCRATCH/err")"; fi
    if [ "${PREUNPACK:-1}" = 1 ]; then
      if preunpack_snapshot "$img" "$SCRATCH/$img.tar" >"$SCRATCH/err" 2>&1; then note "preunpack:$img" ok
      else note "preunpack:$img" "$(tr '\n' ' ' <"$SCRATCH/err")"; fi
    fi
  fi
done
note images "$("$BIN/ctr" -n k8s.io images ls -q | tr '\n' ' ')"

# A CNI network for the pods with their own netns. The bridge plugin calls LinkSetHairpin even with
# hairpinMode false (B9), so this records whether that still fails; loopback alone gives CRI no eth0.
write_cni() {
  rm -f /etc/cni/net.d/*
  case "$1" in
    bridge-no-hairpin) cat > /etc/cni/net.d/10-sk.conflist <<'JSON' ;;
{"cniVersion":"1.0.0","name":"sk-bridge","plugins":[
 {"type":"bridge","bridge":"skbr0","isGateway":true,"ipMasq":false,"hairpinMode":false,"promiscMode":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]]}}]}
JSON
    ptp) cat > /etc/cni/net.d/10-sk.conflist <<'JSON' ;;
{"cniVersion":"1.0.0","name":"sk-ptp","plugins":[
 {"type":"ptp","ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.89.0.0/24"}]]}}]}
JSON
    loopback-only) cat > /etc/cni/net.d/10-sk.conflist <<'JSON' ;;
{"cniVersion":"1.0.0","name":"sk-lo","plugins":[{"type":"loopback"}]}
JSON
  esac
  cp /etc/cni/net.d/10-sk.conflist "$OUT/cni-$1.conflist"
  # CRI reloads the CNI configuration on a file watch; give it a moment.
  sleep 2
}

# crictl's output and status, one line, for an observation.
cri() { timeout 90 "$CRICTL" "$@" >"$SCRATCH/cri.out" 2>"$SCRATCH/cri.err"; }
cri_said() { tr '\n' ' ' <"$SCRATCH/cri.out"; tr '\n' ' ' <"$SCRATCH/cri.err"; }

# usage: pod_flow HANDLER host|pod[-CNI]
pod_flow() {
  h="$1"; net="$2"; k="$h:$net"
  step "$k"
  # A hostNetwork pod shares the node's uts namespace too, so kubelet sends it no hostname.
  extra='"hostname":"sk-pod",'; ns=''
  [ "$net" = host ] && { extra=''; ns='"namespace_options":{"network":2},'; }
  printf '{"metadata":{"name":"%s","namespace":"default","uid":"%s","attempt":0},%s"log_directory":"/var/log/sk-pods/%s","linux":{"security_context":{%s"privileged":false}}}' \
    "sk-$h-$net" "uid-$h-$net" "$extra" "$h-$net" "$ns" > "$SCRATCH/pod.json"
  # pid CONTAINER (1), as kubelet sends it: the command is pid 1 of its own pid namespace.
  printf '{"metadata":{"name":"app"},"image":{"image":"docker.io/library/busybox:sk"},"command":["/bin/sh","-c","echo hello-from-%s; echo uid=$(id -u); echo pid=$$; ip -o addr | while read -r n dev fam addr rest; do echo addr=$dev/$addr; done; echo started; exec sleep 600"],"log_path":"app.log","linux":{"security_context":{"namespace_options":{"pid":1}}}}' \
    "$h" > "$SCRATCH/ctr.json"
  if ! cri runp --runtime "$h" "$SCRATCH/pod.json"; then note "$k:runp" "failed: $(cri_said)"; return; fi
  POD="$(cat "$SCRATCH/cri.out")"; note "$k:runp" ok
  cri inspectp "$POD" && note "$k:pod-ip" "$(jq -r '.status.network.ip' "$SCRATCH/cri.out")"
  if ! cri create "$POD" "$SCRATCH/ctr.json" "$SCRATCH/pod.json"; then note "$k:create" "failed: $(cri_said)"; cleanup_pod; return; fi
  CID="$(cat "$SCRATCH/cri.out")"; note "$k:create" ok
  if ! cri start "$CID"; then note "$k:start" "failed: $(cri_said)"; cleanup_pod; return; fi
  note "$k:start" ok
  for _ in $(seq 1 100); do "$CRICTL" logs "$CID" 2>/dev/null | grep -q '^started$' && break; sleep 0.2; done
  cri inspect "$CID"; note "$k:state" "$(jq -r '.status.state' "$SCRATCH/cri.out" 2>/dev/null)"
  cri logs "$CID"; note "$k:logs" "$(cri_said)"
  cri exec "$CID" sh -c 'echo exec-out; echo exec-uid=$(id -u); exit 3'; rc=$?
  note "$k:exec" "status=$rc $(cri_said)"
  # What the exec'd process may do: its bounding set, and whether /proc/sys (a readonlyPath) is writable.
  cri exec "$CID" sh -c 'grep ^CapBnd /proc/self/status; echo x 2>/dev/null >/proc/sys/kernel/hostname && echo procsys=writable || echo procsys=read-only'
  note "$k:exec-security" "$(cri_said)"
  # crictl exec -it refuses a stdin that is not a terminal ("input is not a terminal"), so
  # util-linux script(1) gives it a pty; the container's process gets a pty of its own from the shim.
  timeout 60 "$CRICTL" exec -it "$CID" sh -c 'tty; echo it-out' </dev/null >"$SCRATCH/cri.out" 2>"$SCRATCH/cri.err"; rc=$?
  note "$k:exec-it-no-tty" "status=$rc $(cri_said)"
  if command -v script >/dev/null; then
    timeout 60 script -qec "$CRICTL exec -it $CID sh -c 'tty; echo it-out; exit 4'" /dev/null </dev/null >"$SCRATCH/cri.out" 2>"$SCRATCH/cri.err"; rc=$?
    note "$k:exec-it" "status=$rc $(tr -d '\r' <"$SCRATCH/cri.out" | tr '\n' ' ')$(tr '\n' ' ' <"$SCRATCH/cri.err")"
  else note "$k:exec-it" "skipped: no script(1) to give crictl a terminal"; fi
  # A process exec'd in the background must not outlive the container (rm).
  cri exec "$CID" sh -c 'sleep 321 </dev/null >/dev/null 2>&1 &'
  if cri stop -t 2 "$CID"; then
    cri inspect "$CID"; note "$k:stop" "$(jq -c '{state: .status.state, exitCode: .status.exitCode}' "$SCRATCH/cri.out" 2>/dev/null)"
  else note "$k:stop" "failed: $(cri_said)"; fi
  if cri rm "$CID"; then note "$k:rm" ok; else note "$k:rm" "failed: $(cri_said)"; fi
  note "$k:leftover" "$(ps -eo args | grep -c '^sleep 321$')"
  cleanup_pod
}
cleanup_pod() {
  if cri stopp "$POD"; then note "$k:stopp" ok; else note "$k:stopp" "failed: $(cri_said)"; fi
  if cri rmp "$POD"; then note "$k:rmp" ok; else note "$k:rmp" "failed: $(cri_said)"; fi
}

for handler in "$@"; do
  pod_flow "$handler" host
  CNIS="bridge-no-hairpin loopback-only"
  if [ -x "$CNI_EXTRA_DIR/ptp" ]; then CNIS="$CNIS ptp"; else note "$handler:pod-ptp:runp" "skipped: $CNI_EXTRA_DIR/ptp not built"; fi
  for cni in $CNIS; do
    write_cni "$cni"
    pod_flow "$handler" "pod-$cni"
  done
done

# The distinct errors, first of each kind, so a failure above can be traced to its component.
grep -E 'level=(error|fatal)' "$OUT/containerd.log" | sed -E 's/^time="[^"]*" //' | awk '!seen[substr($0,1,100)]++' | head -20 \
  | while read -r line; do note containerd.error "$line"; done
"$CRICTL" rmp -fa >/dev/null 2>&1
kill "$CONTAINERD_PID"; wait "$CONTAINERD_PID" 2>/dev/null
exit 0
