/**
 * User namespaces and idmapped mounts on the host kernel, asserted from inside the container and
 * from the host: the maps, who owns what a container writes, the security facts, exec, delete, and
 * the errors of bad mappings.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { capabilityNames } from "../../src/runtime/process/capabilities.js";
import {
  DEFAULT_CAPS,
  logRecords,
  makeLab,
  readIfExists,
  runWithStdio,
  skipReason,
  stateOf,
  waitFor,
  type BundleOptions,
  type Lab,
} from "./runtime-support.js";

const HOST_BASE = 100000;
const MAPPING = [{ containerID: 0, hostID: HOST_BASE, size: 65536 }];
const USERNS = [
  { type: "pid" },
  { type: "network" },
  { type: "ipc" },
  { type: "uts" },
  { type: "mount" },
  { type: "user" },
];

function hostCanIdmap(): string | undefined {
  const r = skipReason();
  if (r !== undefined) return r;
  if (!existsSync("/proc/self/ns/user")) return "SKIPPED: this kernel has no user namespaces";
  return undefined;
}

const reason = hostCanIdmap();

/** Facts printed as key=value words, one key possibly several times. */
function facts(output: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const part of output.split(/\s+/)) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const key = part.slice(0, eq);
    m.set(key, [...(m.get(key) ?? []), part.slice(eq + 1)]);
  }
  return m;
}

type ConfigPatch = (config: Record<string, unknown>) => void;

function writeConfig(lab: Lab, o: BundleOptions, patch?: ConfigPatch): void {
  lab.writeConfig(o);
  const file = join(lab.bundle, "config.json");
  const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  const linux = config["linux"] as Record<string, unknown>;
  linux["uidMappings"] = MAPPING;
  linux["gidMappings"] = MAPPING;
  patch?.(config);
  writeFileSync(file, JSON.stringify(config, null, 2));
}

/** chown -hR, without following the busybox applet links. */
function chownTree(path: string, id: number): void {
  execFileSync("chown", ["-hR", `${id}:${id}`, path]);
}

