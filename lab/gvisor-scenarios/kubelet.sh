#!/bin/sh
# Stock kubelet in standalone mode (no API server) running one static pod through stock containerd
# and runc inside gVisor.
# usage: kubelet.sh default|research|research-kmsg|provisioned
#   default:       containerd's defaults; kubelet with only what standalone mode needs.
#   research:      the research's containerd config and kubelet settings (config alone).
#   research-kmsg: research, plus /dev/kmsg as a bind of /dev/null.
#   provisioned:   research-kmsg, plus the missing /proc/sys entries (a tmpfs copy of /proc/sys
#                  laid over it) and a bridge CNI network.
# Two static pods: "hello" on the pod network and "hello-hostnet" with hostNetwork, which needs no CNI.
. "$(dirname "$0")/lib.sh"
MODE="${1:?usage: kubelet.sh default|research|research-kmsg|provisioned}"
RUN_SECONDS="${RUN_SECONDS:-60}"
need_bin containerd ctr containerd-shim-runc-v2 runc kubelet crictl || exit 0
runsc_identity
note mode "$MODE"
note kubelet.version "$("$BIN/kubelet" --version)"
mount_cgroups_v1
printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 10\n' > /etc/crictl.yaml
CRICTL="$BIN/crictl"

if [ "$MODE" = research-kmsg ] || [ "$MODE" = provisioned ]; then
  touch /dev/kmsg && mount --bind /dev/null /dev/kmsg && note provision:dev-kmsg "bind of /dev/null"
fi
if [ "$MODE" = provisioned ]; then
  step "provision /proc/sys"
  # gVisor's procfs cannot grow new files, so a tmpfs copy of /proc/sys with the missing entries
  # added is mounted over it. Entries kubelet reads (pkg/kubelet/cm/container_manager_linux.go
  # setupKernelTunables) or runc writes (ip_unprivileged_port_start is off by config).
  PS="$SCRATCH/procsys"; mkdir -p "$PS"
  mount -t tmpfs procsys "$PS"
  (cd /proc/sys && find . -type d) | while read -r d; do mkdir -p "$PS/$d"; done
  (cd /proc/sys && find . -type f) | while read -r f; do cat "/proc/sys/$f" > "$PS/$f" 2>/dev/null || true; done
  for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
    kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000 "kernel/osrelease=$(uname -r)"; do
    mkdir -p "$PS/$(dirname "${kv%%=*}")"; echo "${kv#*=}" > "$PS/${kv%%=*}"
  done
  if mount --bind "$PS" /proc/sys 2>"$SCRATCH/err"; then note provision:proc-sys "tmpfs copy bound over /proc/sys"
  else note provision:proc-sys "$(cat "$SCRATCH/err")"; fi
  # kubelet makes its root dir rshared (MS_SHARED|MS_REC), which runsc before 2024 rejects with
  # EINVAL; hostutil.DoMakeRShared skips the mount when the dir is already on a shared mount, and a
  # plain bind plus a non-recursive --make-shared is accepted by both runsc versions.
  mkdir -p /var/lib/kubelet
  if mount --bind /var/lib/kubelet /var/lib/kubelet && mount --make-shared /var/lib/kubelet 2>"$SCRATCH/err"; then
    note provision:kubelet-root-shared ok; else note provision:kubelet-root-shared "$(cat "$SCRATCH/err")"; fi
fi

mkdir -p /etc/containerd /etc/cni/net.d /etc/kubernetes/manifests /var/lib/kubelet
CONFIG_ARGS=""
if [ "$MODE" != default ]; then
  write_research_containerd_config with-native-unpack
  CONFIG_ARGS="--config /etc/containerd/config.toml"
fi
if [ "$MODE" = provisioned ]; then
  cat > /etc/cni/net.d/10-sandkube-bridge.conflist <<'JSON'
{"cniVersion":"1.0.0","name":"sk-bridge","plugins":[
 {"type":"bridge","bridge":"skbr0","isGateway":true,"ipMasq":false,"promiscMode":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]],"routes":[{"dst":"0.0.0.0/0"}]}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
JSON
  cp /etc/cni/net.d/10-sandkube-bridge.conflist "$OUT/"
fi

