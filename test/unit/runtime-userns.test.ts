import assert from "node:assert/strict";
import { test } from "node:test";
import { planCreate, type CreateInputs } from "../../src/runtime/create.js";
import { planExec } from "../../src/runtime/exec.js";
import { featuresJson } from "../../src/runtime/features.js";
import {
  CLONE_FLAGS,
  encodeInstructions,
  ins,
  type Instruction,
} from "../../src/runtime/instructions.js";
import { planJoinContainer } from "../../src/runtime/namespaces.js";
import { MS, parseMountOptions } from "../../src/runtime/rootfs/mount-options.js";
import { RecordingSyscalls } from "../../src/runtime/recording-syscalls.js";
import { parseSpec, type OciSpec } from "../../src/runtime/spec.js";
import type { ContainerState } from "../../src/runtime/state-store.js";
import {
  MAX_MAP_LINES,
  mapText,
  parseIdMappings,
  parseMapText,
  planUserNamespace,
} from "../../src/runtime/userns.js";

const MAP = [{ containerID: 0, hostID: 100000, size: 65536 }];

function spec(linux: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): OciSpec {
  return parseSpec(
    JSON.stringify({
      ociVersion: "1.2.0",
      root: { path: "rootfs" },
      process: { user: { uid: 0, gid: 0 }, args: ["sh"], cwd: "/" },
      mounts: [
        { destination: "/proc", type: "proc", source: "proc" },
        { destination: "/data", type: "bind", source: "/srv/data", options: ["rbind", "rw"] },
      ],
      linux: {
        namespaces: [{ type: "pid" }, { type: "mount" }, { type: "user" }, { type: "ipc" }],
        uidMappings: MAP,
        gidMappings: MAP,
        ...linux,
      },
      ...extra,
    }),
  );
}

function machine(): RecordingSyscalls {
  const sys = new RecordingSyscalls();
  for (const d of ["/b", "/b/rootfs", "/b/rootfs/dev", "/srv/data"]) sys.dirs.add(d);
  sys.files.set("/proc/77/uid_map", "         0     100000      65536\n");
  sys.files.set("/proc/77/gid_map", "         0     100000      65536\n");
  return sys;
}

function inputs(s: OciSpec): CreateInputs {
  return {
    spec: s,
    rootfs: "/b/rootfs",
    bundle: "/b",
    stateDir: "/run/x/c1",
    cgroups: [],
    options: { id: "c1", bundle: "/b", noPivot: false, preserveFds: 0 },
    capLastCapPresent: true,
  };
}

const ops = (list: readonly Instruction[]): string[] => list.map((i) => i[0]);

test("parseIdMappings names the field and the rule each bad mapping breaks", () => {
  const bad: [unknown, RegExp][] = [
    [{}, /uidMappings must be an array/],
    [[], /is empty/],
    [[{ containerID: 0, hostID: 1 }], /uidMappings\[0\]\.size must be a positive integer/],
    [[{ containerID: 0, hostID: 1, size: 0 }], /size must be a positive integer/],
    [[{ containerID: -1, hostID: 1, size: 1 }], /integers from 0 to 4294967295/],
    [[{ containerID: 0, hostID: 1.5, size: 1 }], /integers from 0 to 4294967295/],
    [[{ containerID: 0, hostID: 4294967290, size: 10 }], /runs past id 4294967295/],
    [
      [
        { containerID: 0, hostID: 1000, size: 100 },
        { containerID: 50, hostID: 5000, size: 10 },
      ],
      /uidMappings\[1\] overlaps linux\.uidMappings\[0\]/,
    ],
    [
      [
        { containerID: 0, hostID: 1000, size: 100 },
        { containerID: 500, hostID: 1099, size: 10 },
      ],
      /overlaps/,
    ],
    [
      Array.from({ length: MAX_MAP_LINES + 1 }, (_, i) => ({ containerID: i, hostID: i, size: 1 })),
      /341 mappings; the kernel accepts at most 340/,
    ],
  ];
  for (const [raw, message] of bad)
    assert.throws(() => parseIdMappings(raw, "linux.uidMappings"), message, JSON.stringify(raw));
  const lines = Array.from({ length: MAX_MAP_LINES }, (_, i) => ({
    containerID: i,
    hostID: 1000 + i,
    size: 1,
  }));
  assert.equal(parseIdMappings(lines, "x").length, 340);
  assert.deepEqual(parseIdMappings([{ containerID: 0, hostID: 4294967295, size: 1 }], "x"), [
    { containerID: 0, hostID: 4294967295, size: 1 },
  ]);
});

