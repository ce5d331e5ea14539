import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { access } from "node:fs/promises";
import { constants } from "node:fs";
import { join } from "node:path";
import { observed, type Observations } from "../../lab/gvisor-observations.js";
import { repoRootOfScript } from "../../lab/gvisor-run.js";
import { requireLab, scenario } from "./lab.js";

/**
 * lab/gvisor-scenarios/sandkube-runtime.sh inside real runsc: containerd 2.4 with the `sandkube`
 * handler (BinaryName = the compiled sandkube-runtime) and the `runc` handler (stock runc 1.4),
 * driven by crictl. What each step printed is asserted as observed; docs/gvisor-blockers.md
 * ("sandkube-runtime under containerd in gVisor") quotes the same records.
 */

const STACK = ["containerd", "containerd-shim-runc-v2", "ctr", "crictl", "runc"];
const RUNTIME = join(repoRootOfScript(), "dist/bin/sandkube-runtime");
const INIT = join(repoRootOfScript(), "dist/bin/sandkube-init");

async function requireRuntime(t: TestContext): Promise<boolean> {
  try {
    await access(RUNTIME, constants.X_OK);
    await access(INIT, constants.X_OK);
    return true;
  } catch {
    const reason = `SKIPPED: ${RUNTIME} or ${INIT} is missing; run npm run build:runtime`;
    process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
    t.skip(reason);
    return false;
  }
}

function value(obs: Observations, key: string): string {
  const v = observed(obs, key);
  assert.notEqual(v, undefined, `the scenario recorded no "${key}"`);
  return v as string;
}

/** The hostNetwork pod's whole lifecycle, which both handlers pass on runsc new. */
function assertHostPodRuns(obs: Observations, handler: string): void {
  const k = `${handler}:host`;
  for (const step of ["runp", "create", "start", "rm", "stopp", "rmp"])
    assert.equal(value(obs, `${k}:${step}`), "ok", `${k}:${step}`);
  assert.equal(value(obs, `${k}:leftover`), "0", "an exec'd background process outlived rm");
  assert.equal(value(obs, `${k}:state`), "CONTAINER_RUNNING");
  // The command is pid 1 of its own pid namespace and sees only the sandbox's loopback.
  // runsc old lists lo's addresses in either order.
  const logs = value(obs, `${k}:logs`);
  assert.match(logs, new RegExp(`^hello-from-${handler} uid=0 pid=1 (addr=lo/\\S+ )+started $`));
  assert.ok(logs.includes(" addr=lo/127.0.0.1/8 "), logs);
  // crictl prints the process's output and reports its status 3 in its own error (exit 1).
  assert.match(
    value(obs, `${k}:exec`),
    /^status=1 exec-out exec-uid=0 execing command in container [0-9a-f]{64}: command terminated with exit code 3 $/,
  );
  assert.match(value(obs, `${k}:exec-it-no-tty`), /input is not a terminal/);
  assert.match(
    value(obs, `${k}:exec-it`),
    /^status=1 \/dev\/pts\/\d+ it-out .*command terminated with exit code 4 $/,
  );
  // /proc/sys is one of containerd's readonlyPaths: read-only to the exec'd process as well.
  assert.match(value(obs, `${k}:exec-security`), /procsys=read-only/);
  const stopped = JSON.parse(value(obs, `${k}:stop`)) as { state: string; exitCode: number };
  assert.equal(stopped.state, "CONTAINER_EXITED");
  assert.ok([137, 143].includes(stopped.exitCode), `exit code ${stopped.exitCode}`);
}

test("runsc (new): crictl runs a hostNetwork pod with sandkube-runtime and with runc: logs, exec, exec -it, stop, rmp", async (t) => {
  if (!(await requireLab(t, ["runsc", ...STACK])) || !(await requireRuntime(t))) return;
  const { result, observations: obs } = await scenario("new", "sandkube-runtime");
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(value(obs, "kernel.release"), "4.19.0-gvisor");
  assert.equal(value(obs, "import:busybox"), "ok");
  assert.equal(value(obs, "import:pause"), "ok");
  for (const handler of ["sandkube", "runc"]) {
    assertHostPodRuns(obs, handler);
    assert.match(value(obs, `${handler}:host:exec-security`), /^CapBnd:\s+0+a80425fb /);
    // Pods with their own network namespace stop at CNI, before any runtime is called (B9).
    assert.match(
      value(obs, `${handler}:pod-bridge-no-hairpin:runp`),
      /plugin type=\\"bridge\\" failed \(add\): failed to setup hairpin mode for veth[0-9a-f]+: operation not supported/,
    );
    assert.match(
      value(obs, `${handler}:pod-loopback-only:runp`),
      /failed to setup network for sandbox \\"[0-9a-f]{64}\\": failed to find network info for sandbox/,
    );
    assert.match(
      value(obs, `${handler}:pod-ptp:runp`),
      /^skipped: .*ptp not built$|plugin type=\\"ptp\\" failed \(add\): failed to add route \{Ifindex: 2 Dst: 10\.89\.0\.1\/32 .*operation not supported/,
    );
  }
});

test("runsc-old: images unpack only by hand; then sandkube-runtime runs the hostNetwork pod, with logs, exec and exec -it, and runc stops at the devices cgroup", async (t) => {
  if (!(await requireLab(t, ["runsc-old", ...STACK])) || !(await requireRuntime(t))) return;
  const { result, observations: obs } = await scenario("old", "sandkube-runtime");
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(value(obs, "kernel.release"), "4.4.0");
  assert.equal(value(obs, "plugin:cri"), "ok", "CRI loads with unprivileged ports/icmp off (B3)");
  for (const image of ["busybox", "pause"]) {
    // B5: the overlayfs snapshotter hands out the first layer as an rbind (MS_BIND|MS_REC = 20480).
    assert.match(
      value(obs, `import:${image}`),
      /failed to extract layer .* to overlayfs .*fstype: bind, flags: 20480, data: "", err: invalid argument/,
    );
    assert.equal(value(obs, `import-no-unpack:${image}`), "ok");
    assert.equal(value(obs, `preunpack:${image}`), "ok");
  }
  // Past the unpack, runsc old has no remount, no setns and no mount namespaces; sandkube-runtime
  // makes read-only mounts as overlay views, forks exec'd processes from an agent inside the
  // container and the app container from the sandbox's keeper (docs/runtime.md, "Kernels without
  // setns or mount namespaces").
  assertHostPodRuns(obs, "sandkube");
  // The root is only a chroot there, so CAP_SYS_CHROOT (bit 18) is withheld: containerd's default
  // bounding set 0xa80425fb without it.
  assert.match(value(obs, "sandkube:host:exec-security"), /^CapBnd:\s+0+a80025fb /);
  assert.match(
    value(obs, "runc:host:runp"),
    /runc create failed: mountpoint for devices not found/,
  );
  for (const handler of ["sandkube", "runc"])
    assert.match(
      value(obs, `${handler}:pod-loopback-only:runp`),
      /plugin type=\\"loopback\\" failed \(add\): failed to Statfs \\"\/var\/run\/netns\/cni-[0-9a-f-]+\\": function not implemented/,
    );
});
