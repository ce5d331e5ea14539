import assert from "node:assert/strict";
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
  "echo done",
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

async function runProbe(
  lab: Lab,
  id: string,
  o: Omit<BundleOptions, "args">,
): Promise<Map<string, string[]>> {
  lab.writeConfig({ ...o, args: ["sh", "-c", PROBE] });
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
});

if (reason) test("runtime security", { skip: reason }, () => undefined);
