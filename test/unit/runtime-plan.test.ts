import assert from "node:assert/strict";
import { test } from "node:test";
import { planCreate, type CreateInputs } from "../../src/runtime/create.js";
import {
  CLONE_FLAGS,
  encodeInstructions,
  ins,
  type Instruction,
} from "../../src/runtime/instructions.js";
import { planNamespaces } from "../../src/runtime/namespaces.js";
import { capabilityMask, capabilityNames } from "../../src/runtime/process/capabilities.js";
import { MS, parseMountOptions } from "../../src/runtime/rootfs/mount-options.js";
import { RecordingSyscalls } from "../../src/runtime/recording-syscalls.js";
import { parseSpec, type OciSpec } from "../../src/runtime/spec.js";

function spec(extra: Record<string, unknown> = {}, process: Record<string, unknown> = {}): OciSpec {
  return parseSpec(
    JSON.stringify({
      ociVersion: "1.2.0",
      root: { path: "rootfs", readonly: true },
      hostname: "box",
      process: {
        user: { uid: 1000, gid: 1000, additionalGids: [5] },
        args: ["sh", "-c", "true"],
        env: ["PATH=/bin"],
        cwd: "/work",
        noNewPrivileges: true,
        capabilities: { bounding: ["CAP_KILL"], effective: ["CAP_KILL"], permitted: ["CAP_KILL"] },
        ...process,
      },
      mounts: [
        { destination: "/proc", type: "proc", source: "proc" },
        {
          destination: "/dev",
          type: "tmpfs",
          source: "tmpfs",
          options: ["nosuid", "strictatime", "mode=755"],
        },
        {
          destination: "/data",
          type: "bind",
          source: "/srv/data",
          options: ["rbind", "ro", "rprivate"],
        },
      ],
      linux: {
        namespaces: [
          { type: "pid" },
          { type: "mount" },
          { type: "uts" },
          { type: "network", path: "/var/run/netns/cni-1" },
        ],
        maskedPaths: ["/proc/kcore"],
        readonlyPaths: ["/proc/sys"],
      },
      ...extra,
    }),
  );
}

function inputs(s: OciSpec, options: Partial<CreateInputs["options"]> = {}): CreateInputs {
  return {
    spec: s,
    rootfs: "/b/rootfs",
    bundle: "/b",
    stateDir: "/run/x/c1",
    cgroups: [{ dir: "/sys/fs/cgroup/pids/c1", version: 1, controllers: ["pids"] }],
    options: { id: "c1", bundle: "/b", noPivot: false, preserveFds: 0, ...options },
    capLastCapPresent: true,
  };
}

function machine(): RecordingSyscalls {
  const sys = new RecordingSyscalls();
  for (const d of ["/b", "/b/rootfs", "/b/rootfs/dev", "/srv/data"]) sys.dirs.add(d);
  return sys;
}

const ops = (list: readonly Instruction[]): string[] => list.map((i) => i[0]);

test("planCreate orders the init's work: cgroup, namespaces, fork, rootfs, pivot, credentials, park, exec", () => {
  const { instructions } = planCreate(machine(), inputs(spec()));
  const o = ops(instructions);
  const at = (op: string): number => o.indexOf(op);
  assert.ok(
    at("cgroup_join") < at("join_namespaces") &&
      at("join_namespaces") < at("unshare") &&
      at("unshare") < at("fork"),
  );
  assert.ok(at("fork") < at("hostname") && at("hostname") < at("mount"));
  assert.ok(
    at("listen") < at("join_namespaces"),
    "the start socket is bound while the host's paths are still visible",
  );
  assert.ok(
    at("pivot_root") < at("readonly") &&
      at("readonly") < at("mask") &&
      at("mask") < at("remount_root_ro"),
  );
  assert.ok(
    at("bounding") < at("user") && at("user") < at("caps") && at("caps") < at("no_new_privs"),
  );
  assert.deepEqual(o.slice(-4), ["resolve_exec", "ready", "park", "exec"]);
  assert.deepEqual(
    instructions.find((i) => i[0] === "join_namespaces"),
    ["join_namespaces", [String(CLONE_FLAGS.network), "/var/run/netns/cni-1"]],
  );
  assert.deepEqual(
    instructions.find((i) => i[0] === "unshare"),
    ["unshare", CLONE_FLAGS.pid | CLONE_FLAGS.mount | CLONE_FLAGS.uts, 0],
  );
  assert.deepEqual(
    instructions.find((i) => i[0] === "user"),
    ["user", 1000, 1000, ["5"]],
  );
  const kill = 1n << 5n;
  assert.deepEqual(
    instructions.find((i) => i[0] === "caps"),
    ["caps", kill, kill, 0n, 0n],
  );
  assert.deepEqual(instructions.at(-1), ["exec", 3, ["sh", "-c", "true"], ["PATH=/bin"]]);
});