test("map text is what the kernel reads and what /proc shows parses back", () => {
  const maps = [...MAP, { containerID: 65536, hostID: 300000, size: 10 }];
  assert.equal(mapText(maps), "0 100000 65536\n65536 300000 10\n");
  assert.deepEqual(parseMapText("         0     100000      65536\n     65536 300000 10\n"), maps);
});

test("planUserNamespace: a new namespace needs maps that cover root and the process's ids", () => {
  const sys = machine();
  assert.deepEqual(planUserNamespace(sys, spec()), {
    kind: "new",
    uidMappings: MAP,
    gidMappings: MAP,
  });
  assert.equal(
    planUserNamespace(
      sys,
      spec({ namespaces: [{ type: "mount" }], uidMappings: undefined, gidMappings: undefined }),
    ),
    undefined,
  );
  const refusals: [OciSpec, RegExp][] = [
    [spec({ namespaces: [{ type: "mount" }] }), /no user namespace/],
    [
      spec({ uidMappings: undefined, gidMappings: undefined }),
      /needs linux\.uidMappings and linux\.gidMappings/,
    ],
    [spec({ gidMappings: undefined }), /needs both linux\.uidMappings and linux\.gidMappings/],
    [
      spec({ uidMappings: [{ containerID: 1, hostID: 1000, size: 10 }] }),
      /does not map container uid\/gid 0/,
    ],
    [
      spec({}, { process: { user: { uid: 70000, gid: 0 }, args: ["sh"], cwd: "/" } }),
      /process\.user\.uid 70000 is not mapped/,
    ],
    [
      spec(
        {},
        { process: { user: { uid: 0, gid: 0, additionalGids: [90000] }, args: ["sh"], cwd: "/" } },
      ),
      /process\.user gid 90000 is not mapped/,
    ],
  ];
  for (const [s, message] of refusals) assert.throws(() => planUserNamespace(sys, s), message);
});

test("planUserNamespace: joining by /proc path checks given maps against the namespace's own", () => {
  const sys = machine();
  const joined = [{ type: "mount" }, { type: "user", path: "/proc/77/ns/user" }];
  assert.deepEqual(planUserNamespace(sys, spec({ namespaces: joined })), {
    kind: "join",
    path: "/proc/77/ns/user",
    uidMappings: MAP,
    gidMappings: MAP,
  });
  assert.deepEqual(
    planUserNamespace(
      sys,
      spec({ namespaces: joined, uidMappings: undefined, gidMappings: undefined }),
    ),
    { kind: "join", path: "/proc/77/ns/user", uidMappings: MAP, gidMappings: MAP },
  );
  assert.throws(
    () =>
      planUserNamespace(
        sys,
        spec({ namespaces: joined, uidMappings: [{ containerID: 0, hostID: 5, size: 1 }] }),
      ),
    /differ from the maps of the user namespace to join/,
  );
  assert.throws(
    () =>
      planUserNamespace(
        sys,
        spec({ namespaces: [{ type: "mount" }, { type: "user", path: "/proc/78/ns/user" }] }),
      ),
    /its process is gone/,
  );
  assert.deepEqual(
    planUserNamespace(
      sys,
      spec({
        namespaces: [{ type: "mount" }, { type: "user", path: "/run/userns/pod" }],
        uidMappings: undefined,
        gidMappings: undefined,
      }),
    ),
    { kind: "join", path: "/run/userns/pod" },
  );
});