describe("user namespaces and idmapped mounts (host kernel)", { skip: reason }, () => {
  let lab: Lab;
  let shared: string;
  let hostOwned: string;
  before(() => {
    lab = makeLab();
    // The lab stays 0700 (mkdtemp): the mapped root cannot pass it, and reaches its rootfs and
    // bind sources only through what the helper opened before entering the user namespace.
    chownTree(join(lab.bundle, "rootfs"), HOST_BASE);
    // A rw bind source inside a 0700 directory: only a clone made outside the namespace reaches it.
    const privateDir = join(lab.dir, "private");
    mkdirSync(privateDir, { mode: 0o700 });
    shared = join(privateDir, "shared");
    mkdirSync(shared);
    chownSync(shared, HOST_BASE, HOST_BASE);
    // Shared on the host, so that a clone which stayed its peer would carry the container's
    // mounts under it back to the host.
    execFileSync("mount", ["--bind", shared, shared]);
    execFileSync("mount", ["--make-shared", shared]);
    mkdirSync(join(shared, "sub"));
    chownSync(join(shared, "sub"), HOST_BASE, HOST_BASE);
    // Files owned by the host's root, shown through an idmapped bind as the container's root.
    hostOwned = join(lab.dir, "host-owned");
    mkdirSync(hostOwned);
    writeFileSync(join(hostOwned, "by-host-root"), "x");
  });
  after(() => {
    if (shared !== undefined) execFileSync("umount", ["-l", shared]);
    lab?.cleanup();
  });

  const binds = (): Record<string, unknown>[] => [
    { destination: "/shared", type: "bind", source: shared, options: ["rbind", "rw"] },
    { destination: "/shared/sub", type: "tmpfs", source: "tmpfs", options: ["nosuid"] },
    {
      destination: "/idmapped",
      type: "bind",
      source: hostOwned,
      options: ["rbind", "rw", "nosuid", "nodev"],
      uidMappings: MAPPING,
      gidMappings: MAPPING,
    },
    { destination: "/plain", type: "bind", source: hostOwned, options: ["rbind", "ro"] },
  ];

  test("root inside maps to 100000 outside; binds, idmapped binds, security and exec hold", async () => {
    const id = "userns-run";
    const script = [
      'echo "uid=$(id -u) gid=$(id -g)"',
      "echo \"uidmap=$(cat /proc/self/uid_map | tr -s ' ' , | sed 's/^,//')\"",
      "echo \"gidmap=$(cat /proc/self/gid_map | tr -s ' ' , | sed 's/^,//')\"",
      "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status | tr -d '\\t' | sed 's/:/=/'",
      "touch /shared/made-inside && echo shared=writable",
      'echo "idmapped_owner=$(stat -c %u /idmapped/by-host-root)"',
      'echo "plain_owner=$(stat -c %u /plain/by-host-root)"',
      "touch /idmapped/made-through-idmap && echo idmapped=writable",
      "touch /in-root 2>/dev/null && echo root=writable || echo root=readonly",
      "(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo procsys=writable || echo procsys=readonly",
      "echo x > /dev/null && echo devnull=ok",
      'echo "hostname=$(hostname)"',
      'echo "pids_max=$(cat /sys/fs/cgroup/pids/pids.max)"',
      "touch /sys/fs/cgroup/pids/x 2>/dev/null && echo cgroupfs=writable || echo cgroupfs=readonly",
      "echo mqueue=$(grep -c ' /dev/mqueue .* - mqueue ' /proc/self/mountinfo)",
      "echo ready",
      "sleep 60",
    ].join("; ");
    writeConfig(lab, {
      args: ["sh", "-c", script],
      namespaces: USERNS,
      capabilities: DEFAULT_CAPS,
      cgroupsPath: `/sandkube-test/${id}-${process.pid}`,
      extraMounts: [
        ...binds(),
        {
          destination: "/sys/fs/cgroup",
          type: "cgroup",
          source: "cgroup",
          options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
        {
          destination: "/dev/mqueue",
          type: "mqueue",
          source: "mqueue",
          options: ["nosuid", "noexec", "nodev"],
        },
      ],
    });
    const out = join(lab.dir, `${id}.out`);
    const err = join(lab.dir, `${id}.err`);
    assert.equal(
      runWithStdio(lab, ["create", "--bundle", lab.bundle, id], out, err),
      0,
      readIfExists(err) + readIfExists(lab.log),
    );
    const pid = stateOf(lab, id)["pid"] as number;
    const hostUid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    assert.equal(hostUid, String(HOST_BASE), "the init runs as host uid 100000");
    assert.equal(
      readFileSync("/proc/self/mountinfo", "utf8").includes(lab.bundle),
      false,
      "the container's mounts do not propagate to the host",
    );
    assert.equal(
      readFileSync("/proc/self/mountinfo", "utf8").includes(join(shared, "sub")),
      false,
      "a mount under a bind of a shared host mount stays in the container",
    );
    assert.equal(lab.run(["start", id]).status, 0);
    await waitFor(() => readIfExists(out).includes("ready\n"), `${id} output`);
    const f = facts(readIfExists(out));
    assert.deepEqual(f.get("uid"), ["0"]);
    assert.deepEqual(f.get("gid"), ["0"]);
    assert.deepEqual(f.get("uidmap"), [`0,${HOST_BASE},65536`]);
    assert.deepEqual(f.get("gidmap"), [`0,${HOST_BASE},65536`]);
    assert.deepEqual(capabilityNames(f.get("CapEff")?.[0] ?? "0").sort(), [...DEFAULT_CAPS].sort());
    assert.deepEqual(capabilityNames(f.get("CapBnd")?.[0] ?? "0").sort(), [...DEFAULT_CAPS].sort());
    assert.deepEqual(f.get("NoNewPrivs"), ["1"]);
    assert.deepEqual(f.get("shared"), ["writable"]);
    assert.equal(
      statSync(join(shared, "made-inside")).uid,
      HOST_BASE,
      "owned by 100000 on the host",
    );
    assert.deepEqual(
      f.get("idmapped_owner"),
      ["0"],
      "a host-root file shows as the container's root",
    );
    assert.deepEqual(f.get("plain_owner"), ["65534"], "without idmap it is the overflow uid");
    assert.deepEqual(f.get("idmapped"), ["writable"]);
    assert.equal(statSync(join(hostOwned, "made-through-idmap")).uid, 0, "stored as host root");
    assert.deepEqual(f.get("root"), ["readonly"]);
    assert.deepEqual(f.get("procsys"), ["readonly"]);
    assert.deepEqual(f.get("devnull"), ["ok"]);
    assert.deepEqual(f.get("hostname"), ["sandkube-test"]);
    assert.deepEqual(f.get("pids_max"), ["100"], "the container's own v1 cgroup is bound in");
    assert.deepEqual(f.get("cgroupfs"), ["readonly"]);
    assert.deepEqual(f.get("mqueue"), ["1"], "the ipc namespace is owned by the user namespace");
    assert.deepEqual(
      logRecords(lab)
        .filter((r) => r.level === "warning")
        .map((r) => r.msg),
      [],
      "nothing degraded",
    );

    // exec joins the user namespace too: ids are the ones seen inside.
    const ex = lab.run([
      "exec",
      id,
      "--",
      "sh",
      "-c",
      "echo uid=$(id -u); cat /proc/self/uid_map; grep NoNewPrivs /proc/self/status",
    ]);
    assert.equal(ex.status, 0, ex.stderr + readIfExists(lab.log));
    assert.match(ex.stdout, /^uid=0$/m);
    assert.match(ex.stdout, new RegExp(`^\\s*0\\s+${HOST_BASE}\\s+65536$`, "m"));
    assert.match(ex.stdout, /NoNewPrivs:\s+1/);
    const processFile = join(lab.dir, "exec-1000.json");
    writeFileSync(
      processFile,
      JSON.stringify({
        user: { uid: 1000, gid: 1000 },
        args: ["sh", "-c", "echo uid=$(id -u) gid=$(id -g); cat /proc/self/status | grep ^Uid"],
        env: ["PATH=/bin"],
        cwd: "/",
        noNewPrivileges: true,
      }),
    );
    const ex1000 = lab.run(["exec", "--process", processFile, id]);
    assert.equal(ex1000.status, 0, ex1000.stderr + readIfExists(lab.log));
    assert.match(ex1000.stdout, /^uid=1000 gid=1000$/m);

    assert.equal(lab.run(["delete", "--force", id]).status, 0);
    assert.equal(lab.run(["state", id]).status, 1, "state after delete");
    assert.equal(existsSync(join(lab.root, id)), false, "no state dir left");
    await waitFor(
      () => !existsSync(`/proc/${pid}`) || /State:\s+Z/.test(readIfExists(`/proc/${pid}/status`)),
      "the init to be gone (a zombie waits for its reaper)",
    );
    assert.equal(
      readFileSync("/proc/self/mountinfo", "utf8").includes(lab.bundle),
      false,
      "no mount of the bundle left on the host",
    );
  });

  test("an app container joins the pod's user namespace by path, as containerd sends it", async () => {
    const pod = "userns-pod";
    const app = "userns-app";
    writeConfig(lab, { args: ["sleep", "60"], namespaces: USERNS });
    const podErr = join(lab.dir, `${pod}.err`);
    assert.equal(
      runWithStdio(lab, ["create", "--bundle", lab.bundle, pod], "/dev/null", podErr),
      0,
      readIfExists(podErr) + readIfExists(lab.log),
    );
    const podPid = stateOf(lab, pod)["pid"] as number;
    assert.equal(lab.run(["start", pod]).status, 0);
    const script = [
      'echo "uid=$(id -u)"',
      "echo \"uidmap=$(cat /proc/self/uid_map | tr -s ' ' , | sed 's/^,//')\"",
      'echo "idmapped_owner=$(stat -c %u /idmapped/by-host-root)"',
      "echo mqueue=$(grep -c ' /dev/mqueue .* - mqueue ' /proc/self/mountinfo)",
      "echo ready",
    ].join("; ");
    writeConfig(
      lab,
      {
        args: ["sh", "-c", script],
        namespaces: [
          { type: "user", path: `/proc/${podPid}/ns/user` },
          { type: "ipc", path: `/proc/${podPid}/ns/ipc` },
          { type: "uts", path: `/proc/${podPid}/ns/uts` },
          { type: "network", path: `/proc/${podPid}/ns/net` },
          { type: "pid" },
          { type: "mount" },
        ],
        extraMounts: [
          {
            destination: "/idmapped",
            type: "bind",
            source: hostOwned,
            options: ["rbind", "idmap"],
          },
          { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid"] },
        ],
      },
      (c) => delete c["hostname"],
    );
    const out = join(lab.dir, `${app}.out`);
    const err = join(lab.dir, `${app}.err`);
    assert.equal(
      runWithStdio(lab, ["create", "--bundle", lab.bundle, app], out, err),
      0,
      readIfExists(err) + readIfExists(lab.log),
    );
    const appPid = stateOf(lab, app)["pid"] as number;
    for (const ns of ["user", "ipc", "uts", "net"])
      assert.equal(
        readlinkSync(`/proc/${appPid}/ns/${ns}`),
        readlinkSync(`/proc/${podPid}/ns/${ns}`),
        `the app shares the pod's ${ns} namespace`,
      );
    assert.notEqual(readlinkSync(`/proc/${appPid}/ns/mnt`), readlinkSync(`/proc/${podPid}/ns/mnt`));
    assert.equal(lab.run(["start", app]).status, 0);
    await waitFor(() => readIfExists(out).includes("ready\n"), `${app} output`);
    const f = facts(readIfExists(out));
    assert.deepEqual(f.get("uid"), ["0"]);
    assert.deepEqual(f.get("uidmap"), [`0,${HOST_BASE},65536`]);
    assert.deepEqual(
      f.get("idmapped_owner"),
      ["0"],
      "idmap without maps takes the joined namespace's",
    );
    assert.deepEqual(f.get("mqueue"), ["1"]);
    for (const id of [app, pod]) assert.equal(lab.run(["delete", "--force", id]).status, 0);
    assert.equal(existsSync(join(lab.root, pod)), false);
  });

  const badCases: [string, ConfigPatch, RegExp][] = [
    [
      "container uid 0 unmapped",
      (c) => {
        const linux = c["linux"] as Record<string, unknown>;
        linux["uidMappings"] = [{ containerID: 1, hostID: HOST_BASE, size: 65536 }];
      },
      /does not map container uid\/gid 0/,
    ],
    [
      "two overlapping mappings",
      (c) => {
        const linux = c["linux"] as Record<string, unknown>;
        linux["uidMappings"] = [...MAPPING, { containerID: 0, hostID: 200000, size: 65536 }];
      },
      /linux\.uidMappings\[1\] overlaps linux\.uidMappings\[0\]/,
    ],
    [
      "a zero-size mapping",
      (c) => {
        const linux = c["linux"] as Record<string, unknown>;
        linux["gidMappings"] = [{ containerID: 0, hostID: HOST_BASE, size: 0 }];
      },
      /linux\.gidMappings\[0\]\.size must be a positive integer/,
    ],
    [
      "a range past 2^32",
      (c) => {
        const linux = c["linux"] as Record<string, unknown>;
        linux["uidMappings"] = [{ containerID: 0, hostID: 4294967000, size: 65536 }];
      },
      /runs past id 4294967295/,
    ],
    [
      "mappings without a user namespace",
      (c) => {
        const linux = c["linux"] as Record<string, unknown>;
        linux["namespaces"] = USERNS.filter((n) => n.type !== "user");
      },
      /no user namespace/,
    ],
    [
      "an idmapped tmpfs",
      (c) => {
        (c["mounts"] as unknown[]).push({
          destination: "/scratch",
          type: "tmpfs",
          source: "tmpfs",
          uidMappings: MAPPING,
          gidMappings: MAPPING,
        });
      },
      /idmapped mounts must be bind mounts/,
    ],
  ];

  for (const [what, patch, message] of badCases)
    test(`create refuses ${what} and leaves nothing behind`, () => {
      const id = `bad-${what.replace(/[^a-z0-9]+/g, "-")}`;
      writeConfig(lab, { args: ["true"], namespaces: USERNS }, patch);
      const r = lab.run(["create", "--bundle", lab.bundle, id]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, message);
      assert.equal(existsSync(join(lab.root, id)), false, "no state dir");
      assert.equal(lab.run(["state", id]).status, 1);
    });

  test("create refuses a process user outside the uid map; no refused create left anything", () => {
    const id = "bad-process-user";
    writeConfig(lab, { args: ["true"], namespaces: USERNS, uid: 70000 });
    const r = lab.run(["create", "--bundle", lab.bundle, id]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /process\.user\.uid 70000 is not mapped/);
    assert.deepEqual(
      existsSync(lab.root) ? readdirSync(lab.root).filter((n) => n.startsWith("bad-")) : [],
      [],
      "no container left from any refused create",
    );
  });
});
