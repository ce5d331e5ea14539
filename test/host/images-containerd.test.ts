import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { labBinary, labBinDir } from "../../lab/paths.js";
import { runCommand, type CommandResult } from "../../src/common/exec.js";
import { busyboxRootfs, DEBIAN_BUSYBOX } from "../../src/images/busybox.js";
import { isStaticElf } from "../../src/images/elf.js";
import { buildPauseImage, PAUSE_BINARY } from "../../src/images/pause.js";
import { directoryEntries, tarStream, type TarEntry } from "../../src/images/tar-writer.js";
import { nodeLayout } from "../../src/node/layout.js";
import { SANDBOX_IMAGE } from "../../src/plan/cluster-config.js";

/**
 * `sandkube images` against a real containerd 2.4 from the lab, on the host kernel: the CLI builds
 * and imports into a throwaway containerd whose socket sits where a node's would, and ctr runs
 * what was imported with the lab's runc.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const CLI = join(REPO, "dist/src/cli/main.js");
const STACK = ["containerd", "containerd-shim-runc-v2", "ctr", "runc", "crictl"];
const SNAPSHOTTER = "native";

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "SKIPPED: images host tests need root (containerd, mounts)";
  const missing = STACK.map((b) => labBinary(b)).filter((b) => !existsSync(b));
  if (missing.length > 0)
    return `SKIPPED: lab not built, missing ${missing.join(", ")}; run npm run lab:build`;
  if (!existsSync(PAUSE_BINARY))
    return `SKIPPED: ${PAUSE_BINARY} missing; run npm run build:native`;
  if (!(await isStaticElf(DEBIAN_BUSYBOX).catch(() => false)))
    return "SKIPPED: no static busybox; apt-get install -y busybox-static";
  return undefined;
}

const reason = await skipReason();
if (reason !== undefined) process.stderr.write(`\n*** images-containerd: ${reason}\n`);

/**
 * The node's containerd as `up` configures it, cut to what images need: the CRI plugin (so names
 * are checked against its lookups) with the native snapshotter and the pinned sandbox image. No
 * unpack_config for the transfer service: `images import` must not depend on it.
 */
function containerdConfig(layout: ReturnType<typeof nodeLayout>): string {
  return `version = 3
root = "${layout.containerdRoot}"
state = "${layout.containerdState}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]
[grpc]
  address = "${layout.containerdSocket}"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "${SNAPSHOTTER}"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "${SANDBOX_IMAGE}"
[plugins."io.containerd.cri.v1.runtime".cni]
  conf_dir = "${layout.cniConfDir}"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`;
}

async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A docker-archive (docker save's format): manifest.json, a config and an uncompressed layer tar. */
async function writeDockerArchive(rootfs: string, repoTag: string, output: string): Promise<void> {
  const layerChunks: Buffer[] = [];
  for await (const chunk of tarStream(
    directoryEntries(rootfs, { mtime: new Date(0), owner: "root" }),
  ))
    layerChunks.push(chunk);
  const layer = Buffer.concat(layerChunks);
  const diffId = `sha256:${createHash("sha256").update(layer).digest("hex")}`;
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/bin/sh", "-c", "echo from-docker-archive"], Env: ["PATH=/bin"] },
      rootfs: { type: "layers", diff_ids: [diffId] },
    }),
  );
  const configName = `${createHash("sha256").update(config).digest("hex")}.json`;
  const manifest = Buffer.from(
    JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: ["layer/layer.tar"] }]),
  );
  const file = (path: string, content: Buffer): TarEntry => ({
    path,
    type: "File",
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: new Date(0),
    size: content.length,
    content,
  });
  const chunks: Buffer[] = [];
  for await (const chunk of tarStream([
    file(configName, config),
    { path: "layer", type: "Directory", mode: 0o755, uid: 0, gid: 0, mtime: new Date(0), size: 0 },
    file("layer/layer.tar", layer),
    file("manifest.json", manifest),
  ]))
    chunks.push(chunk);
  writeFileSync(output, Buffer.concat(chunks));
}

