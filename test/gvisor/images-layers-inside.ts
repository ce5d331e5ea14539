/**
 * Runs inside a runsc sandbox (test/gvisor/images-layers.test.ts starts it): the 3-layer image of
 * test/host/images-layers-fixture.ts, its upper layers written through gVisor's own overlay,
 * built by `sandkube images build` into a node-shaped containerd with the native snapshotter,
 * read back through `ctr images mount` and `ctr run`, then exported as a docker-archive and
 * imported again. Prints one JSON object of what it saw as its last line.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { labBinary, labBinDir } from "../../lab/paths.js";
import { runCommand, type CommandResult } from "../../src/common/exec.js";
import { readOverlayOpaqueDirectories } from "../../src/images/layers.js";
import { nodeLayout } from "../../src/node/layout.js";
import { changedPart, makeWhiteoutLayers } from "../host/images-layers-fixture.js";

const CLI = join(dirname(fileURLToPath(import.meta.url)), "../../src/cli/main.js");
const IMAGE = "docker.io/library/layered:sk";
const root = "/tmp/sk-layers";
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
  process.stderr.write(
    "images-layers-inside: runs only inside the gVisor lab (npm run lab:gvisor)\n",
  );
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

/** The image's tree under data, etc/keep and opt, through a read-only native mount. */
async function mountedTree(step: string): Promise<void> {
  const target = join(root, `mnt-${step}`);
  mkdirSync(target, { recursive: true });
  const mount = await ctr(["images", "mount", "--snapshotter", "native", IMAGE, target]);
  seen[`${step}Mount`] = summary(mount);
  if (mount.exitCode !== 0) return;
  try {
    seen[`${step}Tree`] = changedPart(target);
  } finally {
    seen[`${step}Unmount`] = summary(await ctr(["images", "unmount", "--rm", target]));
  }
}

try {
  for (
    let i = 0;
    i < 300 && !(existsSync(layout.containerdSocket) && (await ctr(["version"])).exitCode === 0);
    i++
  )
    await new Promise((r) => setTimeout(r, 100));
  const layers = await makeWhiteoutLayers(root);
  const whiteout = lstatSync(join(layers.top, "data/a"));
  seen["whiteoutDevice"] = whiteout.isCharacterDevice() && whiteout.rdev === 0;
  seen["opaqueDirs"] = [
    ...(await readOverlayOpaqueDirectories(layers.middle, ["", "opt", "opt/x"])),
  ];
  seen["build"] = summary(
    await sandkube([
      "build",
      ...["--from-dir", layers.base, "--from-dir", layers.middle, "--from-dir", layers.top],
      ...["--name", "layered:sk", "--output", join(root, "layered.tar"), "--json"],
    ]),
  );
  seen["ls"] = summary(await sandkube(["ls", "--json"]));
  await mountedTree("built");
  seen["run"] = summary(
    await ctr([
      "run",
      "--rm",
      "--snapshotter",
      "native",
      "--runc-binary",
      labBinary("runc"),
      IMAGE,
      "sk-layers",
      "/bin/sh",
      "-c",
      "ls -A /data /opt/x; cat /etc/keep",
    ]),
  );
  const withOci = join(root, "exported-oci.tar");
  const exported = join(root, "exported.tar");
  // --local: through the transfer API the daemon streams the archive to ctr, which closes the file
  // when Transfer returns (cmd/ctr/commands/images/export.go); inside gVisor the archive then read
  // back truncated about one run in four ("Deleting non-header from archive" in CI 2026-12-07,
  // "Unexpected EOF in archive" here). Written client-side, it is whole before ctr exits.
  seen["export"] = summary(await ctr(["images", "export", "--local", withOci, IMAGE]));
  // The export without its OCI members, written anew rather than with `tar --delete` in place.
  const members = join(root, "exported-members");
  await mkdir(members, { recursive: true });
  const extracted = summary(await runCommand(["tar", "-xf", withOci, "-C", members]));
  seen["stripOci"] = extracted;
  await rm(join(members, "oci-layout"), { force: true });
  await rm(join(members, "index.json"), { force: true });
  if (extracted.exitCode === 0) {
    seen["stripOci"] = summary(
      await runCommand(["tar", "-cf", exported, "-C", members, ...(await readdir(members))]),
    );
  }
  seen["rm"] = summary(await ctr(["images", "rm", "--sync", IMAGE]));
  seen["snapshotsAfterRm"] = summary(await ctr(["snapshots", "--snapshotter", "native", "ls"]));
  seen["reimport"] = summary(await sandkube(["import", exported, "--json"]));
  await mountedTree("reimported");
} finally {
  containerd.kill("SIGTERM");
  await new Promise((r) => containerd.once("exit", r));
  process.stdout.write(`\n${JSON.stringify(seen)}\n`);
}
