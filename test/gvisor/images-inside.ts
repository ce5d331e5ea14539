/**
 * Runs inside a runsc sandbox (test/gvisor/images.test.ts starts it): a node-shaped containerd
 * with the native snapshotter, `sandkube images build` and `import` into it, and `ctr run` of what
 * was imported with the lab's runc. Prints one JSON object of what it saw as its last line.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { labBinary, labBinDir } from "../../lab/paths.js";
import { runCommand, type CommandResult } from "../../src/common/exec.js";
import { busyboxRootfs } from "../../src/images/busybox.js";
import { buildPauseImage } from "../../src/images/pause.js";
import { nodeLayout } from "../../src/node/layout.js";
import { SANDBOX_IMAGE } from "../../src/plan/cluster-config.js";

const CLI = join(dirname(fileURLToPath(import.meta.url)), "../../src/cli/main.js");
const root = "/tmp/sk-images";
const layout = nodeLayout(join(root, "node"));
const seen: Record<string, unknown> = {};

function summary(r: CommandResult): { exitCode: number; stdout: string; stderr: string } {
  return {
    exitCode: r.exitCode,
    stdout: r.stdout,
    stderr: r.stderr.trim().split("\n").slice(-3).join(" | "),
  };
}

// It mounts over /sys/fs/cgroup: harmless in a sandbox's own mount namespace, not on a host.
if (process.env["SANDKUBE_IN_GVISOR_LAB"] !== "1") {
  process.stderr.write("images-inside: runs only inside the gVisor lab (npm run lab:gvisor)\n");
  process.exit(2);
}

// gVisor mounts no cgroup file system (docs/gvisor-lab.md), and runc needs the v1 controllers.
await runCommand(["mount", "-t", "tmpfs", "cgroup", "/sys/fs/cgroup"]);
for (const controller of [
  "cpu",
  "cpuacct",
  "cpuset",
  "memory",
  "devices",
  "freezer",
  "blkio",
  "pids",
]) {
  mkdirSync(`/sys/fs/cgroup/${controller}`, { recursive: true });
  await runCommand([
    "mount",
    "-t",
    "cgroup",
    "-o",
    controller,
    "cgroup",
    `/sys/fs/cgroup/${controller}`,
  ]);
}

mkdirSync(dirname(layout.containerdConfig), { recursive: true });
mkdirSync(layout.cniConfDir, { recursive: true });
writeFileSync(
  layout.containerdConfig,
  `version = 3
root = "${layout.containerdRoot}"
state = "${layout.containerdState}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"]
[grpc]
  address = "${layout.containerdSocket}"
`,
);
writeFileSync(
  layout.stateFile,
  JSON.stringify({
    schema: "sandkube.node/v1",
    config: { snapshotter: "native", binaries: { ctr: labBinary("ctr") } },
  }),
);
const log = openSync(join(root, "containerd.log"), "w");
const containerd = spawn(labBinary("containerd"), ["--config", layout.containerdConfig], {
  stdio: ["ignore", log, log],
  env: { ...process.env, PATH: `${labBinDir()}:${process.env["PATH"] ?? ""}` },
});
closeSync(log);
const ctr = (args: readonly string[]): Promise<CommandResult> =>
  runCommand(
    [labBinary("ctr"), "--address", layout.containerdSocket, "--namespace", "k8s.io", ...args],
    {
      timeoutMs: 120_000,
    },
  );
const sandkube = (args: readonly string[]): Promise<CommandResult> =>
  runCommand([process.execPath, CLI, "images", ...args, "--data-dir", layout.dataDir], {
    timeoutMs: 180_000,
  });

try {
  for (
    let i = 0;
    i < 300 && !(existsSync(layout.containerdSocket) && (await ctr(["version"])).exitCode === 0);
    i++
  )
    await new Promise((r) => setTimeout(r, 100));
  const rootfs = join(root, "busybox");
  await busyboxRootfs(rootfs);
  seen["build"] = summary(
    await sandkube(["build", "--from-dir", rootfs, "--name", "busybox:sk", "--json"]),
  );
  const pause = join(root, "pause.tar");
  await buildPauseImage(pause);
  seen["import"] = summary(await sandkube(["import", pause]));
  seen["ls"] = summary(await sandkube(["ls", "--json"]));
  const runc = ["--snapshotter", "native", "--runc-binary", labBinary("runc")];
  seen["run"] = summary(
    await ctr([
      "run",
      "--rm",
      ...runc,
      "--user",
      "1000",
      "docker.io/library/busybox:sk",
      "sk-bb",
      "/bin/sh",
      "-c",
      "echo hello-from-gvisor; id -un",
    ]),
  );
  const pauseRun = ctr(["run", "--rm", ...runc, SANDBOX_IMAGE, "sk-pause"]);
  for (
    let i = 0;
    i < 300 && !/sk-pause\s+\d+\s+RUNNING/.test((await ctr(["task", "ls"])).stdout);
    i++
  )
    await new Promise((r) => setTimeout(r, 100));
  seen["pauseKill"] = summary(await ctr(["task", "kill", "-s", "SIGTERM", "sk-pause"]));
  seen["pause"] = summary(await pauseRun);
} finally {
  containerd.kill("SIGTERM");
  await new Promise((r) => containerd.once("exit", r));
  process.stdout.write(`\n${JSON.stringify(seen)}\n`);
}