describe("sandkube images with a real containerd (host kernel)", { skip: reason }, () => {
  let scratch: string;
  let layout: ReturnType<typeof nodeLayout>;
  let containerd: ChildProcess | undefined;
  const ctr = (args: readonly string[], timeoutMs = 60_000): Promise<CommandResult> =>
    runCommand(
      [labBinary("ctr"), "--address", layout.containerdSocket, "--namespace", "k8s.io", ...args],
      {
        timeoutMs,
      },
    );
  const sandkube = (args: readonly string[]): Promise<CommandResult> =>
    runCommand([process.execPath, CLI, "images", ...args, "--data-dir", layout.dataDir], {
      timeoutMs: 120_000,
    });
  let builtDigest = "";

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), "sandkube-images-host-"));
    layout = nodeLayout(join(scratch, "node"));
    mkdirSync(dirname(layout.containerdConfig), { recursive: true });
    mkdirSync(layout.cniConfDir, { recursive: true });
    writeFileSync(layout.containerdConfig, containerdConfig(layout));
    // Stands in for the node record `up` writes: `images` reads only the snapshotter and ctr.
    writeFileSync(
      layout.stateFile,
      JSON.stringify({
        schema: "sandkube.node/v1",
        config: { snapshotter: SNAPSHOTTER, binaries: { ctr: labBinary("ctr") } },
      }),
    );
    const log = openSync(join(scratch, "containerd.log"), "w");
    containerd = spawn(labBinary("containerd"), ["--config", layout.containerdConfig], {
      stdio: ["ignore", log, log],
      env: { ...process.env, PATH: `${labBinDir()}:${process.env["PATH"] ?? ""}` },
    });
    closeSync(log);
    await waitFor(
      async () => existsSync(layout.containerdSocket) && (await ctr(["version"])).exitCode === 0,
      "containerd",
    );
  });

  after(async () => {
    if (layout !== undefined) {
      for (const id of ["sk-busybox", "sk-docker", "sk-pause"]) {
        await ctr(["task", "kill", "-s", "SIGKILL", id]);
        await ctr(["task", "delete", "--force", id]);
        await ctr(["container", "delete", id]);
      }
    }
    if (containerd?.pid !== undefined && containerd.exitCode === null) {
      const exited = new Promise((r) => containerd?.once("exit", r));
      containerd.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (containerd.exitCode === null) containerd.kill("SIGKILL");
    }
    if (scratch !== undefined) {
      const mounts = readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .map((line) => line.split(" ")[4] ?? "")
        .filter((point) => point.startsWith(scratch))
        .reverse();
      for (const point of mounts) await runCommand(["umount", "-l", point]);
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  test("build --from-dir makes a busybox image and imports it into the running node", async () => {
    const rootfs = join(scratch, "busybox");
    await busyboxRootfs(rootfs);
    const result = await sandkube([
      "build",
      "--from-dir",
      rootfs,
      "--name",
      "busybox:sk",
      "--cmd",
      "/bin/sh",
      "--json",
    ]);
    assert.equal(result.exitCode, 0, result.stderr);
    const built = JSON.parse(result.stdout) as {
      name: string;
      digest: string;
      output: string;
      imported: boolean;
    };
    assert.equal(built.name, "docker.io/library/busybox:sk");
    assert.equal(built.imported, true);
    assert.equal(dirname(built.output), layout.imageDir);
    builtDigest = built.digest;
  });

  test("import takes the pause image (OCI) and a docker-archive tarball", async () => {
    const pause = join(scratch, "pause.tar");
    await buildPauseImage(pause);
    const oci = await sandkube(["import", pause]);
    assert.equal(oci.exitCode, 0, oci.stderr);
    assert.equal(oci.stdout, `imported oci ${pause}: ${SANDBOX_IMAGE}\n`);

    const archive = join(scratch, "docker.tar");
    await writeDockerArchive(join(scratch, "busybox"), "sk-docker/busybox:archive", archive);
    const docker = await sandkube(["import", archive, "--json"]);
    assert.equal(docker.exitCode, 0, docker.stderr);
    assert.deepEqual(JSON.parse(docker.stdout), {
      file: archive,
      format: "docker-archive",
      names: ["docker.io/sk-docker/busybox:archive"],
    });
  });

  test("ls lists the three images with their digests; the CRI plugin finds them by their short names", async () => {
    const result = await sandkube(["ls", "--json"]);
    assert.equal(result.exitCode, 0, result.stderr);
    const { images } = JSON.parse(result.stdout) as {
      images: { name: string; digest: string; size: string }[];
    };
    const byName = new Map(images.map((i) => [i.name, i]));
    assert.equal(byName.get("docker.io/library/busybox:sk")?.digest, builtDigest);
    assert.match(byName.get(SANDBOX_IMAGE)?.digest ?? "", /^sha256:[0-9a-f]{64}$/);
    assert.match(
      byName.get("docker.io/sk-docker/busybox:archive")?.digest ?? "",
      /^sha256:[0-9a-f]{64}$/,
    );
    for (const image of images) assert.match(image.size, /^[0-9.]+ (B|KiB|MiB)$/, image.name);

    const human = await sandkube(["ls"]);
    assert.match(human.stdout, /^NAME +DIGEST +SIZE\n/);
    assert.ok(human.stdout.includes("docker.io/library/busybox:sk"));

    // kubelet asks the CRI for the name a pod spec says; the CRI normalizes it before looking it up.
    const endpoint = `unix://${layout.containerdSocket}`;
    const crictl = await runCommand(
      [
        labBinary("crictl"),
        "--image-endpoint",
        endpoint,
        "--runtime-endpoint",
        endpoint,
        "inspecti",
        "busybox:sk",
      ],
      { timeoutMs: 30_000 },
    );
    assert.equal(crictl.exitCode, 0, crictl.stderr);
    const pinned = await runCommand(
      [
        labBinary("crictl"),
        "--image-endpoint",
        endpoint,
        "--runtime-endpoint",
        endpoint,
        "images",
        "-o",
        "json",
      ],
      { timeoutMs: 30_000 },
    );
    const cri = JSON.parse(pinned.stdout) as { images: { repoTags: string[]; pinned: boolean }[] };
    assert.equal(
      cri.images.find((i) => i.repoTags.includes(SANDBOX_IMAGE))?.pinned,
      true,
      "the sandbox image is pinned",
    );
  });

  test("ctr runs the built busybox image: applets, users from /etc/passwd, sticky /tmp", async () => {
    const run = await ctr([
      "run",
      "--rm",
      "--snapshotter",
      SNAPSHOTTER,
      "--runc-binary",
      labBinary("runc"),
      "--user",
      "1000",
      "docker.io/library/busybox:sk",
      "sk-busybox",
      "/bin/sh",
      "-c",
      "echo hello-from-busybox; id -un; stat -c %a /tmp; grep -c '' /etc/passwd; wget --help 2>&1 | head -1 | cut -d' ' -f1",
    ]);
    assert.equal(run.exitCode, 0, run.stderr);
    assert.equal(run.stdout, "hello-from-busybox\nuser\n1777\n3\nBusyBox\n");

    const docker = await ctr([
      "run",
      "--rm",
      "--snapshotter",
      SNAPSHOTTER,
      "--runc-binary",
      labBinary("runc"),
      "docker.io/sk-docker/busybox:archive",
      "sk-docker",
    ]);
    assert.equal(docker.exitCode, 0, docker.stderr);
    assert.equal(docker.stdout, "from-docker-archive\n");
  });

  test("the pause image runs /pause and exits 0 on SIGTERM", async () => {
    const running = ctr(
      [
        "run",
        "--rm",
        "--snapshotter",
        SNAPSHOTTER,
        "--runc-binary",
        labBinary("runc"),
        SANDBOX_IMAGE,
        "sk-pause",
      ],
      60_000,
    );
    await waitFor(
      async () => /sk-pause\s+\d+\s+RUNNING/.test((await ctr(["task", "ls"])).stdout),
      "pause running",
    );
    const ps = await ctr(["task", "ps", "sk-pause"]);
    assert.equal(ps.exitCode, 0, ps.stderr);
    const kill = await ctr(["task", "kill", "-s", "SIGTERM", "sk-pause"]);
    assert.equal(kill.exitCode, 0, kill.stderr);
    const result = await running;
    assert.equal(result.exitCode, 0, `pause exited ${result.exitCode}: ${result.stderr}`);
  });

  test("a stopped node is named as such, in one line", async () => {
    const stale = nodeLayout(join(scratch, "stopped"));
    mkdirSync(stale.dataDir, { recursive: true });
    writeFileSync(stale.stateFile, readFileSync(layout.stateFile));
    const result = await runCommand([
      process.execPath,
      CLI,
      "images",
      "ls",
      "--data-dir",
      stale.dataDir,
    ]);
    assert.equal(result.exitCode, 2);
    assert.equal(
      result.stderr,
      `sandkube: images ls: the node in ${stale.dataDir} is not running (containerd does not answer on ${stale.containerdSocket}). Start it with \`sandkube up\`, or pass --data-dir DIR.\n`,
    );
  });
});
