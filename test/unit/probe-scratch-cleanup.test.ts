import { test } from "node:test";
import assert from "node:assert/strict";
import type { DoctorFixture } from "../fixtures/doctor-fixtures.js";
import { loadDoctorFixture } from "../fixtures/doctor-fixtures.js";

/**
 * Probes must leave nothing behind. Read from the recordings themselves: every scratch directory
 * and cgroup created by doctor's own probes was removed, and every mount it made was unmounted.
 */
const RECORDED: readonly DoctorFixture[] = ["host-kernel", "gvisor-runsc-new", "gvisor-runsc-old"];

for (const name of RECORDED) {
  test(`${name}: every scratch dir, cgroup and mount made by doctor is gone again`, () => {
    const runs = loadDoctorFixture(name).entries.flatMap((e) =>
      e.op === "run" ? [{ argv: e.argv, ok: e.result.exitCode === 0 }] : [],
    );
    const created = new Set<string>();
    const removed = new Set<string>();
    const mounted = new Set<string>();
    const unmounted = new Set<string>();
    for (const { argv, ok } of runs) {
      const [cmd, ...args] = argv;
      const target = args.at(-1) ?? "";
      if (!ok) continue;
      if (cmd === "mkdir" && /\/(doctor-)?sk(cgroup|overlay|cgmnt)/.test(target)) {
        for (const path of args.filter((a) => a !== "-p")) created.add(path);
      }
      if (cmd === "rmdir") removed.add(target);
      if (cmd === "rm") removed.add(target);
      if (cmd === "mount" && args[0] === "-t") mounted.add(target);
      if (cmd === "umount") unmounted.add(target);
    }
    assert.ok(created.size > 0, "the fixture holds scratch objects");
    for (const path of created) {
      const gone = [...removed].some((r) => path === r || path.startsWith(`${r}/`));
      assert.ok(gone, `${path} was never removed`);
    }
    assert.deepEqual(
      [...mounted].filter((m) => !unmounted.has(m)),
      [],
    );
  });
}
