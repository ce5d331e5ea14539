import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_CAPABILITIES,
  DEFAULT_TIMEOUT_SECONDS,
  GvisorUsageError,
  makeRunId,
  mountsUnder,
  parseGvisorArgs,
  renderSandboxSpec,
  rootfsLayers,
  rootfsMountArgs,
  runscBinary,
  runscGlobalArgs,
  type SandboxLayout,
} from "../../lab/gvisor-spec.js";

const layout: SandboxLayout = {
  rootfs: "/lab/gvisor-runs/r1/rootfs",
  repoRoot: "/work/main",
  outDir: "/lab/gvisor-out/r1",
  labBinDir: "/lab/bin",
  labDir: "/lab",
  nodeBinDir: "/usr/bin",
};

test("parseGvisorArgs: defaults, and options end at the first command word", () => {
  assert.deepEqual(parseGvisorArgs(["uname", "-r"]), {
    runsc: "new",
    timeoutSeconds: DEFAULT_TIMEOUT_SECONDS,
    network: "none",
    outDir: undefined,
    debug: false,
    command: ["uname", "-r"],
  });
});

test("parseGvisorArgs: every option, in both spellings, and -- before a dashed command", () => {
  const parsed = parseGvisorArgs([
    "--runsc",
    "old",
    "--timeout=30",
    "--network",
    "sandbox",
    "--out=/tmp/o",
    "--debug",
    "--",
    "--not-an-option",
  ]);
  assert.deepEqual(parsed, {
    runsc: "old",
    timeoutSeconds: 30,
    network: "sandbox",
    outDir: "/tmp/o",
    debug: true,
    command: ["--not-an-option"],
  });
});

test("parseGvisorArgs: --help returns undefined", () => {
  assert.equal(parseGvisorArgs(["--help"]), undefined);
});

