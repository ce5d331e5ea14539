import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { repoRootOfScript } from "../../lab/gvisor-run.js";
import { inGvisor, requireLab } from "./lab.js";

/**
 * The host tier's registry test (test/host/registry-pull.test.ts), run as it is inside runsc
 * (new): docker-registry with TLS and htpasswd on the sandbox's loopback, a containerd configured
 * by sandkube's renderers, push and pull through `sandkube images`, CRI pulls with the
 * credentials kubelet sends, a wrong password, a missing CA, and a pull through an HTTP CONNECT
 * proxy named only by HTTPS_PROXY. Its own skips would show as skipped here and fail this test.
 */
test("runsc (new): pulls from a TLS + htpasswd registry, directly and through a proxy", async (t) => {
  if (!(await requireLab(t, ["runsc", "containerd", "containerd-shim-runc-v2", "ctr", "crictl"])))
    return;
  const file = join(repoRootOfScript(), "dist/test/host/registry-pull.test.js");
  const result = await inGvisor("new", [process.execPath, "--test", file]);
  const tap = result.stdout;
  assert.equal(result.exitCode, 0, `${tap.slice(-4000)}\n${result.stderr.slice(-2000)}`);
  assert.match(tap, /^# pass 6$/m, tap.slice(-4000));
  assert.match(tap, /^# fail 0$/m);
  assert.match(tap, /^# skipped 0$/m);
  for (const name of [
    "pull with the node's own login",
    "a wrong password is refused with 401 Unauthorized",
    "without the CA in hosts.toml the pull fails on the certificate",
    "a registry name only the proxy resolves is reached through HTTPS_PROXY",
  ]) {
    assert.ok(new RegExp(`^\\s*ok \\d+ - ${name}`, "m").test(tap), name);
  }
});
