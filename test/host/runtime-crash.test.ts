import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmdirSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { HELPER, makeLab, runtimeCommand, skipReason, type Lab } from "./runtime-support.js";

const reason = skipReason();
if (reason !== undefined) console.log(`runtime-crash: ${reason}`);

const ownPidNs = readlinkSync("/proc/self/ns/pid");
const CGROUP_PARENT = `/sandkube-crash-test-${process.pid}`;

/** Mount points of every cgroup hierarchy this process sees. */
function cgroupMountPoints(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => / - cgroup2? /.test(l))
    .map((l) => l.split(" ")[4] as string);
}

function procEntries(): string[] {
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d));
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

function nsOf(pid: string): string {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return ownPidNs;
  }
}

function isLive(pid: string): boolean {
  const stat = readOr(`/proc/${pid}/stat`, "");
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return stat !== "" && state !== "Z" && state !== "X";
}

/** Live processes still running the helper on this container's instruction list (helper or parked init). */
function helperProcesses(instructionFile: string): string[] {
  return procEntries().filter(
    (p) => readOr(`/proc/${p}/cmdline`, "").split("\0")[1] === instructionFile && isLive(p),
  );
}

/** Everything of one container the test looks at from outside. */
interface Probe {
  readonly id: string;
  readonly stateDir: string;
  readonly instructionFile: string;
  readonly pidFile: string;
  readonly cgroupDirs: readonly string[];
}

interface Step {
  readonly name: string;
  readonly seen: (p: Probe) => boolean;
  /** Until create.ts records its cgroups before making them, a kill here can leave one unknown. */
  /** The last step: create may exit right after it, which leaves the same state as a kill. */
  readonly last?: boolean;
}

// create.ts's order: state dir, cgroups, instruction list, helper spawned, start socket bound,
// init forked into a new pid namespace, init ready and parked (the runtime then unlinks the list),
// state.json, pid file.
const STEPS: readonly Step[] = [
  { name: "state dir created", seen: (p) => existsSync(p.stateDir) },
  {
    name: "cgroup created",
    seen: (p) => p.cgroupDirs.some((d) => existsSync(d)),
  },
  { name: "instruction file written", seen: (p) => existsSync(p.instructionFile) },
  { name: "sandkube-init spawned", seen: (p) => helperProcesses(p.instructionFile).length > 0 },
  { name: "start socket bound", seen: (p) => existsSync(join(p.stateDir, "start.sock")) },
  {
    name: "init forked into a new pid namespace",
    seen: (p) => helperProcesses(p.instructionFile).some((pid) => nsOf(pid) !== ownPidNs),
  },
  {
    name: "init parked (helper reported, instruction file removed)",
    seen: (p) =>
      existsSync(join(p.stateDir, "start.sock")) &&
      existsSync(join(p.stateDir, "creator.json")) &&
      !existsSync(p.instructionFile),
  },
  { name: "state.json written", seen: (p) => existsSync(join(p.stateDir, "state.json")) },
  { name: "pid file written", seen: (p) => existsSync(p.pidFile), last: true },
];

/** Mounts under the bundle's rootfs in our mount namespace: create must never leave one here. */
function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

interface Crash {
  /** Whether the step was seen while create was still running (and it was killed then). */
  readonly killedAtStep: boolean;
  /** The steps already visible at the moment of the kill. */
  readonly visible: readonly string[];
}

/**
 * Starts create and SIGKILLs the runtime process only (as a crash would: its helper and init are
 * left alone) the moment `step` is observed. The poll is a synchronous busy loop on /proc and the
 * file system so that nothing between two looks can be long.
 */
