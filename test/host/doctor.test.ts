import { test } from "node:test";
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DoctorReport } from "../../src/cli/doctor-report.js";
import type { RecordedTranscript } from "../../src/cli/doctor.js";
import { runCommand } from "../../src/common/exec.js";
import type { CommandResult } from "../../src/common/exec.js";
import { collectFacts } from "../../src/probe/facts.js";
import { replayIO } from "../../src/probe/io.js";

// The built CLI, run for real on this machine's kernel as root.
const doctorJs = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

function requireRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  const reason = "SKIPPED: doctor's host tests need root (mounts, namespaces, cgroups)";
  process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
  t.skip(reason);
  return false;
}

async function doctor(args: readonly string[]): Promise<CommandResult> {
  return runCommand(["node", doctorJs, "doctor", ...args], { timeoutMs: 180_000 });
}

async function withDataDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "sandkube-doctor-test-"));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function leftoverCgroups(): Promise<string[]> {
  const left: string[] = [];
  for (const hierarchy of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
    const entries = await readdir(join("/sys/fs/cgroup", hierarchy)).catch(() => [] as string[]);
    left.push(...entries.filter((e) => e.startsWith("skcgroup")).map((e) => `${hierarchy}/${e}`));
  }
  return left;
}

test("doctor --json on the host: this kernel, not gVisor, Kubernetes can run, nothing left behind", async (t) => {
  if (!requireRoot(t)) return;
  await withDataDir(async (dataDir) => {
    const cgroupsBefore = await leftoverCgroups();
    const result = await doctor(["--json", "--data-dir", dataDir]);
    assert.equal(result.exitCode, 0, result.stderr);
    const report = JSON.parse(result.stdout) as DoctorReport;
    assert.equal(report.schema, "sandkube.doctor/v1");
    assert.equal(report.facts.kernel.release, release());
    assert.equal(report.facts.kernel.gvisor.verdict, false);
    assert.equal(report.facts.identity.isRoot, true);
    assert.equal(report.facts.devKmsg.exists, existsSync("/dev/kmsg"));
    assert.equal(report.verdict.canRun, true);

    // What /proc says directly, without the probes' help.
    const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
    const cgroupRootIsV2 = / \/sys\/fs\/cgroup [^-]*- cgroup2 /.test(mountinfo);
    const hasV1 = / - cgroup /.test(mountinfo);
    assert.equal(
      report.facts.cgroups.mode,
      cgroupRootIsV2
        ? "v2"
        : hasV1 && / - cgroup2 /.test(mountinfo)
          ? "hybrid"
          : hasV1
            ? "v1"
            : "none",
    );
    for (const s of report.facts.sysctls) {
      assert.equal(s.exists, existsSync(`/proc/sys/${s.name}`), s.name);
      if (s.exists) {
        assert.equal(s.value, (await readFile(`/proc/sys/${s.name}`, "utf8")).trim(), s.name);
      }
    }
    for (const ns of report.facts.namespaces) {
      assert.equal(ns.create.result, "yes", `${ns.type}: ${JSON.stringify(ns.create)}`);
    }

    // Probes must not harm: no scratch directory, mount or cgroup survives them.
    assert.deepEqual(await readdir(dataDir), []);
    const mountsAfter = await readFile("/proc/self/mountinfo", "utf8");
    assert.ok(!mountsAfter.includes(dataDir), "a scratch mount under the data dir survived");
    assert.deepEqual(await leftoverCgroups(), cgroupsBefore);
  });
});

test("doctor on the host prints the found / meaning / adaptation sections and exits 0", async (t) => {
  if (!requireRoot(t)) return;
  await withDataDir(async (dataDir) => {
    const result = await doctor(["--data-dir", dataDir]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.match(result.stdout, /^FOUND\n/);
    assert.match(result.stdout, /\nWHAT IT MEANS FOR KUBERNETES\n/);
    assert.match(result.stdout, /\nADAPTATIONS SANDKUBE SWITCHES ON\n/);
    assert.match(
      result.stdout,
      new RegExp(`kernel\\s+release\\s+${release().replace(/\./g, "\\.")}`),
    );
    assert.match(result.stdout, /gVisor\s+no/);
    assert.match(result.stdout, /VERDICT: Kubernetes can run here/);
  });
});

test("doctor --record writes a transcript that replays to the same facts", async (t) => {
  if (!requireRoot(t)) return;
  await withDataDir(async (dataDir) => {
    const record = join(dataDir, "..", `${dataDir.split("/").at(-1)}.transcript.json`);
    try {
      const result = await doctor(["--json", "--data-dir", dataDir, "--record", record]);
      assert.equal(result.exitCode, 0, result.stderr);
      const report = JSON.parse(result.stdout) as DoctorReport;
      const transcript = JSON.parse(await readFile(record, "utf8")) as RecordedTranscript;
      assert.equal(transcript.schema, "sandkube.transcript/v1");
      assert.equal(transcript.probeOptions.dataDir, dataDir);
      const replayed = await collectFacts(replayIO(transcript), transcript.probeOptions);
      assert.deepEqual(JSON.parse(JSON.stringify(replayed)), report.facts);
    } finally {
      await rm(record, { force: true });
    }
  });
});

test("doctor: an unknown flag is one clear line on stderr and exit 2", async () => {
  const result = await doctor(["--jsn"]);
  assert.equal(result.exitCode, 2);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    'sandkube: doctor: unknown argument "--jsn". Run `sandkube doctor --help` for the options.\n',
  );
});

test("doctor: an unwritable data dir is a usage error, not a stack trace", async () => {
  const result = await doctor(["--data-dir", "/proc/sandkube-cannot-exist"]);
  assert.equal(result.exitCode, 2);
  assert.match(
    result.stderr,
    /^sandkube: doctor: data dir \/proc\/sandkube-cannot-exist is not writable \(ENOENT\)\. .*--data-dir DIR\.\n$/,
  );
});

test("doctor as an unprivileged user: exit 1, blocked by not-root, privileged probes not tried", async (t) => {
  if (!requireRoot(t)) return;
  if (!existsSync("/usr/sbin/runuser") && !existsSync("/sbin/runuser")) {
    const reason = "SKIPPED: runuser (util-linux) is needed to drop to the nobody user";
    process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
    t.skip(reason);
    return;
  }
  await withDataDir(async (dataDir) => {
    await chmod(dataDir, 0o777);
    const result = await runCommand(
      [
        "runuser",
        "-u",
        "nobody",
        "--",
        "node",
        doctorJs,
        "doctor",
        "--json",
        "--data-dir",
        dataDir,
      ],
      { timeoutMs: 180_000 },
    );
    assert.equal(result.exitCode, 1, result.stderr);
    const report = JSON.parse(result.stdout) as DoctorReport;
    assert.equal(report.facts.identity.isRoot, false);
    assert.deepEqual(
      report.verdict.blockers.map((b) => b.id),
      ["not-root"],
    );
    assert.equal(report.facts.overlay.onDataDir.result, "not-run");
    const mnt = report.facts.namespaces.find((n) => n.type === "mnt");
    assert.equal(mnt?.create.result, "not-run");
    assert.ok(report.facts.sysctls.every((s) => s.writable.result === "not-run"));
  });
});
