import { test } from "node:test";
import assert from "node:assert/strict";
import { observed } from "../../lab/gvisor-observations.js";
import { inGvisor, requireLab, runscName, scenario } from "./lab.js";

/**
 * Each blocker in docs/gvisor-blockers.md, reproduced with the stock components the lab builds and
 * asserted as observed. When gVisor or a component changes behaviour, the failing test says which
 * line of that page is no longer true.
 */

const STACK = ["containerd", "containerd-shim-runc-v2", "ctr", "runc"];

function value(obs: ReadonlyMap<string, readonly string[]>, key: string): string {
  const v = observed(obs, key);
  assert.notEqual(v, undefined, `the scenario recorded no "${key}"`);
  return v as string;
}

for (const runsc of ["new", "old"] as const) {
  test(`kernel surface in ${runscName(runsc)}: no /dev/kmsg, no cgroup2, no add_key, no kubelet tunables`, async (t) => {
    if (!(await requireLab(t, [runscName(runsc)]))) return;
    const { observations: obs } = await scenario(runsc, "kernel-surface");
    assert.equal(value(obs, "dev:kmsg"), "absent");
    assert.match(value(obs, "cgroup:v2-mount"), /unknown filesystem type 'cgroup2'/);
    assert.equal(value(obs, "cgroup:v1-memory-mount"), "ok");
    assert.match(value(obs, "keyring:add-key"), /add_key: Permission denied/);
    for (const entry of [
      "kernel/panic",
      "kernel/panic_on_oops",
      "vm/panic_on_oom",
      "kernel/keys/root_maxkeys",
      "kernel/keys/root_maxbytes",
      "net/ipv4/ip_unprivileged_port_start",
      "net/ipv4/ping_group_range",
    ]) {
      assert.equal(value(obs, `procsys:${entry}`), "absent", entry);
    }
    assert.match(value(obs, "write:vm/overcommit_memory"), /I\/O error/);
    assert.match(value(obs, "iptables:nft"), /Failed to initialize nft: Protocol not supported/);
    assert.equal(value(obs, "iptables:legacy"), "ok");
    assert.match(value(obs, "iptables:legacy-masquerade"), /MASQUERADE/);
    assert.equal(value(obs, "fs:root"), "none 9p");
    if (runsc === "new") {
      assert.equal(value(obs, "procsys:kernel/cap_last_cap"), "present=40 ");
      assert.equal(value(obs, "net:veth"), "ok");
      assert.equal(value(obs, "net:bridge"), "ok");
      assert.match(value(obs, "net:bridge-promisc"), /RTNETLINK answers: Invalid argument/);
      assert.match(value(obs, "ns:cgroup"), /Invalid argument/);
    } else {
      assert.equal(value(obs, "procsys:kernel/cap_last_cap"), "absent");
      // RTM_NEWLINK for veth and bridge is not implemented in runsc from July 2023.
      assert.match(value(obs, "net:veth"), /Command "add" is unknown/);
      assert.match(
        value(obs, "ns:unshare-m"),
        /cannot change root filesystem propagation: Invalid argument/,
      );
    }
  });
}

test("runsc-old rejects recursive bind mounts (MS_BIND|MS_REC) with EINVAL; runsc (new) accepts them", async (t) => {
  if (!(await requireLab(t, ["runsc", "runsc-old"]))) return;
  const script =
    "mkdir -p /var/a /var/b && mount --bind /var/a /var/b && umount /var/b && echo bind-ok; mount --rbind /var/a /var/b && echo rbind-ok";
  const old = await inGvisor("old", ["sh", "-c", script]);
  assert.match(old.stdout, /^bind-ok\n$/);
  assert.match(old.stderr, /wrong fs type, bad option/);
  const current = await inGvisor("new", ["sh", "-c", script]);
  assert.equal(current.stdout, "bind-ok\nrbind-ok\n");
});

test("stock runc 1.4 runs a busybox container in runsc (new) with its default spec", async (t) => {
  if (!(await requireLab(t, ["runsc", "runc"]))) return;
  const { observations: obs } = await scenario("new", "runc");
  assert.match(value(obs, "runc:stock-spec-no-cgroupfs"), /no cgroup mount found in mountinfo/);
  assert.match(value(obs, "runc:stock-spec"), /^ok: hello-from-runc/);
  assert.equal(value(obs, "capbset.last"), "40");
});

test("stock runc 1.4 fails in runsc-old on the absent devices controller, not on cap_last_cap", async (t) => {
  if (!(await requireLab(t, ["runsc-old", "runc"]))) return;
  const { observations: obs } = await scenario("old", "runc");
  assert.match(value(obs, "runc:stock-spec"), /runc run failed: mountpoint for devices not found/);
  assert.match(
    value(obs, "runc:no-keyring-no-cgroupns-no-cgroups"),
    /mountpoint for devices not found/,
  );
  // moby/sys/capability v0.5.0 finds the last capability with PR_CAPBSET_READ, which answers here.
  assert.equal(value(obs, "capbset.last"), "40");
  assert.equal(value(obs, "cap_last_cap"), "absent");
});

