import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { capabilityNames } from "../../src/runtime/process/capabilities.js";
import {
  makeLab,
  readIfExists,
  runWithStdio,
  skipReason,
  stateOf,
  waitFor,
  type Lab,
  type BundleOptions,
} from "./runtime-support.js";

const reason = skipReason();

/** A shell script that reports, from inside the container, the facts a pod's security rests on. */
const PROBE = [
  'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G | tr " " ,)"',
  "grep -E '^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs):' /proc/self/status | tr -d '\\t' | sed 's/:/=/'",
  "touch /in-root 2>/dev/null && echo root=writable || echo root=readonly",
  "touch /tmp/in-tmp 2>/dev/null && echo tmp=writable || echo tmp=readonly",
  'echo "kcore_bytes=$(head -c 16 /proc/kcore | wc -c)"',
  'echo "keys_bytes=$(cat /proc/keys | wc -c)"',
  'echo "firmware_entries=$(ls -A /sys/firmware | wc -l)"',
  "(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo procsys=writable || echo procsys=readonly",
  'echo "fds=$(ls /proc/self/fd | tr "\\n" , )"',
  'for p in /proc/[0-9]*; do echo "exe=$(readlink $p/exe)"; done',
  "echo x > /dev/null && echo devnull=ok",
].join("; ");

/** A profile that allows everything but mkdir, which fails with EPERM as under Docker's policies. */
const NO_MKDIR = {
  defaultAction: "SCMP_ACT_ALLOW",
  architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  syscalls: [
    { names: ["mkdir", "mkdirat", "no_such_syscall_in_any_kernel"], action: "SCMP_ACT_ERRNO" },
  ],
};

const SECCOMP_PROBE = [
  "mkdir /tmp/made 2>/dev/null && echo mkdir=allowed || echo mkdir=refused",
  "mkdir /tmp/made 2>&1 | grep -q 'Operation not permitted' && echo errno=EPERM",
  "touch /tmp/file && echo touch=allowed",
  "grep -E '^Seccomp:' /proc/self/status | tr -d '\\t' | sed 's/:/=/'",
].join("; ");

function facts(output: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of output.split("\n")) {
    for (const part of line.split(" ")) {
      const eq = part.indexOf("=");
      if (eq <= 0) continue;
      const key = part.slice(0, eq);
      m.set(key, [...(m.get(key) ?? []), part.slice(eq + 1)]);
    }
  }
  return m;
}

/** Adds spec fields that BundleOptions does not cover (linux.seccomp) to the written config.json. */
type ConfigPatch = (config: { linux: Record<string, unknown> }) => void;