test("planCreate binds read-only with a separate remount and creates the default devices", () => {
  const { instructions } = planCreate(machine(), inputs(spec()));
  assert.ok(
    instructions.some(
      (i) =>
        i[0] === "mount" &&
        i[1] === "/srv/data" &&
        i[2] === "/b/rootfs/data" &&
        i[4] === (MS.BIND | MS.REC),
    ),
  );
  assert.ok(
    instructions.some(
      (i) =>
        i[0] === "remount_bind" &&
        i[1] === "/srv/data" &&
        i[2] === "/b/rootfs/data" &&
        ((i[3] as number) & MS.RDONLY) !== 0,
    ),
  );
  for (const d of ["null", "zero", "full", "random", "urandom", "tty"])
    assert.ok(
      instructions.some((i) => i[0] === "device" && i[1] === `/b/rootfs/dev/${d}`),
      d,
    );
  assert.ok(
    instructions.some(
      (i) => i[0] === "symlink" && i[1] === "/proc/self/fd" && i[2] === "/b/rootfs/dev/fd",
    ),
  );
});

test("planCreate refuses what would weaken the pod or touch the host", () => {
  assert.throws(
    () =>
      planCreate(
        machine(),
        inputs(spec({ hostname: "x", linux: { namespaces: [{ type: "mount" }] } })),
      ),
    /hostname but the container has no uts namespace of its own/,
  );
  const hostUts = machine();
  hostUts.sameFiles.add("/proc/1/ns/uts=/proc/self/ns/uts");
  const withUts = (path: string): OciSpec =>
    spec({
      hostname: "x",
      linux: { namespaces: [{ type: "mount" }, { type: "uts", path }] },
    });
  assert.throws(
    () => planCreate(hostUts, inputs(withUts("/proc/1/ns/uts"))),
    /no uts namespace of its own: it would rename the host/,
  );
  // Another uts namespace, joined by path, may be renamed (as runc allows).
  assert.ok(planCreate(hostUts, inputs(withUts("/proc/77/ns/uts"))).instructions.length > 0);
  const hostMnt = machine();
  hostMnt.sameFiles.add("/proc/1/ns/mnt=/proc/self/ns/mnt");
  assert.throws(
    () =>
      planCreate(
        hostMnt,
        inputs(spec({ linux: { namespaces: [{ type: "mount", path: "/proc/1/ns/mnt" }] } })),
      ),
    /mount namespace at \/proc\/1\/ns\/mnt is the host's/,
  );
  assert.throws(
    () =>
      planCreate(
        machine(),
        inputs(
          spec({
            linux: {
              namespaces: [{ type: "mount" }, { type: "uts" }],
              sysctl: { "net.ipv4.ip_forward": "1" },
            },
          }),
        ),
      ),
    /sysctl "net.ipv4.ip_forward" would change the host/,
  );
  const hostNet = machine();
  hostNet.sameFiles.add("/var/run/netns/host-alias=/proc/self/ns/net");
  const joinHost = spec({
    linux: {
      namespaces: [
        { type: "mount" },
        { type: "uts" },
        { type: "network", path: "/var/run/netns/host-alias" },
      ],
      sysctl: { "net.core.somaxconn": "1" },
    },
  });
  assert.throws(() => planCreate(hostNet, inputs(joinHost)), /would change the host/);
  const joinPod = spec({
    linux: {
      namespaces: [
        { type: "mount" },
        { type: "uts" },
        { type: "network", path: "/var/run/netns/cni-1" },
      ],
      sysctl: { "net.core.somaxconn": "1" },
    },
  });
  assert.ok(
    planCreate(machine(), inputs(joinPod)).instructions.some(
      (i) => i[0] === "sysctl" && i[1] === "/proc/sys/net/core/somaxconn",
    ),
  );
  assert.throws(
    () => planCreate(machine(), inputs(spec({}, { terminal: true }))),
    /no --console-socket/,
  );
  assert.throws(
    () =>
      planCreate(
        machine(),
        inputs(spec({ mounts: [{ destination: "/x", type: "bind", source: "/nope" }] })),
      ),
    /bind source \/nope does not exist/,
  );
});

test("planCreate warns about what it cannot give instead of failing", () => {
  const s = spec({
    linux: {
      namespaces: [{ type: "mount" }, { type: "uts" }, { type: "cgroup" }],
    },
  });
  const { instructions, warnings } = planCreate(machine(), {
    ...inputs(s),
    capLastCapPresent: false,
  });
  assert.ok(warnings.some((w) => /cap_last_cap is absent/.test(w)));
  assert.deepEqual(
    instructions.find((i) => i[0] === "unshare" && i[1] === CLONE_FLAGS.cgroup),
    ["unshare", CLONE_FLAGS.cgroup, 1],
  );
});