step "start containerd"
# shellcheck disable=SC2086
PATH="$BIN:$PATH" "$BIN/containerd" $CONFIG_ARGS >"$OUT/containerd.log" 2>&1 &
for _ in $(seq 1 100); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
SNAPSHOTTER=overlayfs; [ "$MODE" != default ] && SNAPSHOTTER=native
make_oci_tarball docker.io/library/busybox:sk '["/bin/sh"]' "$SCRATCH/busybox.tar"
make_oci_tarball registry.k8s.io/pause:3.10.2 '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 1; done"]' "$SCRATCH/pause.tar"
for img in busybox pause; do
  if "$BIN/ctr" -n k8s.io images import --snapshotter "$SNAPSHOTTER" "$SCRATCH/$img.tar" >"$SCRATCH/err" 2>&1; then note "import:$img" ok
  else note "import:$img" "$(tail -1 "$SCRATCH/err")"; fi
done
$CRICTL info > "$OUT/crictl-info.json" 2>"$SCRATCH/err"
note cri.conditions "$(jq -c '[.status.conditions[] | {type, status, reason}]' "$OUT/crictl-info.json" 2>/dev/null || cat "$SCRATCH/err")"

cat > /etc/kubernetes/manifests/hello.yaml <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: default}
spec:
  containers:
  - name: hello
    image: docker.io/library/busybox:sk
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo hello-from-static-pod; while :; do sleep 1; done"]
YAML
sed -e 's/name: hello,/name: hello-hostnet,/' -e 's/^spec:/spec:\n  hostNetwork: true/' -e 's/- name: hello$/- name: hello-hostnet/' \
  /etc/kubernetes/manifests/hello.yaml > /etc/kubernetes/manifests/hello-hostnet.yaml

cat > /var/lib/kubelet/config.yaml <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
address: 127.0.0.1
readOnlyPort: 0
authentication: {webhook: {enabled: false}, anonymous: {enabled: true}}
authorization: {mode: AlwaysAllow}
YAML
if [ "$MODE" != default ]; then
  cat >> /var/lib/kubelet/config.yaml <<'YAML'
failSwapOn: false
failCgroupV1: false
localStorageCapacityIsolation: false
makeIPTablesUtilChains: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
protectKernelDefaults: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML
fi
cp /var/lib/kubelet/config.yaml "$OUT/kubelet-config.yaml"

step "run kubelet for ${RUN_SECONDS}s"
PATH="$BIN:$PATH" "$BIN/kubelet" --config /var/lib/kubelet/config.yaml --v=2 >"$OUT/kubelet.log" 2>&1 &
KUBELET_PID=$!
i=0
while [ $i -lt "$RUN_SECONDS" ]; do
  kill -0 "$KUBELET_PID" 2>/dev/null || break
  if [ "$($CRICTL ps -q --state Running 2>/dev/null | wc -l)" -ge 2 ]; then sleep 3; break; fi
  sleep 1; i=$((i + 1))
done
if kill -0 "$KUBELET_PID" 2>/dev/null; then note kubelet.process "running after ${i}s"; else wait "$KUBELET_PID"; note kubelet.process "exited with $? after ${i}s"; fi
note pods "$($CRICTL pods -o json 2>/dev/null | jq -c '[.items[] | {name: .metadata.name, state}]' 2>&1)"
note containers "$($CRICTL ps -a -o json 2>/dev/null | jq -c '[.containers[] | {name: .metadata.name, state}]' 2>&1)"
for name in hello hello-hostnet; do
  CID="$($CRICTL ps -q --name "^$name\$" 2>/dev/null | head -1)"
  [ -n "$CID" ] && note "container.logs:$name" "$($CRICTL logs "$CID" 2>&1 | head -3 | tr '\n' ' ')"
done
# The first occurrence of each distinct kubelet error, minus timestamps, is what the blocker list quotes.
grep -E '^E[0-9]{4}|^F[0-9]{4}|failed to run Kubelet|Failed to start ContainerManager' "$OUT/kubelet.log" \
  | sed -E 's/^[EF][0-9]{4} [0-9:.]+ +[0-9]+ //' | awk '!seen[substr($0,1,90)]++' | head -15 \
  | while read -r line; do note kubelet.error "$line"; done
grep -E 'level=error' "$OUT/containerd.log" | sed -E 's/^time="[^"]*" //' | awk '!seen[substr($0,1,90)]++' | head -10 \
  | while read -r line; do note containerd.error "$line"; done
CNI_ERROR="$(sed 's/\\"/"/g' "$OUT/containerd.log" | grep -o 'plugin type="[a-z-]*" failed ([a-z]*): [^"]*' | head -1)"
[ -n "$CNI_ERROR" ] && note cni.error "$CNI_ERROR"
kill "$KUBELET_PID" 2>/dev/null; sleep 1
$CRICTL rmp -fa >/dev/null 2>&1
exit 0
