import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { labBinary } from "../../lab/paths.js";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { scratchContainerdConfig } from "../../lab/scratch-containerd.js";
import { HELPER, makeLab, REPO, skipReason, waitFor, type Lab } from "./runtime-support.js";

const RUNTIME = process.env["SANDKUBE_RUNTIME"] ?? join(REPO, "dist/bin/sandkube-runtime");
const IMAGE = "docker.io/sandkube/busybox:test";
const reason =
  skipReason() ??
  (["containerd", "containerd-shim-runc-v2", "crictl", "ctr"]
    .map((b) => labBinary(b))
    .find((b) => !existsSync(b)) !== undefined
    ? "SKIPPED: containerd, shim, ctr or crictl missing from the lab; run npm run lab:build"
    : !existsSync(RUNTIME) || !existsSync(join(REPO, "dist/bin/sandkube-init"))
      ? `SKIPPED: ${RUNTIME} (with sandkube-init next to it) missing; run npm run build:runtime`
      : undefined);

/** An OCI image layout holding the busybox rootfs, so no registry is needed (this VM reaches none). */
async function imageTarball(lab: Lab): Promise<string> {
  const dir = join(lab.dir, "image");
  const blobs = join(dir, "blobs/sha256");
  mkdirSync(blobs, { recursive: true });
  const layerTar = join(lab.dir, "layer.tar");
  ensureSuccess(await runCommand(["tar", "-C", join(lab.bundle, "rootfs"), "-cf", layerTar, "."]));
  const put = (data: Buffer): { digest: string; size: number } => {
    const hex = createHash("sha256").update(data).digest("hex");
    writeFileSync(join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layer = put(readFileSync(layerTar));
  const config = put(
    Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: { Cmd: ["/bin/sleep", "2147483647"], Env: ["PATH=/bin"] },
        rootfs: { type: "layers", diff_ids: [layer.digest] },
      }),
    ),
  );
  const manifest = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
      }),
    ),
  );
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: { "io.containerd.image.name": IMAGE },
        },
      ],
    }),
  );
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const tarball = join(lab.dir, "image.tar");
  ensureSuccess(await runCommand(["tar", "-C", dir, "-cf", tarball, "."]));
  return tarball;
}

const BRIDGE = "skrtbr0";
/** A bridge on a private subnet; no traffic leaves the host, and the bridge is removed afterwards. */
const CNI_CONFIG = {
  cniVersion: "1.0.0",
  name: "sandkube-runtime-test",
  plugins: [
    {
      type: "bridge",
      bridge: BRIDGE,
      isGateway: true,
      ipMasq: false,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.231.77.0/24" }]] },
    },
  ],
};

/**
 * The node's own renderer, fed with this machine's probed facts as `up` feeds it; the `sandkube`
 * handler is the one under test, `runc` (kubelet's default handler) is unused here.
 */
async function containerdConfig(dir: string): Promise<string> {
  return scratchContainerdConfig(dir, IMAGE, { extraRuntimes: { sandkube: RUNTIME } });
}

