#!/bin/sh
# Stock containerd 2.x + stock runc inside gVisor.
# usage: containerd.sh default|research|research-as-published
#   default:  containerd's built-in defaults (no config file), images in the k8s.io namespace.
#   research: the configuration the research converged on (native snapshotter, unprivileged
#             ports/icmp off, NoNewKeyring, CNI from the lab), plus the transfer service's
#             unpack_config for native, which the research did not have.
#   research-as-published: the same without that unpack_config.
. "$(dirname "$0")/lib.sh"
MODE="${1:?usage: containerd.sh default|research|research-as-published}"
need_bin containerd ctr containerd-shim-runc-v2 || exit 0
runsc_identity
note mode "$MODE"
note containerd.version "$("$BIN/containerd" --version)"
[ -x "$BIN/runc" ] && note runc.version "$("$BIN/runc" --version | head -1)"

mount_cgroups_v1

CONFIG_ARGS=""
if [ "$MODE" != default ]; then
  if [ "$MODE" = research ]; then write_research_containerd_config with-native-unpack; else write_research_containerd_config; fi
  cp /etc/containerd/config.toml "$OUT/containerd-config.toml"
  CONFIG_ARGS="--config /etc/containerd/config.toml"
fi

step "start containerd ($MODE)"
# shellcheck disable=SC2086
"$BIN/containerd" $CONFIG_ARGS --log-level debug >"$OUT/containerd.log" 2>&1 &
CONTAINERD_PID=$!
for _ in $(seq 1 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
sleep 1
"$BIN/ctr" plugins ls > "$OUT/plugins.txt" 2>&1
cat "$OUT/plugins.txt" >&2
for p in io.containerd.cri.v1.runtime io.containerd.cri.v1.images io.containerd.grpc.v1.cri io.containerd.snapshotter.v1.overlayfs io.containerd.snapshotter.v1.native; do
  type="${p%.*}"; id="${p##*.}"
  note "plugin:$p" "$(awk -v t="$type" -v i="$id" '$1==t && $2==i {print $NF}' "$OUT/plugins.txt")"
done
grep -E 'level=(error|warning)' "$OUT/containerd.log" | grep -iE 'cri|unprivileged|overlay|snapshotter' | head -5 | while read -r line; do note containerd.log "$line"; done

step "import images"
make_oci_tarball docker.io/library/busybox:sk '["/bin/sh"]' "$SCRATCH/busybox.tar"
make_oci_tarball registry.k8s.io/pause:3.10.2 '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 1; done"]' "$SCRATCH/pause.tar"
SNAPSHOTTER=overlayfs; [ "$MODE" != default ] && SNAPSHOTTER=native
for img in busybox pause; do
  if "$BIN/ctr" -n k8s.io images import --snapshotter "$SNAPSHOTTER" "$SCRATCH/$img.tar" >"$SCRATCH/err" 2>&1; then note "import:$img" ok
  else note "import:$img" "$(tail -1 "$SCRATCH/err")"; fi
done
"$BIN/ctr" -n k8s.io images ls -q >&2

step "ctr run with $SNAPSHOTTER"
if [ -x "$BIN/runc" ]; then
  if timeout 60 "$BIN/ctr" -n k8s.io run --rm --snapshotter "$SNAPSHOTTER" --runc-binary "$BIN/runc" \
      docker.io/library/busybox:sk sk-ctr-run /bin/sh -c 'echo hello-from-runc; id -u' >"$SCRATCH/err" 2>&1; then
    note "ctr-run:$SNAPSHOTTER" "ok: $(tr '\n' ' ' <"$SCRATCH/err")"
  else note "ctr-run:$SNAPSHOTTER" "$(tr '\n' ' ' <"$SCRATCH/err")"; fi
else note "ctr-run:$SNAPSHOTTER" "skipped: runc not built"; fi

kill "$CONTAINERD_PID"; wait "$CONTAINERD_PID" 2>/dev/null
exit 0