test("planCreate with a new user namespace: host work first, then join, map, unshare, fork", () => {
  const { instructions } = planCreate(
    machine(),
    inputs(
      spec({
        namespaces: [
          { type: "pid" },
          { type: "mount" },
          { type: "user" },
          { type: "network", path: "/var/run/netns/p" },
        ],
      }),
    ),
  );
  const o = ops(instructions);
  const at = (op: string): number => o.indexOf(op);
  assert.ok(at("mount_prepare") < at("listen"));
  assert.ok(at("listen") < at("join_namespaces"));
  assert.ok(
    at("join_namespaces") < at("userns_new"),
    "a host-owned netns is joined while still host root",
  );
  assert.ok(at("userns_new") < at("unshare"), "the other namespaces are then owned by the new one");
  assert.ok(at("unshare") < at("fork") && at("fork") < at("mount_attach"));
  assert.ok(at("mount_attach") < at("pivot_root"));
  assert.deepEqual(instructions[at("userns_new")], [
    "userns_new",
    "0 100000 65536\n",
    "0 100000 65536\n",
  ]);
  assert.deepEqual(instructions[at("unshare")], [
    "unshare",
    CLONE_FLAGS.pid | CLONE_FLAGS.mount,
    0,
  ]);
  // The rootfs and every bind are clones made outside: their host paths may be out of the mapped
  // root's reach. The init then names rootfs paths relative to the rootfs, its current directory.
  const prepared = instructions.filter((i) => i[0] === "mount_prepare" || i[0] === "chdir");
  assert.deepEqual(prepared.slice(0, 3), [
    ["mount_prepare", 0, "/b/rootfs", 1, MS.SLAVE, 0, "", "", ""],
    ["chdir", "/b/rootfs"],
    ["mount_prepare", 1, "/srv/data", 1, MS.SLAVE, 0, "", "", ""],
  ]);
  assert.ok(at("root_attach") < at("mount_attach"));
  assert.deepEqual(instructions[at("root_attach")], ["root_attach", 0]);
  assert.deepEqual(instructions[at("mount_attach")], ["mount_attach", 1, "./data"]);
  assert.deepEqual(instructions[at("pivot_root")], ["pivot_root", "."]);
  assert.ok(instructions.some((i) => i[0] === "device" && i[1] === "./dev/null"));
  assert.equal(
    instructions.some((i) =>
      i.slice(1).some((a) => typeof a === "string" && a.startsWith("/b/rootfs/")),
    ),
    false,
    "no instruction names a path under the rootfs by its host path",
  );
  assert.equal(instructions.filter((i) => i[0] === "mount" && i[1] === "/srv/data").length, 0);
});

test("planCreate joining a user namespace: user is in the join list and nothing is mapped", () => {
  const { instructions } = planCreate(
    machine(),
    inputs(
      spec({
        namespaces: [
          { type: "mount" },
          { type: "user", path: "/proc/77/ns/user" },
          { type: "ipc", path: "/proc/77/ns/ipc" },
        ],
      }),
    ),
  );
  assert.deepEqual(
    instructions.find((i) => i[0] === "join_namespaces"),
    [
      "join_namespaces",
      [String(CLONE_FLAGS.user), "/proc/77/ns/user", String(CLONE_FLAGS.ipc), "/proc/77/ns/ipc"],
    ],
  );
  assert.equal(ops(instructions).includes("userns_new"), false);
});