describe("sandkube-runtime under containerd 2.x and crictl (host kernel)", { skip: reason }, () => {
  let lab: Lab;
  let containerd: ChildProcess | undefined;
  let crictl: (...args: string[]) => Promise<string>;
  const podIds: string[] = [];

  before(async () => {
    lab = makeLab();
    const dir = join(lab.dir, "containerd");
    mkdirSync(join(dir, "cni.d"), { recursive: true });
    writeFileSync(join(dir, "cni.d/10-sandkube-test.conflist"), JSON.stringify(CNI_CONFIG));
    writeFileSync(join(dir, "config.toml"), await containerdConfig(dir));
    containerd = spawn(labBinary("containerd"), ["--config", join(dir, "config.toml")], {
      stdio: ["ignore", "ignore", "ignore"],
      env: {
        ...process.env,
        PATH: `${join(labBinary("containerd"), "..")}:${process.env["PATH"] ?? ""}`,
        SANDKUBE_INIT: HELPER,
      },
    });
    const sock = join(dir, "containerd.sock");
    await waitFor(() => existsSync(sock), "containerd socket", 30_000);
    const endpoint = `unix://${sock}`;
    crictl = async (...args) => {
      const r = await runCommand(
        [
          labBinary("crictl"),
          "--runtime-endpoint",
          endpoint,
          "--image-endpoint",
          endpoint,
          ...args,
        ],
        { timeoutMs: 60_000 },
      );
      return ensureSuccess(r).stdout.trim();
    };
    const tarball = await imageTarball(lab);
    ensureSuccess(
      await runCommand(
        [labBinary("ctr"), "-a", sock, "-n", "k8s.io", "images", "import", tarball],
        { timeoutMs: 60_000 },
      ),
    );
  });

  after(async () => {
    for (const pod of podIds)
      await runCommand([
        labBinary("crictl"),
        "--runtime-endpoint",
        `unix://${join(lab.dir, "containerd/containerd.sock")}`,
        "rmp",
        "-f",
        pod,
      ]);
    if (containerd?.pid !== undefined) process.kill(containerd.pid, "SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    await runCommand(["umount", "-R", join(lab.dir, "containerd/root")]);
    await runCommand(["ip", "link", "del", BRIDGE]);
    lab?.cleanup();
  });

  test("crictl runp, create, start, logs, exec, stop and rmp work with the sandkube handler", async () => {
    const podConfig = join(lab.dir, "pod.json");
    const ctrConfig = join(lab.dir, "ctr.json");
    // Host network: this test exercises the runtime, and the pod's network is CNI's business.
    writeFileSync(
      podConfig,
      JSON.stringify({
        metadata: { name: "skpod", namespace: "default", uid: `skpod-${process.pid}`, attempt: 0 },
        log_directory: join(lab.dir, "pod-logs"),
        linux: { security_context: { namespace_options: { network: 2 } } },
      }),
    );
    writeFileSync(
      ctrConfig,
      JSON.stringify({
        metadata: { name: "app" },
        image: { image: IMAGE },
        command: [
          "/bin/sh",
          "-c",
          "echo hello-from-sandkube; id -u; grep NoNewPrivs /proc/self/status; echo pid1=$(head -c 7 /proc/1/cmdline); exec sleep 600",
        ],
        log_path: "app.log",
        // pid CONTAINER (1), as kubelet sends it; crictl's default 0 would share the sandbox's.
        linux: {
          security_context: {
            run_as_user: { value: 1000 },
            no_new_privs: true,
            namespace_options: { pid: 1 },
          },
        },
      }),
    );
    const pod = await crictl("runp", "--runtime", "sandkube", podConfig);
    podIds.push(pod);
    assert.match(pod, /^[0-9a-f]{64}$/);
    const cid = await crictl("create", pod, ctrConfig, podConfig);
    await crictl("start", cid);
    await waitFor(
      () =>
        existsSync(join(lab.dir, "pod-logs/app.log")) &&
        readFileSync(join(lab.dir, "pod-logs/app.log"), "utf8").includes("pid1="),
      "container log",
    );
    const logs = await crictl("logs", cid);
    assert.match(
      logs,
      /hello-from-sandkube\n1000\nNoNewPrivs:\s+1\npid1=\/bin\/sh/,
      "own pid namespace: the command is pid 1",
    );
    assert.equal(await crictl("exec", cid, "sh", "-c", "echo exec-ok; id -u"), "exec-ok\n1000");
    const inspect = JSON.parse(await crictl("inspect", cid)) as { status: { state: string } };
    assert.equal(inspect.status.state, "CONTAINER_RUNNING");
    await crictl("stop", "-t", "2", cid);
    const stopped = JSON.parse(await crictl("inspect", cid)) as {
      status: { state: string; exitCode: number };
    };
    assert.equal(stopped.status.state, "CONTAINER_EXITED");
    assert.ok(
      [137, 143].includes(stopped.status.exitCode),
      `exit code ${stopped.status.exitCode} is SIGTERM's or SIGKILL's`,
    );
    await crictl("rm", cid);
    await crictl("stopp", pod);
    await crictl("rmp", pod);
    podIds.pop();
    assert.equal(await crictl("pods", "-q"), "");
  });

  test("a pod with a CNI network namespace: the app joins it by path and sees the pod's sysctls", async () => {
    const podConfig = join(lab.dir, "netpod.json");
    const ctrConfig = join(lab.dir, "netctr.json");
    writeFileSync(
      podConfig,
      JSON.stringify({
        metadata: {
          name: "netpod",
          namespace: "default",
          uid: `netpod-${process.pid}`,
          attempt: 0,
        },
        log_directory: join(lab.dir, "netpod-logs"),
        hostname: "netpod",
      }),
    );
    writeFileSync(
      ctrConfig,
      JSON.stringify({
        metadata: { name: "net" },
        image: { image: IMAGE },
        command: [
          "/bin/sh",
          "-c",
          "echo port_start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); grep -o eth0 /proc/net/dev; echo hostname=$(hostname); exec sleep 600",
        ],
        log_path: "net.log",
        linux: { security_context: { namespace_options: { pid: 1 } } },
      }),
    );
    const pod = await crictl("runp", "--runtime", "sandkube", podConfig);
    podIds.push(pod);
    const status = JSON.parse(await crictl("inspectp", pod)) as {
      status: { network: { ip: string } };
    };
    assert.match(status.status.network.ip, /^10\.231\.77\.\d+$/);
    const cid = await crictl("create", pod, ctrConfig, podConfig);
    await crictl("start", cid);
    const log = join(lab.dir, "netpod-logs/net.log");
    await waitFor(
      () => existsSync(log) && readFileSync(log, "utf8").includes("hostname="),
      "net container log",
    );
    const logs = await crictl("logs", cid);
    // containerd 2.x puts net.ipv4.ip_unprivileged_port_start=0 in the sandbox's spec.
    assert.match(logs, /port_start=0\neth0\nhostname=netpod$/);
    await crictl("stop", "-t", "1", cid);
    await crictl("rm", cid);
    await crictl("stopp", pod);
    await crictl("rmp", pod);
    podIds.pop();
  });
});

if (reason) test("runtime under containerd", { skip: reason }, () => undefined);
