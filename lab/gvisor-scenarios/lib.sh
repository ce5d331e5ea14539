# Shared helpers for the gVisor scenarios. Sourced, never run. Each scenario runs inside a runsc
# sandbox started by `npm run lab:gvisor`, so / is an in-memory overlay and $SANDKUBE_GVISOR_OUT is
# the only place whose contents survive on the host.
set -u
OUT="${SANDKUBE_GVISOR_OUT:?run scenarios through npm run lab:gvisor}"
LAB="${SANDKUBE_LAB_DIR:-/var/cache/sandkube-lab}"
BIN="$LAB/bin"
CNI_DIR="$LAB/cni"
BUSYBOX="${BUSYBOX:-/usr/bin/busybox}"
SCRATCH="${SCRATCH:-/run/sandkube-scenario}"
mkdir -p "$OUT" "$SCRATCH"
: > "$OUT/observations.tsv"

# One line per observation, machine-readable, so tests and docs quote the same record.
note() { printf '%s\t%s\n' "$1" "$2" | tee -a "$OUT/observations.tsv"; }

step() { printf '\n=== %s\n' "$*" >&2; }

runsc_identity() {
  note kernel.release "$(uname -r)"
  if [ -e /proc/sys/kernel/cap_last_cap ]; then note cap_last_cap "$(cat /proc/sys/kernel/cap_last_cap)"; else note cap_last_cap absent; fi
}

# A root filesystem holding only a static busybox and its applet links.
make_busybox_rootfs() {
  local root="$1"
  mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/etc" "$root/root"
  cp "$BUSYBOX" "$root/bin/busybox"
  for applet in sh sleep echo cat ls id hostname ps mount uname true false ip ping wget nc; do
    ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'root:x:0:' > "$root/etc/group"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# An OCI image layout tarball built from local files only (no registry is reachable). `ctr images
# import` names the image after the io.containerd.image.name annotation in index.json.
# usage: make_oci_tarball NAME ENTRYPOINT_JSON OUTPUT.tar
make_oci_tarball() {
  local name="$1" entrypoint="$2" output="$3"
  local work; work="$(mktemp -d "$SCRATCH/image.XXXXXX")"
  make_busybox_rootfs "$work/rootfs"
  mkdir -p "$work/layout/blobs/sha256"
  tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/layer.tar" .
  local diff_id; diff_id="$(sha256_of "$work/layer.tar")"
  gzip -n -c "$work/layer.tar" > "$work/layer.tar.gz"
  local layer_digest layer_size; layer_digest="$(sha256_of "$work/layer.tar.gz")"; layer_size="$(stat -c %s "$work/layer.tar.gz")"
  mv "$work/layer.tar.gz" "$work/layout/blobs/sha256/$layer_digest"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":%s,"Env":["PATH=/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$entrypoint" "$diff_id" > "$work/config.json"
  local config_digest config_size; config_digest="$(sha256_of "$work/config.json")"; config_size="$(stat -c %s "$work/config.json")"
  mv "$work/config.json" "$work/layout/blobs/sha256/$config_digest"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$work/manifest.json"
  local manifest_digest manifest_size; manifest_digest="$(sha256_of "$work/manifest.json")"; manifest_size="$(stat -c %s "$work/manifest.json")"
  mv "$work/manifest.json" "$work/layout/blobs/sha256/$manifest_digest"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"},"platform":{"architecture":"amd64","os":"linux"}}]}' \
    "$manifest_digest" "$manifest_size" "$name" "${name##*:}" > "$work/layout/index.json"
  tar -C "$work/layout" -cf "$output" .
  rm -rf "$work"
}

need_bin() {
  for b in "$@"; do
    if [ ! -x "$BIN/$b" ]; then note "missing" "$BIN/$b"; echo "SKIP: $BIN/$b is not built yet" >&2; return 1; fi
  done
}

# cgroup v1 controllers, mounted as `sandkube apply` would: gVisor mounts none by default.
mount_cgroups_v1() {
  mount -t tmpfs cgroup /sys/fs/cgroup 2>/dev/null
  for c in cpu cpuacct cpuset memory devices freezer blkio pids job; do
    mkdir -p "/sys/fs/cgroup/$c"
    mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" 2>>"$OUT/cgroup-mount.err" || rmdir "/sys/fs/cgroup/$c"
  done
  note cgroup.controllers "$(ls /sys/fs/cgroup | tr '\n' ' ')"
}

# The research series' containerd configuration, written to /etc/containerd/config.toml. With
# `with-native-unpack`, also the one line the research lacked: the transfer service (which `ctr
# images import` uses since containerd 2.0) unpacks only for the snapshotters in unpack_config,
# whose default lists overlayfs alone (plugins/transfer/plugin_defaults_linux.go), so a native
# import fails with "no unpack platforms defined".
write_research_containerd_config() {
  mkdir -p /etc/containerd /etc/cni/net.d
  cat > /etc/containerd/config.toml <<TOML
version = 3
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'native'
[plugins.'io.containerd.cri.v1.runtime']
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    NoNewKeyring = true
    SystemdCgroup = false
    BinaryName = '$BIN/runc'
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$CNI_DIR']
    conf_dir = '/etc/cni/net.d'
TOML
  [ "${1:-}" = with-native-unpack ] && cat >> /etc/containerd/config.toml <<TOML
[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = 'linux/amd64'
  snapshotter = 'native'
TOML
  return 0
}
