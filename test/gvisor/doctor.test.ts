import { test } from "node:test";
import assert from "node:assert/strict";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { repoRootOfScript } from "../../lab/gvisor-run.js";
import type { RunscFlavour } from "../../lab/gvisor-spec.js";
import { inGvisor, requireLab, runscName } from "./lab.js";

/** The subset of sandkube.doctor/v1 (docs/doctor-json.md) these tests read. */
interface DoctorJson {
  readonly schema: string;
  readonly facts: {
    readonly kernel: { readonly release: string; readonly gvisor: { readonly verdict: boolean } };
    readonly sysctls: readonly { readonly name: string; readonly exists: boolean }[];
    readonly devKmsg: unknown;
  };
  readonly adaptations: readonly { readonly id: string }[];
  readonly verdict: { readonly blockers: readonly { readonly id: string }[] };
}

const doctorJs = join(repoRootOfScript(), "dist", "src", "cli", "main.js");

async function doctorBuilt(t: import("node:test").TestContext): Promise<boolean> {
  try {
    await access(join(repoRootOfScript(), "dist", "src", "cli", "doctor.js"));
    return true;
  } catch {
    const reason =
      "SKIPPED: dist/src/cli/doctor.js is missing; run `npm run build` once src/cli/doctor.ts exists";
    process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
    t.skip(reason);
    return false;
  }
}

const expectations: Record<
  RunscFlavour,
  { release: string; missing: string[]; present: string[] }
> = {
  new: {
    release: "4.19.0-gvisor",
    missing: [
      "vm/panic_on_oom",
      "kernel/panic",
      "kernel/panic_on_oops",
      "kernel/keys/root_maxkeys",
      "kernel/keys/root_maxbytes",
      "net/ipv4/ip_unprivileged_port_start",
    ],
    present: ["kernel/cap_last_cap", "vm/overcommit_memory", "net/ipv4/ip_forward"],
  },
  old: {
    release: "4.4.0",
    missing: [
      "vm/panic_on_oom",
      "kernel/panic",
      "kernel/panic_on_oops",
      "kernel/keys/root_maxkeys",
      "kernel/cap_last_cap",
      "kernel/pid_max",
    ],
    present: ["vm/overcommit_memory", "net/ipv4/ip_forward"],
  },
};

for (const runsc of ["new", "old"] as const) {
  test(`doctor inside ${runscName(runsc)} names gVisor and the /proc/sys entries it lacks`, async (t) => {
    if (!(await requireLab(t, [runscName(runsc)])) || !(await doctorBuilt(t))) return;
    const result = await inGvisor(runsc, ["node", doctorJs, "doctor", "--json"]);
    // Both can run a node with the adaptations. The 2023 one refuses MS_REC, so sandkube unpacks
    // images itself there, and it has no veth, so pods share the node's network; its missing
    // setns and mount namespaces are adaptations of sandkube-runtime.
    assert.equal(result.exitCode, 0, `doctor exit: ${result.stderr}`);
    const report = JSON.parse(result.stdout) as DoctorJson;
    assert.deepEqual(
      report.verdict.blockers.map((b) => b.id),
      [],
    );
    if (runsc === "old")
      for (const id of ["no-setns", "no-mount-namespace", "no-recursive-bind", "cni-host-network"])
        assert.ok(
          report.adaptations.some((a) => a.id === id),
          `${id} adaptation`,
        );
    assert.equal(report.schema, "sandkube.doctor/v1");
    assert.equal(report.facts.kernel.release, expectations[runsc].release);
    assert.equal(report.facts.kernel.gvisor.verdict, true);
    const exists = new Map(report.facts.sysctls.map((s) => [s.name, s.exists]));
    for (const name of expectations[runsc].missing)
      assert.equal(exists.get(name), false, `${name} should be missing`);
    for (const name of expectations[runsc].present)
      assert.equal(exists.get(name), true, `${name} should exist`);
  });

  test(`doctor's human report inside ${runscName(runsc)} says gVisor and lists missing tunables`, async (t) => {
    if (!(await requireLab(t, [runscName(runsc)])) || !(await doctorBuilt(t))) return;
    const result = await inGvisor(runsc, ["node", doctorJs, "doctor"]);
    assert.match(result.stdout, /gVisor\s+yes/);
    assert.match(result.stdout, /kernel\/panic_on_oops\s+missing/);
    assert.match(result.stdout, /\/dev\/kmsg\s+missing/);
  });
}

test("`npx sandkube doctor` resolves the project's own bin inside gVisor", async (t) => {
  if (!(await requireLab(t, ["runsc"])) || !(await doctorBuilt(t))) return;
  // npx runs a project's own bin when the working directory's package.json declares it, with no
  // registry access; the sandbox has no network anyway (--network=none).
  const result = await inGvisor("new", ["npx", "--no-install", "sandkube", "doctor", "--json"]);
  assert.ok(
    result.exitCode === 0 || result.exitCode === 1,
    `exit ${result.exitCode}: ${result.stderr}`,
  );
  assert.equal((JSON.parse(result.stdout) as DoctorJson).facts.kernel.gvisor.verdict, true);
});