test("planNamespaces refuses a missing mount namespace", () => {
  assert.throws(() => planNamespaces([{ type: "pid" }]), /the spec has no mount namespace/);
});

test("encodeInstructions writes NUL-terminated fields and counted arrays", () => {
  assert.equal(
    encodeInstructions([ins.user(1, 2, [3, 4]), ins.chdir("/")]),
    "user\x001\x002\x002\x003\x004\x00chdir\x00/\x00",
  );
  assert.throws(() => encodeInstructions([ins.chdir("a\0b")]), /NUL byte/);
});

test("capability names map to bits and back", () => {
  const m = capabilityMask(["CAP_CHOWN", "net_bind_service", "CAP_BOGUS"]);
  assert.equal(m.mask, (1n << 0n) | (1n << 10n));
  assert.deepEqual(m.unknown, ["CAP_BOGUS"]);
  assert.deepEqual(capabilityNames("0000000020000420"), [
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_AUDIT_WRITE",
  ]);
});

test("mount options split into flags, propagation and data", () => {
  const o = parseMountOptions(["nosuid", "noexec", "rprivate", "mode=755", "size=1k", "rro"]);
  assert.equal(o.flags, MS.NOSUID | MS.NOEXEC | MS.RDONLY);
  assert.deepEqual(o.propagation, [MS.PRIVATE | MS.REC]);
  assert.equal(o.data, "mode=755,size=1k");
  assert.equal(o.recursiveReadonly, true);
  assert.deepEqual(o.warnings, []);
});

test("an rro bind is bound, remounted read-only, then made read-only down its submounts", () => {
  const s = spec({
    mounts: [
      { destination: "/data", type: "bind", source: "/srv/data", options: ["rbind", "rro"] },
    ],
  });
  const { instructions } = planCreate(machine(), inputs(s));
  const at = (op: string): number =>
    instructions.findIndex((i) => i[0] === op && i[1] !== "/b/rootfs");
  assert.deepEqual(instructions[at("mount")], [
    "mount",
    "/srv/data",
    "/b/rootfs/data",
    "",
    MS.BIND | MS.REC,
    "",
    0,
  ]);
  assert.deepEqual(instructions[at("remount_bind")]?.slice(0, 4), [
    "remount_bind",
    "/srv/data",
    "/b/rootfs/data",
    MS.RDONLY | MS.REC,
  ]);
  assert.deepEqual(instructions[at("recursive_readonly")], [
    "recursive_readonly",
    "/b/rootfs/data",
  ]);
  assert.ok(at("remount_bind") < at("recursive_readonly"));
});

test("a read-only root creates its own mount points first, then asks for an early read-only view", () => {
  const sys = machine();
  sys.files.set("/etc/hosts-src", "");
  const s = spec({
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs" },
      { destination: "/dev/shm", type: "tmpfs", source: "shm" },
      { destination: "/etc/hosts", type: "bind", source: "/etc/hosts-src", options: ["rbind"] },
    ],
  });
  const { instructions } = planCreate(sys, inputs(s));
  const early = instructions.findIndex((i) => i[0] === "readonly_root_early");
  const selfBind = instructions.findIndex((i) => i[0] === "mount" && i[2] === "/b/rootfs");
  assert.deepEqual(instructions[early], ["readonly_root_early", "/b/rootfs"]);
  assert.equal(early, selfBind + 5, "mount points of /proc, /dev, /etc/hosts and the cwd");
  assert.deepEqual(instructions.slice(selfBind + 1, early), [
    ["mkdir", "/b/rootfs/proc", 0o755],
    ["mkdir", "/b/rootfs/dev", 0o755],
    ["touch", "/b/rootfs/etc/hosts"],
    ["mkdir", "/b/rootfs/work", 0o755],
  ]);
  // Nothing but the root's own bind is mounted before the view, and the late remount still follows.
  assert.ok(!instructions.slice(0, early).some((i) => i[0] === "mount" && i[2] !== "/b/rootfs"));
  assert.ok(instructions.findIndex((i) => i[0] === "remount_root_ro") > early);
});

test("a writable root gets no early read-only view", () => {
  const s = spec({ root: { path: "rootfs" } });
  const { instructions } = planCreate(machine(), inputs(s));
  assert.ok(
    !instructions.some((i) => i[0] === "readonly_root_early" || i[0] === "remount_root_ro"),
  );
});
