import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { repoRootOfScript } from "../../lab/gvisor-run.js";
import { inGvisor, requireLab } from "./lab.js";

/**
 * sandkube-proxy's host tests, run unchanged inside real runsc (new), where kube-proxy cannot
 * program a Service (docs/service-proxy.md): the data plane on gVisor's netstack, the cluster IPs
 * on a veth inside a network namespace, and the full path from a real kube-apiserver. Every
 * socket stays inside the sandbox.
 */

const FILES = [
  "dist/test/host/proxy-dataplane.test.js",
  "dist/test/host/proxy-addresses.test.js",
  "dist/test/host/proxy-apiserver.test.js",
];

test("runsc (new): sandkube-proxy's data plane, addresses and full path pass inside gVisor", async (t) => {
  if (!(await requireLab(t, ["runsc", "etcd", "kube-apiserver"]))) return;
  const root = repoRootOfScript();
  const absent = FILES.map((file) => join(root, file)).find((file) => !existsSync(file));
  if (absent !== undefined) {
    t.skip(`SKIPPED: ${absent} is missing; run npm run build`);
    return;
  }
  const result = await inGvisor("new", ["node", "--test", ...FILES], undefined, 600);
  const summary = (key: string) =>
    Number(new RegExp(`^# ${key} (\\d+)$`, "m").exec(result.stdout)?.[1]);
  assert.equal(result.exitCode, 0, `${result.stdout.slice(-4000)}\n${result.stderr.slice(-2000)}`);
  // A skipped test inside the sandbox would be a silent pass here: every one must have run.
  assert.equal(summary("fail"), 0);
  assert.equal(summary("skipped"), 0, result.stdout.slice(-4000));
  assert.equal(summary("pass"), 7, result.stdout.slice(-4000));
});