async function runProbe(
  lab: Lab,
  id: string,
  o: Omit<BundleOptions, "args">,
  script = PROBE,
  patch?: ConfigPatch,
): Promise<Map<string, string[]>> {
  lab.writeConfig({ ...o, args: ["sh", "-c", `${script}; echo done`] });
  if (patch !== undefined) {
    const file = join(lab.bundle, "config.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as { linux: Record<string, unknown> };
    patch(config);
    writeFileSync(file, JSON.stringify(config));
  }
  const out = join(lab.dir, `${id}.out`);
  const err = join(lab.dir, `${id}.err`);
  assert.equal(
    runWithStdio(lab, ["create", "--bundle", lab.bundle, id], out, err),
    0,
    readIfExists(err) + readIfExists(lab.log),
  );
  assert.equal(lab.run(["start", id]).status, 0);
  await waitFor(() => readIfExists(out).includes("done\n"), `${id} probe output`);
  await waitFor(() => stateOf(lab, id)["status"] === "stopped", `${id} exit`);
  assert.equal(lab.run(["delete", id]).status, 0);
  return facts(readIfExists(out));
}

describe("security asserted from inside the container (host kernel)", { skip: reason }, () => {
  let lab: Lab;
  before(() => {
    lab = makeLab();
  });
  after(() => lab?.cleanup());

  test("a non-root user stays non-root, with no capabilities and no_new_privs", async () => {
    const f = await runProbe(lab, "nonroot", {
      uid: 1000,
      gid: 1000,
      additionalGids: [2000],
      capabilities: ["CAP_KILL"],
    });
    assert.deepEqual(f.get("uid"), ["1000"]);
    assert.deepEqual(f.get("gid"), ["1000"]);
    assert.deepEqual(f.get("groups"), ["1000,2000"]);
    assert.equal(
      BigInt(`0x${f.get("CapEff")?.[0]}`),
      0n,
      "a non-root user's effective set is empty after setuid",
    );
    assert.deepEqual(capabilityNames(f.get("CapBnd")?.[0] ?? "0"), ["CAP_KILL"]);
    assert.deepEqual(f.get("NoNewPrivs"), ["1"]);
  });

  test("root in the container keeps only the listed capabilities; root, masked and read-only paths hold", async () => {
    const f = await runProbe(lab, "root", { capabilities: ["CAP_KILL", "CAP_NET_BIND_SERVICE"] });
    assert.deepEqual(f.get("uid"), ["0"]);
    for (const set of ["CapEff", "CapPrm", "CapBnd"])
      assert.deepEqual(
        capabilityNames(f.get(set)?.[0] ?? "0"),
        ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        set,
      );
    assert.deepEqual(f.get("NoNewPrivs"), ["1"]);
    assert.deepEqual(f.get("root"), ["readonly"]);
    assert.deepEqual(f.get("tmp"), ["writable"]);
    assert.deepEqual(f.get("kcore_bytes"), ["0"], "/proc/kcore is masked");
    assert.deepEqual(f.get("keys_bytes"), ["0"], "/proc/keys is masked");
    assert.deepEqual(f.get("firmware_entries"), ["0"], "/sys/firmware is masked");
    assert.deepEqual(f.get("procsys"), ["readonly"], "/proc/sys is read-only even for root");
    assert.deepEqual(
      f.get("devnull"),
      ["ok"],
      "default devices are usable under the deny-all device cgroup",
    );
  });

  test("no host fd leaks in, and no runtime executable is reachable through /proc", async () => {
    const f = await runProbe(lab, "fds", {});
    // ls itself holds fd 3 on the directory it lists; everything else would be a leak.
    assert.deepEqual(f.get("fds"), ["0,1,2,3,"], "only stdio is open");
    const exes = f.get("exe") ?? [];
    assert.ok(exes.length > 0);
    for (const exe of exes)
      assert.equal(exe, "/bin/busybox", `a process in the container runs ${exe}`);
  });

  for (const noNewPrivileges of [true, false])
    test(`a seccomp profile blocks mkdir with EPERM (noNewPrivileges ${noNewPrivileges})`, async () => {
      const f = await runProbe(
        lab,
        `seccomp-${noNewPrivileges}`,
        { noNewPrivileges },
        SECCOMP_PROBE,
        (c) => void (c.linux["seccomp"] = NO_MKDIR),
      );
      assert.deepEqual(f.get("mkdir"), ["refused"]);
      assert.deepEqual(f.get("errno"), ["EPERM"]);
      assert.deepEqual(f.get("touch"), ["allowed"], "only the listed syscalls are refused");
      assert.deepEqual(f.get("Seccomp"), ["2"], "the process runs in seccomp filter mode");
    });

  test("an exec'd process gets the container's seccomp profile", async () => {
    lab.writeConfig({ args: ["sleep", "60"] });
    const file = join(lab.bundle, "config.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as { linux: Record<string, unknown> };
    config.linux["seccomp"] = NO_MKDIR;
    writeFileSync(file, JSON.stringify(config));
    assert.equal(lab.run(["create", "--bundle", lab.bundle, "seccomp-exec"]).status, 0);
    try {
      assert.equal(lab.run(["start", "seccomp-exec"]).status, 0);
      const r = lab.run(["exec", "seccomp-exec", "--", "sh", "-c", `${SECCOMP_PROBE}; echo done`]);
      assert.equal(r.status, 0, r.stderr);
      const f = facts(r.stdout);
      assert.deepEqual(f.get("mkdir"), ["refused"]);
      assert.deepEqual(f.get("Seccomp"), ["2"]);
    } finally {
      lab.run(["delete", "--force", "seccomp-exec"]);
    }
  });

  test("rro makes a bind read-only in its submounts too, where ro leaves them writable", async () => {
    const source = join(lab.dir, "rro-source");
    mkdirSync(join(source, "sub"), { recursive: true });
    // A submount in the bind's source, mounted in the host's namespace for the length of the test.
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "rro-test", join(source, "sub")]);
    try {
      const script = [
        "touch /data/top 2>/dev/null && echo top=writable || echo top=readonly",
        "touch /data/sub/file 2>/dev/null && echo sub=writable || echo sub=readonly",
      ].join("; ");
      const mount = (option: string): Omit<BundleOptions, "args"> => ({
        extraMounts: [{ destination: "/data", type: "bind", source, options: ["rbind", option] }],
      });
      const rro = await runProbe(lab, "rro", mount("rro"), script);
      assert.deepEqual(rro.get("top"), ["readonly"]);
      assert.deepEqual(rro.get("sub"), ["readonly"], "rro reaches the submount");
      const ro = await runProbe(lab, "ro", mount("ro"), script);
      assert.deepEqual(ro.get("top"), ["readonly"]);
      assert.deepEqual(ro.get("sub"), ["writable"], "plain ro stops at the top mount");
    } finally {
      execFileSync("umount", [join(source, "sub")]);
    }
  });
});

if (reason) test("runtime security", { skip: reason }, () => undefined);