test("idmapped binds: own maps, the container's maps, a joined namespace's path, ridmap", () => {
  const bind = (extra: Record<string, unknown>): Record<string, unknown> => ({
    destination: "/data",
    type: "bind",
    source: "/srv/data",
    options: ["rbind", "rw"],
    ...extra,
  });
  const prepared = (s: OciSpec): Instruction | undefined =>
    planCreate(machine(), inputs(s)).instructions.find(
      (i) => i[0] === "mount_prepare" && i[2] === "/srv/data",
    );
  const own = [{ containerID: 0, hostID: 2000, size: 10 }];
  assert.deepEqual(prepared(spec({}, { mounts: [bind({ uidMappings: own, gidMappings: own })] })), [
    "mount_prepare",
    1,
    "/srv/data",
    1,
    MS.SLAVE,
    0,
    "0 2000 10\n",
    "0 2000 10\n",
    "",
  ]);
  assert.deepEqual(prepared(spec({}, { mounts: [bind({ options: ["rbind", "ridmap"] })] })), [
    "mount_prepare",
    1,
    "/srv/data",
    1,
    MS.SLAVE,
    1,
    "0 100000 65536\n",
    "0 100000 65536\n",
    "",
  ]);
  assert.deepEqual(
    prepared(
      spec(
        { namespaces: [{ type: "mount" }, { type: "user", path: "/proc/77/ns/user" }] },
        { mounts: [bind({ options: ["bind", "idmap"] })] },
      ),
    ),
    ["mount_prepare", 1, "/srv/data", 0, MS.SLAVE, 0, "", "", "/proc/77/ns/user"],
  );
  // Without a user namespace the container still gets an idmapped bind from the mount's own maps.
  const plain = { namespaces: [{ type: "mount" }], uidMappings: undefined, gidMappings: undefined };
  assert.deepEqual(
    prepared(spec(plain, { mounts: [bind({ uidMappings: own, gidMappings: own })] })),
    ["mount_prepare", 0, "/srv/data", 1, MS.SLAVE, 0, "0 2000 10\n", "0 2000 10\n", ""],
  );
  const refusals: [OciSpec, RegExp][] = [
    [
      spec(plain, { mounts: [bind({ options: ["rbind", "idmap"] })] }),
      /option "idmap" but neither uidMappings\/gidMappings nor a user namespace/,
    ],
    [spec({}, { mounts: [bind({ uidMappings: own })] }), /lacks gidMappings; give both/],
    [
      spec({}, { mounts: [bind({ uidMappings: [], gidMappings: own })] }),
      /mounts\[0\]\.uidMappings is empty/,
    ],
    [
      spec(
        {},
        { mounts: [{ destination: "/t", type: "tmpfs", source: "tmpfs", options: ["idmap"] }] },
      ),
      /mounts\[0\] \(\/t\): idmapped mounts must be bind mounts, not type "tmpfs"/,
    ],
  ];
  for (const [s, message] of refusals)
    assert.throws(() => planCreate(machine(), inputs(s)), message);
  assert.deepEqual(parseMountOptions(["rbind", "ridmap"]).warnings, []);
  assert.equal(parseMountOptions(["idmap"]).idmap, "idmap");
});

test("exec joins the container's user namespace among the others", () => {
  assert.deepEqual(
    planJoinContainer(9, [
      { type: "pid" },
      { type: "mount" },
      { type: "user" },
      { type: "network" },
    ]),
    [
      ins.joinNamespaces([
        [CLONE_FLAGS.user, "/proc/9/ns/user"],
        [CLONE_FLAGS.network, "/proc/9/ns/net"],
        [CLONE_FLAGS.pid, "/proc/9/ns/pid"],
        [CLONE_FLAGS.mount, "/proc/9/ns/mnt"],
      ]),
    ],
  );
  const s = spec();
  const state = { pid: 9, cgroups: [] } as unknown as ContainerState;
  const { instructions } = planExec(
    state,
    "/run/x/c1",
    s,
    s.process as NonNullable<OciSpec["process"]>,
    {
      args: [],
      detach: false,
      tty: false,
      preserveFds: 0,
    },
  );
  const o = ops(instructions);
  assert.ok(
    o.indexOf("join_namespaces") < o.indexOf("fork") && o.indexOf("fork") < o.indexOf("user"),
  );
});

test("the new ops encode as the helper reads them", () => {
  assert.equal(
    encodeInstructions([
      ins.joinNamespaces([[CLONE_FLAGS.user, "/proc/1/ns/user"]]),
      ins.newUserNamespace("0 1 2\n", "0 1 2\n"),
      ins.mountPrepare(3, "/src", true, MS.SLAVE, {
        recursive: false,
        usernsPath: "/proc/1/ns/user",
      }),
      ins.mountAttach(3, "/r/dst"),
    ]),
    "join_namespaces\x002\x00268435456\x00/proc/1/ns/user\x00" +
      "userns_new\x000 1 2\n\x000 1 2\n\x00" +
      "mount_prepare\x003\x00/src\x001\x00524288\x000\x00\x00\x00/proc/1/ns/user\x00" +
      "mount_attach\x003\x00/r/dst\x00",
  );
});

test("features advertises user namespaces and idmap mounts, as containerd requires for CRI userns", () => {
  const f = featuresJson() as {
    mountOptions: string[];
    linux: { namespaces: string[]; mountExtensions: { idmap: { enabled: boolean } } };
  };
  assert.ok(f.linux.namespaces.includes("user"));
  assert.equal(f.linux.mountExtensions.idmap.enabled, true);
  assert.ok(f.mountOptions.includes("idmap") && f.mountOptions.includes("ridmap"));
});