test("containerd's CRI plugin refuses to load in runsc-old (4.4.0) with its default unprivileged ports/icmp", async (t) => {
  if (!(await requireLab(t, ["runsc-old", ...STACK]))) return;
  const { observations: obs } = await scenario("old", "containerd", "default");
  assert.equal(value(obs, "plugin:io.containerd.cri.v1.runtime"), "error");
  assert.equal(value(obs, "plugin:io.containerd.grpc.v1.cri"), "error");
  assert.match(
    value(obs, "containerd.log"),
    /unprivileged_icmp and unprivileged_port require kernel version greater than or equal to 4\.11/,
  );
  // Every snapshotter mounts layers with "rbind" to unpack them, which runsc-old rejects.
  assert.match(
    value(obs, "import:busybox"),
    /fstype: bind, flags: 20480, data: "", err: invalid argument/,
  );
});

test("containerd's CRI plugin loads in runsc-old with enable_unprivileged_ports/icmp = false", async (t) => {
  if (!(await requireLab(t, ["runsc-old", ...STACK]))) return;
  const { observations: obs } = await scenario("old", "containerd", "research");
  assert.equal(value(obs, "plugin:io.containerd.cri.v1.runtime"), "ok");
  assert.equal(value(obs, "plugin:io.containerd.grpc.v1.cri"), "ok");
  assert.match(
    value(obs, "import:busybox"),
    /to native .*fstype: bind, flags: 20480, data: "", err: invalid argument/,
  );
});

test("containerd with defaults in runsc (new): CRI loads, overlayfs unpacks, ctr runs a container with runc", async (t) => {
  if (!(await requireLab(t, ["runsc", ...STACK]))) return;
  const { observations: obs } = await scenario("new", "containerd", "default");
  assert.equal(value(obs, "plugin:io.containerd.grpc.v1.cri"), "ok");
  assert.equal(value(obs, "plugin:io.containerd.snapshotter.v1.overlayfs"), "ok");
  assert.equal(value(obs, "import:busybox"), "ok");
  assert.match(value(obs, "ctr-run:overlayfs"), /^ok: .*hello-from-runc 0/);
});

test("the research's native-snapshotter config cannot import images until the transfer service unpacks to native", async (t) => {
  if (!(await requireLab(t, ["runsc", ...STACK]))) return;
  const published = await scenario("new", "containerd", "research-as-published");
  assert.match(
    value(published.observations, "import:busybox"),
    /unable to initialize unpacker: no unpack platforms defined: invalid argument/,
  );
  const fixed = await scenario("new", "containerd", "research");
  assert.equal(value(fixed.observations, "import:busybox"), "ok");
  assert.match(value(fixed.observations, "ctr-run:native"), /^ok: .*hello-from-runc 0/);
});

const KUBELET_STACK = [...STACK, "kubelet", "crictl"];

test("kubelet in runsc (new) exits at start without /dev/kmsg, whatever the configuration", async (t) => {
  if (!(await requireLab(t, ["runsc", ...KUBELET_STACK]))) return;
  for (const mode of ["default", "research"]) {
    const { observations: obs } = await scenario("new", "kubelet", mode);
    assert.match(value(obs, "kubelet.process"), /^exited with 1/, mode);
    assert.match(
      value(obs, "kubelet.error"),
      /failed to run Kubelet: failed to create kubelet: open \/dev\/kmsg: no such file or directory/,
      mode,
    );
  }
});

test("kubelet in runsc (new) with /dev/kmsg stops at ContainerManager on the missing /proc/sys tunables", async (t) => {
  if (!(await requireLab(t, ["runsc", ...KUBELET_STACK]))) return;
  const { observations: obs } = await scenario("new", "kubelet", "research-kmsg");
  assert.match(value(obs, "kubelet.process"), /^exited with 1/);
  const error = value(obs, "kubelet.error");
  assert.match(error, /Failed to start ContainerManager/);
  assert.match(error, /write \/proc\/sys\/vm\/overcommit_memory: input\/output error/);
  for (const entry of [
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
  ]) {
    assert.match(error, new RegExp(`open /proc/sys/${entry}: no such file or directory`), entry);
  }
});

test("stock kubelet + containerd + runc run a hostNetwork static pod in runsc (new) once provisioned; the bridge CNI fails on hairpin", async (t) => {
  if (!(await requireLab(t, ["runsc", ...KUBELET_STACK]))) return;
  const { observations: obs } = await scenario("new", "kubelet", "provisioned");
  assert.match(value(obs, "kubelet.process"), /^running/);
  assert.match(value(obs, "containers"), /"name":"hello-hostnet","state":"CONTAINER_RUNNING"/);
  assert.match(value(obs, "container.logs:hello-hostnet"), /hello-from-static-pod/);
  assert.match(
    value(obs, "cni.error"),
    /^plugin type="bridge" failed \(add\): failed to setup hairpin mode for veth\w+: operation not supported/,
  );
});

test("kubelet in runsc-old cannot make its root dir rshared (MS_SHARED|MS_REC), unless it is already on a shared mount", async (t) => {
  if (!(await requireLab(t, ["runsc-old", ...KUBELET_STACK]))) return;
  const plain = await scenario("old", "kubelet", "research-kmsg");
  assert.match(
    value(plain.observations, "kubelet.error"),
    /failed to make \/var\/lib\/kubelet rshared: invalid argument/,
  );
  const provisioned = await scenario("old", "kubelet", "provisioned");
  assert.equal(value(provisioned.observations, "provision:kubelet-root-shared"), "ok");
  assert.match(value(provisioned.observations, "kubelet.process"), /^running/);
});
