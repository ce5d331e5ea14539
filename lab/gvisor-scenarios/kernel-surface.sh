#!/bin/sh
# What the sandbox offers the stock stack, before any component runs: the /proc/sys entries kubelet,
# containerd and runc read, /dev/kmsg, cgroups, keyrings, overlayfs, namespaces, netlink devices.
. "$(dirname "$0")/lib.sh"
runsc_identity

for f in kernel/cap_last_cap kernel/panic kernel/panic_on_oops vm/panic_on_oom vm/overcommit_memory \
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes kernel/keys/maxkeys kernel/pid_max \
  net/ipv4/ip_unprivileged_port_start net/ipv4/ping_group_range net/ipv4/ip_forward \
  net/ipv4/conf/all/route_localnet net/bridge/bridge-nf-call-iptables fs/inotify/max_user_watches \
  net/netfilter/nf_conntrack_max; do
  if [ -e "/proc/sys/$f" ]; then note "procsys:$f" "present=$(cat "/proc/sys/$f" 2>&1 | tr '\t\n' '  ')"; else note "procsys:$f" absent; fi
done
if echo 1 > /proc/sys/vm/overcommit_memory 2>"$SCRATCH/err"; then note write:vm/overcommit_memory ok; else note write:vm/overcommit_memory "$(cat "$SCRATCH/err")"; fi

if [ -e /dev/kmsg ]; then note dev:kmsg present; else note dev:kmsg absent; fi

note cgroup:mounted-at-start "$(grep -c cgroup /proc/mounts)"
mkdir -p "$SCRATCH/cg"
if mount -t cgroup -o memory cgroup "$SCRATCH/cg" 2>"$SCRATCH/err"; then
  note cgroup:v1-memory-mount ok
  note cgroup:v1-memory-files "$(ls "$SCRATCH/cg" | tr '\n' ' ')"
  umount "$SCRATCH/cg"
else note cgroup:v1-memory-mount "$(cat "$SCRATCH/err")"; fi
if mount -t cgroup2 none "$SCRATCH/cg" 2>"$SCRATCH/err"; then note cgroup:v2-mount ok; umount "$SCRATCH/cg"; else note cgroup:v2-mount "$(cat "$SCRATCH/err")"; fi
if unshare -C true 2>"$SCRATCH/err"; then note ns:cgroup ok; else note ns:cgroup "$(cat "$SCRATCH/err")"; fi
for ns in -p -n -u -i -m -U -T; do
  if unshare $ns -f true 2>"$SCRATCH/err"; then note "ns:unshare$ns" ok; else note "ns:unshare$ns" "$(cat "$SCRATCH/err")"; fi
done

if keyctl new_session >/dev/null 2>"$SCRATCH/err"; then note keyring:join-session ok; else note keyring:join-session "$(cat "$SCRATCH/err")"; fi
if keyctl add user sk-test data @s >/dev/null 2>"$SCRATCH/err"; then note keyring:add-key ok; else note keyring:add-key "$(cat "$SCRATCH/err")"; fi

mkdir -p "$SCRATCH/ov/lower" "$SCRATCH/ov/upper" "$SCRATCH/ov/work" "$SCRATCH/ov/merged"
if mount -t overlay overlay -o "lowerdir=$SCRATCH/ov/lower,upperdir=$SCRATCH/ov/upper,workdir=$SCRATCH/ov/work" "$SCRATCH/ov/merged" 2>"$SCRATCH/err"; then
  note overlay:upper-on-rootfs ok; umount "$SCRATCH/ov/merged"; else note overlay:upper-on-rootfs "$(cat "$SCRATCH/err")"; fi
mkdir -p "$SCRATCH/ovt" && mount -t tmpfs tmpfs "$SCRATCH/ovt" && mkdir -p "$SCRATCH/ovt/upper" "$SCRATCH/ovt/work"
if mount -t overlay overlay -o "lowerdir=$SCRATCH/ov/lower,upperdir=$SCRATCH/ovt/upper,workdir=$SCRATCH/ovt/work" "$SCRATCH/ov/merged" 2>"$SCRATCH/err"; then
  note overlay:upper-on-tmpfs ok; umount "$SCRATCH/ov/merged"; else note overlay:upper-on-tmpfs "$(cat "$SCRATCH/err")"; fi
note fs:root "$(awk '$2=="/" {print $1" "$3}' /proc/mounts | tail -1)"

if ip link add skv0 type veth peer name skv1 2>"$SCRATCH/err"; then note net:veth ok; else note net:veth "$(cat "$SCRATCH/err")"; fi
if ip link add skbr0 type bridge 2>"$SCRATCH/err"; then note net:bridge ok; else note net:bridge "$(cat "$SCRATCH/err")"; fi
if ip link set skbr0 promisc on 2>"$SCRATCH/err"; then note net:bridge-promisc ok; else note net:bridge-promisc "$(cat "$SCRATCH/err")"; fi
if iptables -t nat -L -n >/dev/null 2>"$SCRATCH/err"; then note iptables:nft ok; else note iptables:nft "$(cat "$SCRATCH/err")"; fi
if iptables-legacy -t nat -L -n >/dev/null 2>"$SCRATCH/err"; then note iptables:legacy ok; else note iptables:legacy "$(cat "$SCRATCH/err")"; fi
if iptables-legacy -t nat -A POSTROUTING -s 10.88.0.0/16 -j MASQUERADE 2>"$SCRATCH/err"; then note iptables:legacy-masquerade ok; else note iptables:legacy-masquerade "$(cat "$SCRATCH/err")"; fi
exit 0