test("parseGvisorArgs: bad input names what was wrong", () => {
  const cases: [string[], RegExp][] = [
    [[], /no command given/],
    [["--"], /no command given/],
    [["--runsc", "newest", "true"], /--runsc must be "new" or "old", not "newest"/],
    [["--timeout", "0", "true"], /whole number of seconds above 0, not "0"/],
    [["--timeout", "1.5", "true"], /not "1.5"/],
    [["--timeout"], /--timeout needs a value/],
    [["--network", "host", "true"], /cannot create veth or bridge/],
    [["--out", "relative", "true"], /absolute path/],
    [["--debug=yes", "true"], /takes no value/],
    [["--frobnicate", "true"], /unknown option "--frobnicate"/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(
      () => parseGvisorArgs(argv),
      (e: unknown) => e instanceof GvisorUsageError && message.test(e.message),
      argv.join(" "),
    );
  }
});

test("runscBinary picks runsc or runsc-old from the lab bin dir", () => {
  assert.equal(runscBinary("new", { SANDKUBE_LAB_DIR: "/lab" }), "/lab/bin/runsc");
  assert.equal(runscBinary("old", { SANDKUBE_LAB_DIR: "/lab" }), "/lab/bin/runsc-old");
});

test("renderSandboxSpec: root with every capability, in the repository, lab binaries first on PATH", () => {
  const spec = renderSandboxSpec(["node", "dist/src/cli/main.js", "doctor"], layout);
  assert.deepEqual(spec.process.user, { uid: 0, gid: 0 });
  assert.deepEqual(spec.process.args, ["node", "dist/src/cli/main.js", "doctor"]);
  assert.equal(spec.process.cwd, "/work/main");
  for (const set of Object.values(spec.process.capabilities)) {
    assert.deepEqual(set, ALL_CAPABILITIES);
  }
  assert.ok(ALL_CAPABILITIES.includes("CAP_SYS_ADMIN") && ALL_CAPABILITIES.includes("CAP_NET_RAW"));
  assert.equal(ALL_CAPABILITIES.length, 41, "CAP_CHOWN (0) to CAP_CHECKPOINT_RESTORE (40)");
  assert.equal(spec.process.noNewPrivileges, false);
  const path = spec.process.env.find((e) => e.startsWith("PATH="));
  // The node that runs the lab comes right after the lab binaries, so `node` inside is the same one.
  assert.equal(path, "PATH=/lab/bin:/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/bin");
  assert.ok(spec.process.env.includes("SANDKUBE_GVISOR_OUT=/lab/gvisor-out/r1"));
  assert.ok(spec.process.env.includes("SANDKUBE_LAB_DIR=/lab"));
});

test("renderSandboxSpec: node's own directory joins PATH when it is not a standard one", () => {
  const spec = renderSandboxSpec(["true"], { ...layout, nodeBinDir: "/opt/node/bin" });
  assert.ok(
    spec.process.env.includes(
      "PATH=/lab/bin:/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
  );
});

test("renderSandboxSpec: the host overlay is the root and only the output dir is a bind mount", () => {
  const spec = renderSandboxSpec(["true"], layout);
  assert.deepEqual(spec.root, { path: "/lab/gvisor-runs/r1/rootfs", readonly: false });
  const binds = spec.mounts.filter((m) => m.type === "bind");
  assert.deepEqual(binds, [
    {
      destination: "/lab/gvisor-out/r1",
      type: "bind",
      source: "/lab/gvisor-out/r1",
      options: ["rbind", "rw"],
    },
  ]);
  assert.deepEqual(
    spec.mounts.map((m) => m.destination),
    ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/tmp", "/lab/gvisor-out/r1"],
  );
  // User sandboxes have no /dev/kmsg and no cgroup mounts; the lab must not add them either.
  assert.ok(!spec.mounts.some((m) => m.type === "cgroup" || m.destination === "/dev/kmsg"));
  assert.deepEqual(
    spec.linux.namespaces.map((n) => n.type),
    ["pid", "network", "ipc", "uts", "mount"],
  );
});

test("renderSandboxSpec refuses an empty command", () => {
  assert.throws(() => renderSandboxSpec([], layout), /empty command/);
});

test("runscGlobalArgs: private state, gVisor netstack, raw sockets, no sentry overlay", () => {
  assert.deepEqual(runscGlobalArgs({ stateDir: "/s", network: "none", debugLogDir: undefined }), [
    "--root=/s",
    "--network=none",
    "--net-raw",
    "--overlay2=none",
    "--ignore-cgroups",
  ]);
  assert.deepEqual(
    runscGlobalArgs({ stateDir: "/s", network: "sandbox", debugLogDir: "/o/d" }).slice(-3),
    ["--debug", "--debug-log=/o/d/", "--strace"],
  );
});

test("rootfsMountArgs: the host's / under a tmpfs-backed upper layer", () => {
  const layers = rootfsLayers("/lab/gvisor-runs/r1");
  assert.deepEqual(rootfsMountArgs(layers), [
    "mount",
    "-t",
    "overlay",
    "overlay",
    "-o",
    "lowerdir=/,upperdir=/lab/gvisor-runs/r1/rootfs-rw/upper,workdir=/lab/gvisor-runs/r1/rootfs-rw/work",
    "/lab/gvisor-runs/r1/rootfs",
  ]);
});

test("mountsUnder: finds runsc's leftover null-netns and the rootfs, deepest first, with octal escapes", () => {
  const mountinfo = [
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
    "94 27 0:4 net:[4026532330] /lab/gvisor-runs/r1/state/null-netns rw - nsfs nsfs rw",
    "95 22 0:50 / /lab/gvisor-runs/r1/rootfs-rw rw - tmpfs sandkube-lab-rootfs rw",
    "96 22 0:51 / /lab/gvisor-runs/r1/rootfs rw - overlay overlay rw,lowerdir=/",
    "97 22 0:52 / /lab/gvisor-runs/r10/rootfs rw - overlay overlay rw",
    "98 22 0:53 / /lab/gvisor-runs/r1/with\\040space rw - tmpfs t rw",
  ].join("\n");
  assert.deepEqual(mountsUnder(mountinfo, "/lab/gvisor-runs/r1"), [
    "/lab/gvisor-runs/r1/state/null-netns",
    "/lab/gvisor-runs/r1/with space",
    "/lab/gvisor-runs/r1/rootfs-rw",
    "/lab/gvisor-runs/r1/rootfs",
  ]);
});

test("makeRunId is a valid runsc container id that sorts by time", () => {
  const id = makeRunId(new Date("2026-11-29T03:40:05.123Z"), 42, "abc123");
  assert.equal(id, "sk-20261129T034005-42-abc123");
  assert.match(id, /^[\w+-.]+$/);
});

test("a checkout under the host's /tmp is bound through the sandbox's own /tmp", () => {
  const layout = {
    rootfs: "/var/cache/sandkube-lab/gvisor/run-1/rootfs",
    repoRoot: "/tmp/ci-clone",
    outDir: "/var/cache/sandkube-lab/gvisor/run-1/out",
    labBinDir: "/var/cache/sandkube-lab/bin",
    labDir: "/var/cache/sandkube-lab",
    nodeBinDir: "/usr/bin",
  };
  const mounts = renderSandboxSpec(["true"], layout).mounts;
  const tmp = mounts.findIndex((m) => m.destination === "/tmp");
  const repo = mounts.findIndex((m) => m.destination === "/tmp/ci-clone");
  assert.ok(tmp >= 0 && repo > tmp, "the bind comes after the tmpfs it must show through");
  assert.equal(mounts[repo]?.source, "/tmp/ci-clone");
  assert.equal(
    mounts.some((m) => m.destination === "/var/cache/sandkube-lab"),
    false,
    "paths outside /tmp are seen through the overlaid root, not bound",
  );
});
