import assert from "node:assert/strict";
import { test } from "node:test";
import { planCreate } from "../../src/runtime/create.js";
import { planExec } from "../../src/runtime/exec.js";
import { featuresJson } from "../../src/runtime/features.js";
import type { Instruction } from "../../src/runtime/instructions.js";
import { planSeccomp, seccompAction } from "../../src/runtime/process/seccomp.js";
import { RecordingSyscalls } from "../../src/runtime/recording-syscalls.js";
import { parseSpec, type OciSpec } from "../../src/runtime/spec.js";
import type { ContainerState } from "../../src/runtime/state-store.js";

const ALLOW = 0x7fff0000;
const ERRNO = (e: number): number => 0x00050000 | e;

const PROFILE = {
  defaultAction: "SCMP_ACT_ALLOW",
  architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  flags: ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
  syscalls: [
    { names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO" },
    { names: ["getpid"], action: "SCMP_ACT_ALLOW" },
    {
      names: ["personality"],
      action: "SCMP_ACT_ERRNO",
      errnoRet: 38,
      args: [{ index: 0, value: 8, op: "SCMP_CMP_EQ" }],
    },
    {
      names: ["clone"],
      action: "SCMP_ACT_KILL_PROCESS",
      args: [
        { index: 0, value: 0x7e020000, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" },
        { index: 0, value: 1, op: "SCMP_CMP_NE" },
      ],
    },
  ],
};

test("a profile becomes init, one rule per name, and runc's defaults", () => {
  const { build, warnings } = planSeccomp(PROFILE);
  assert.deepEqual(warnings, []);
  assert.deepEqual(build, [
    ["seccomp_init", ALLOW, ["x86_64", "x86", "x32"], ["log"]],
    ["seccomp_rule", "mkdir", ERRNO(1), []],
    ["seccomp_rule", "mkdirat", ERRNO(1), []],
    // getpid's rule repeats the default action: libseccomp would refuse it, runc drops it.
    ["seccomp_rule", "personality", ERRNO(38), ["0 4 8 0"]],
    // Two comparisons of argument 0 cannot be ANDed in one libseccomp rule: one rule each.
    ["seccomp_rule", "clone", 0x80000000, ["0 7 2114060288 0"]],
    ["seccomp_rule", "clone", 0x80000000, ["0 1 1 0"]],
  ]);
});

test("seccomp actions map to libseccomp's values, errno defaulting to EPERM", () => {
  assert.equal(seccompAction("SCMP_ACT_KILL", undefined, "x"), 0);
  assert.equal(seccompAction("SCMP_ACT_TRAP", undefined, "x"), 0x00030000);
  assert.equal(seccompAction("SCMP_ACT_ERRNO", undefined, "x"), ERRNO(1));
  assert.equal(seccompAction("SCMP_ACT_TRACE", 3, "x"), 0x7ff00003);
  assert.equal(seccompAction("SCMP_ACT_LOG", undefined, "x"), 0x7ffc0000);
});

test("a bad profile fails create naming the field", () => {
  assert.throws(() => planSeccomp({}), /linux\.seccomp\.defaultAction is missing/);
  assert.throws(
    () => planSeccomp({ defaultAction: "SCMP_ACT_NOPE" }),
    /unknown seccomp action "SCMP_ACT_NOPE"/,
  );
  assert.throws(
    () => planSeccomp({ defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_VAX"] }),
    /architectures\[0\]: unknown architecture "SCMP_ARCH_VAX"/,
  );
  assert.throws(
    () =>
      planSeccomp({
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [
          {
            names: ["mkdir"],
            action: "SCMP_ACT_ERRNO",
            args: [{ index: 0, value: 1, op: "SCMP_CMP_LIKE" }],
          },
        ],
      }),
    /syscalls\[0\]\.args\[0\]\.op: unknown comparison "SCMP_CMP_LIKE"/,
  );
  assert.throws(
    () =>
      planSeccomp({
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [
          {
            names: ["mkdir"],
            action: "SCMP_ACT_ERRNO",
            args: [{ index: 6, value: 1, op: "SCMP_CMP_EQ" }],
          },
        ],
      }),
    /index: 6 is not a syscall argument index/,
  );
  assert.throws(
    () =>
      planSeccomp({
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["x"], action: "SCMP_ACT_NOTIFY" }],
      }),
    /SCMP_ACT_NOTIFY needs a seccomp agent/,
  );
});

function spec(noNewPrivileges: boolean): OciSpec {
  return parseSpec(
    JSON.stringify({
      ociVersion: "1.2.0",
      root: { path: "rootfs" },
      process: {
        user: { uid: 0, gid: 0 },
        args: ["sh"],
        cwd: "/",
        noNewPrivileges,
        capabilities: { bounding: [], effective: [], permitted: [] },
      },
      linux: { namespaces: [{ type: "mount" }], seccomp: PROFILE },
    }),
  );
}

function createList(s: OciSpec): readonly Instruction[] {
  const sys = new RecordingSyscalls();
  for (const d of ["/b", "/b/rootfs"]) sys.dirs.add(d);
  return planCreate(sys, {
    spec: s,
    rootfs: "/b/rootfs",
    bundle: "/b",
    stateDir: "/run/x/c1",
    cgroups: [],
    options: { id: "c1", bundle: "/b", noPivot: false, preserveFds: 0 },
    capLastCapPresent: true,
  }).instructions;
}

const ops = (list: readonly Instruction[]): string[] => list.map((i) => i[0]);

test("with no_new_privs the filter is loaded last, after the init is started", () => {
  const o = ops(createList(spec(true)));
  assert.ok(o.indexOf("seccomp_init") < o.indexOf("ready"), "a bad profile fails create");
  assert.deepEqual(o.slice(-5), ["resolve_exec", "ready", "park", "seccomp_load", "exec"]);
  assert.ok(o.indexOf("no_new_privs") < o.indexOf("seccomp_load"));
});

test("without no_new_privs the filter is loaded before capabilities drop (it needs CAP_SYS_ADMIN)", () => {
  const o = ops(createList(spec(false)));
  assert.ok(o.indexOf("seccomp_rule") < o.indexOf("seccomp_load"));
  assert.equal(o.indexOf("seccomp_load") + 1, o.indexOf("bounding"));
  assert.ok(!o.includes("no_new_privs"));
});

test("exec'd processes get the container's profile", () => {
  const s = spec(true);
  const state = { pid: 42, cgroups: [] } as unknown as ContainerState;
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
  assert.deepEqual(ops(instructions).slice(-2), ["seccomp_load", "exec"]);
  assert.ok(ops(instructions).includes("seccomp_init"));
});

test("features advertises seccomp and rro", () => {
  const f = featuresJson() as {
    mountOptions: string[];
    linux: {
      seccomp: { enabled: boolean; actions: string[]; operators: string[]; archs: string[] };
    };
  };
  assert.ok(f.mountOptions.includes("rro"));
  assert.equal(f.linux.seccomp.enabled, true);
  assert.ok(f.linux.seccomp.actions.includes("SCMP_ACT_ERRNO"));
  assert.ok(!f.linux.seccomp.actions.includes("SCMP_ACT_NOTIFY"));
  assert.ok(f.linux.seccomp.operators.includes("SCMP_CMP_MASKED_EQ"));
  assert.ok(f.linux.seccomp.archs.includes("SCMP_ARCH_X86_64"));
});