async function createAndKillAt(lab: Lab, probe: Probe, step: Step): Promise<Crash> {
  const out = openSync(join(lab.dir, `${probe.id}.out`), "w");
  const child = spawn(
    ...runtimeCommand(lab.root, lab.log, [
      "create",
      "--bundle",
      lab.bundle,
      "--pid-file",
      probe.pidFile,
      probe.id,
    ]),
    { stdio: ["ignore", out, out], env: { ...process.env, SANDKUBE_INIT: HELPER } },
  );
  closeSync(out);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const pid = child.pid as number;
  let killedAtStep = false;
  let visible: string[] = [];
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (step.seen(probe)) {
      // Whether create finished in the meantime is settled by the zombie check below.
      const stillRunning = isLive(String(pid));
      process.kill(pid, "SIGKILL");
      visible = STEPS.filter((s) => s.seen(probe)).map((s) => s.name);
      killedAtStep = stillRunning || step.last === true;
      break;
    }
    if (!isLive(String(pid))) break;
  }
  if (!killedAtStep && isLive(String(pid))) process.kill(pid, "SIGKILL");
  await exited;
  return { killedAtStep, visible };
}

function assertNothingLeft(lab: Lab, probe: Probe, rootfs: string, context: string): void {
  const left = [
    ...helperProcesses(probe.instructionFile).map((p) => `process ${p} (helper or parked init)`),
    ...probe.cgroupDirs.filter((d) => existsSync(d)).map((d) => `cgroup ${d}`),
    ...mountsUnder(rootfs).map((m) => `mount ${m}`),
    ...(existsSync(probe.stateDir) ? [`state dir ${probe.stateDir}`] : []),
  ];
  assert.deepEqual(left, [], `${context}: left behind`);
  const state = lab.run(["state", probe.id]);
  assert.notEqual(state.status, 0);
  assert.match(state.stderr, /does not exist/);
}

describe("sandkube-runtime create killed at each step, then delete", { skip: reason }, () => {
  let lab: Lab;
  let extraMounts: Record<string, unknown>[] = [];
  before(() => {
    lab = makeLab();
    // Many mounts make the init's setup (between fork and ready) long enough to be seen from here.
    extraMounts = Array.from({ length: 150 }, (_, i) => ({
      destination: `/tmp/m${i}`,
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "nodev", "size=64k"],
    }));
  });
  after(() => {
    lab?.cleanup();
    // Empty cgroups only (rmdir): a leftover a failed step reported is removed here, not hidden.
    for (const m of cgroupMountPoints()) {
      const parent = `${m}${CGROUP_PARENT}`;
      if (!existsSync(parent)) continue;
      for (const d of readdirSync(parent, { withFileTypes: true }))
        if (d.isDirectory()) rmdirSync(join(parent, d.name));
      rmdirSync(parent);
    }
  });

  STEPS.forEach((step, i) => {
    test(`killed at: ${step.name}`, async () => {
      const rootfs = join(lab.bundle, "rootfs");
      let crash: Crash | undefined;
      let probe: Probe | undefined;
      // A step too brief to catch is retried; each miss is cleaned up like any other crash.
      for (let attempt = 0; attempt < 25; attempt++) {
        const id = `crash${i}-${attempt}`;
        const stateDir = join(lab.root, id);
        probe = {
          id,
          stateDir,
          instructionFile: join(stateDir, "init.instructions"),
          pidFile: join(lab.dir, `${id}.pid`),
          cgroupDirs: cgroupMountPoints().map((m) => `${m}${CGROUP_PARENT}/${id}`),
        };
        // A cgroup of its own per attempt, so one attempt's leftovers never count against another.
        lab.writeConfig({
          args: ["sleep", "60"],
          extraMounts,
          cgroupsPath: `${CGROUP_PARENT}/${id}`,
        });
        crash = await createAndKillAt(lab, probe, step);
        const del = lab.run(["delete", probe.id]);
        if (del.status !== 0) {
          assert.match(del.stderr, /does not exist/, `delete failed: ${del.stderr}`);
        }
        const log = readOr(lab.log, "").trim().split("\n").slice(-3).join("\n");
        assertNothingLeft(
          lab,
          probe,
          rootfs,
          `${id} killed with ${crash.visible.join(", ")} visible; delete: ${del.status} ${del.stderr.trim()}; log: ${log}`,
        );
        if (crash.killedAtStep) break;
      }
      assert.ok(crash?.killedAtStep, `create was never caught at "${step.name}"`);
      assert.ok(crash.visible.includes(step.name));
    });
  });
});
