#!/bin/sh
# sandkube-cni inside gVisor, invoked as containerd invokes it (CNI_* environment, configuration on
# stdin): two pods ADDed, HTTP pod to pod and node to pod, a 1 MiB transfer through the node's
# forwarding, DEL (also after the pod's netns is gone), then 100 ADD+DEL cycles; each step is one
# observation. On a kernel without veth or netns files (runsc 2023) it records ADD's error.
# usage: cni.sh   (after npm run build:cni)
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PLUGIN="${SANDKUBE_CNI:-$REPO/dist/bin/sandkube-cni}"
if [ ! -x "$PLUGIN" ]; then
  note missing "$PLUGIN"; echo "SKIP: $PLUGIN is not built; npm run build:cni" >&2; exit 0
fi
runsc_identity
IPAM="$SCRATCH/ipam"
WWW="$SCRATCH/www"
CYCLES="${CNI_CYCLES:-100}"
CONF="{\"cniVersion\":\"1.0.0\",\"name\":\"sandkube\",\"type\":\"sandkube-cni\",\"subnet\":\"10.244.0.0/24\",\"gateway\":\"10.244.0.1\",\"mtu\":1400,\"ipamDir\":\"$IPAM\"}"

# cni COMMAND CONTAINER_ID NETNS: prints the plugin's stdout and then its exit status on one line.
cni() {
  out="$(printf '%s' "$CONF" | CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="$3" CNI_IFNAME=eth0 \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=$2" CNI_PATH="$(dirname "$PLUGIN")" "$PLUGIN")"
  printf '%s rc=%s' "$out" "$?"
}
link_names() { ip -o link show | sed 's/^[0-9]*: \([^:@]*\).*/\1/' | sort | tr '\n' ' '; }
addr_files() { ls "$IPAM" 2>/dev/null | grep -c '^[0-9]'; }
# busybox wget -T dies with SIGSEGV in gVisor (docs/gvisor-networking.md); timeout(1) bounds it.
# fetch [NETNS] ADDRESS: the page an httpd in a pod serves, from the node or from another pod.
fetch() {
  if [ $# -eq 2 ]; then set -- ip netns exec "$1" timeout 10 "$BUSYBOX" wget -q -O - "http://$2:8080/"
  else set -- timeout 10 "$BUSYBOX" wget -q -O - "http://$1:8080/"; fi
  "$@" 2>&1; echo " rc=$?"
}

# The node turns forwarding on, never the plugin (sandkube up's ip_forward step).
echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null; note ip_forward "$(cat /proc/sys/net/ipv4/ip_forward)"
ip link set lo up
note links.before "$(link_names)"

if ! ip netns add cni-a 2>"$OUT/netns.err"; then
  # runsc 2023 refuses named namespaces (src/probe/network.ts); a pod's namespace is then a process's.
  note netns.named "failed: $(cat "$OUT/netns.err")"
  unshare --net sleep 600 & holder=$!
  sleep 1
  note add:unshared "$(cni ADD pod-a "/proc/$holder/ns/net")"
  note del:unshared "$(cni DEL pod-a "/proc/$holder/ns/net")"
  # containerd pins a pod's namespace by bind-mounting it onto a file (/var/run/netns/cni-...).
  : > "$SCRATCH/netns-b"
  if mount --bind "/proc/$holder/ns/net" "$SCRATCH/netns-b" 2>"$OUT/bind.err"; then
    note add:bound "$(cni ADD pod-b "$SCRATCH/netns-b")"
    note del:bound "$(cni DEL pod-b "$SCRATCH/netns-b")"
    umount "$SCRATCH/netns-b"
  else
    note add:bound "bind mount failed: $(cat "$OUT/bind.err")"
  fi
  note addr_files.after "$(addr_files)"
  kill "$holder"
  exit 0
fi
note netns.named ok
ip netns add cni-b

note add:a "$(cni ADD pod-a /var/run/netns/cni-a)"
note add:b "$(cni ADD pod-b /var/run/netns/cni-b)"
note route:node "$(ip route show | grep '10\.244\.' | tr '\n' ';')"
note route:a "$(ip -n cni-a route show | tr '\n' ';')"
note mtu:a:eth0 "$(ip -n cni-a -o link show eth0 | sed 's/.* mtu \([0-9]*\).*/\1/')"
host_a="$(ip -o link show | grep -o 'sk[0-9a-f]\{11\}' | head -1)"
note mtu:a:host "$(ip -o link show "$host_a" | sed 's/.* mtu \([0-9]*\).*/\1/')"

for pod in a b; do
  mkdir -p "$WWW/$pod"; echo "hello-from-$pod" > "$WWW/$pod/index.html"
  head -c 1048576 /dev/zero | tr '\0' x > "$WWW/$pod/big"
  ip netns exec "cni-$pod" "$BUSYBOX" httpd -f -p 8080 -h "$WWW/$pod" & eval "httpd_$pod=\$!"
done
sleep 1
note http:a-to-b "$(fetch cni-a 10.244.0.3)"
note http:b-to-a "$(fetch cni-b 10.244.0.2)"
note http:node-to-a "$(fetch 10.244.0.2)"
note http:node-to-b "$(fetch 10.244.0.3)"
# 1 MiB in full-size TCP segments (DF set) forwarded by the node from one veth to another.
note http:a-to-b:big-bytes "$(ip netns exec cni-a timeout 30 "$BUSYBOX" wget -q -O - http://10.244.0.3:8080/big 2>/dev/null | wc -c)"
kill "$httpd_a" "$httpd_b" 2>/dev/null

note del:a "$(cni DEL pod-a /var/run/netns/cni-a)"
note del:a:again "$(cni DEL pod-a /var/run/netns/cni-a)"
# The pod's namespace first, as when a sandbox is torn down before its DEL.
ip netns delete cni-b
note del:b:netns-gone "$(cni DEL pod-b '')"
ip netns delete cni-a
note links.after-two "$(link_names)"
note addr_files.after-two "$(addr_files)"

failures=0
for i in $(seq 1 "$CYCLES"); do
  ip netns add "cni-c$i" || failures=$((failures + 1))
  case "$(cni ADD "cycle-$i" "/var/run/netns/cni-c$i")" in *'"ips"'*rc=0) ;; *) failures=$((failures + 1)) ;; esac
  case "$(cni DEL "cycle-$i" "/var/run/netns/cni-c$i")" in "rc=0"|" rc=0") ;; *) failures=$((failures + 1)) ;; esac
  ip netns delete "cni-c$i" || failures=$((failures + 1))
done
note cycles "$CYCLES"
note cycles.failures "$failures"
note links.after "$(link_names)"
note addr_files.after "$(addr_files)"
note netns.after "$(ip netns list | tr '\n' ' ')"
note routes.after "$(ip route show | grep -c '10\.244\.')"
