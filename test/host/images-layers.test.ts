import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { labBinary, labBinDir } from "../../lab/paths.js";
import { scratchContainerdConfig } from "../../lab/scratch-containerd.js";
import { ensureSuccess, runCommand, type CommandResult } from "../../src/common/exec.js";
import { DEBIAN_BUSYBOX } from "../../src/images/busybox.js";
import { isStaticElf } from "../../src/images/elf.js";
import { readOverlayOpaqueDirectories } from "../../src/images/layers.js";
import { importWithoutMounts } from "../../src/images/unpack-without-mounts.js";
import { nodeLayout } from "../../src/node/layout.js";
import { SANDBOX_IMAGE } from "../../src/plan/cluster-config.js";
import { changedPart, EXPECTED_TREE, makeWhiteoutLayers, tree } from "./images-layers-fixture.js";

/**
 * A 3-layer image whose upper layers delete files, built by `sandkube images build` from
 * directories that real overlayfs mounts wrote (so the deletions are the kernel's own whiteout
 * devices and opaque xattrs), imported into a scratch containerd 2.4 from the lab, unpacked with
 * the overlayfs and the native snapshotter, then exported as a docker-archive and imported again,
 * and last unpacked by sandkube without mounts (what runs where MS_REC is refused). Host kernel,
 * as root.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const CLI = join(REPO, "dist/src/cli/main.js");
const STACK = ["containerd", "containerd-shim-runc-v2", "ctr", "runc"];
const IMAGE = "docker.io/library/layered:sk";
const SNAPSHOTTERS = ["overlayfs", "native"] as const;

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "SKIPPED: needs root (overlay mounts, containerd)";
  const missing = STACK.map((b) => labBinary(b)).filter((b) => !existsSync(b));
  if (missing.length > 0)
    return `SKIPPED: lab not built, missing ${missing.join(", ")}; run npm run lab:build`;
  if (!(await isStaticElf(DEBIAN_BUSYBOX).catch(() => false)))
    return "SKIPPED: no static busybox; apt-get install -y busybox-static";
  if (!readFileSync("/proc/filesystems", "utf8").includes("\toverlay\n"))
    return "SKIPPED: this kernel has no overlay file system (/proc/filesystems)";
  return undefined;
}

const reason = await skipReason();
if (reason !== undefined) process.stderr.write(`\n*** images-layers: ${reason}\n`);

describe(
  "multi-layer images with whiteouts under a real containerd (host kernel)",
  { skip: reason },
  () => {
    let scratch: string;
    let containerd: ChildProcess | undefined;
    let socket: string;
    const layers = { base: "", middle: "", top: "" };
    /** One node data dir per snapshotter, both pointing at the same containerd. */
    const dataDirs = new Map<string, string>();

    const ctr = (args: readonly string[], timeoutMs = 120_000): Promise<CommandResult> =>
      runCommand([labBinary("ctr"), "--address", socket, "--namespace", "k8s.io", ...args], {
        timeoutMs,
      });
    const sandkube = (snapshotter: string, args: readonly string[]): Promise<CommandResult> =>
      runCommand(
        [process.execPath, CLI, "images", ...args, "--data-dir", dataDirs.get(snapshotter) ?? ""],
        { timeoutMs: 180_000 },
      );

    /** Mounts the image read-only through `snapshotter`, returns what is under data, etc and opt. */
    async function unpackedTree(snapshotter: string, image: string): Promise<string[]> {
      const target = join(scratch, `mnt-${snapshotter}`);
      mkdirSync(target, { recursive: true });
      const mount = await ctr(["images", "mount", "--snapshotter", snapshotter, image, target]);
      assert.equal(mount.exitCode, 0, mount.stderr);
      try {
        assert.equal(readFileSync(join(target, "data/b"), "utf8"), "b");
        assert.equal(readFileSync(join(target, "data/c"), "utf8"), "c");
        assert.equal(readFileSync(join(target, "opt/x/new"), "utf8"), "new");
        return changedPart(target);
      } finally {
        const unmount = await ctr(["images", "unmount", "--rm", target]);
        assert.equal(unmount.exitCode, 0, unmount.stderr);
      }
    }

    /** A container from the image lists what the layers left: no data/a, only new in opt/x. */
    async function containerSeesTheLayers(snapshotter: string): Promise<void> {
      const run = await ctr([
        "run",
        "--rm",
        "--snapshotter",
        snapshotter,
        "--runc-binary",
        labBinary("runc"),
        IMAGE,
        "sk-layers",
        "/bin/sh",
        "-c",
        "ls -A /data /opt/x; cat /etc/keep",
      ]);
      assert.equal(run.exitCode, 0, run.stderr);
      assert.equal(run.stdout, "/data:\nb\nc\n\n/opt/x:\nnew\nkeep");
    }

    async function committedSnapshots(snapshotter: string): Promise<number> {
      const listed = await ctr(["snapshots", "--snapshotter", snapshotter, "ls"]);
      assert.equal(listed.exitCode, 0, listed.stderr);
      return listed.stdout.split("\n").filter((line) => /\sCommitted\s*$/.test(line)).length;
    }

    before(async () => {
      scratch = mkdtempSync(join(tmpdir(), "sandkube-images-layers-"));

      const made = await makeWhiteoutLayers(scratch);
      layers.base = made.base;
      layers.middle = made.middle;
      layers.top = made.top;

      const dir = join(scratch, "containerd");
      mkdirSync(join(dir, "cni.d"), { recursive: true });
      writeFileSync(
        join(dir, "config.toml"),
        await scratchContainerdConfig(dir, SANDBOX_IMAGE, {}),
      );
      socket = join(dir, "containerd.sock");
      const log = openSync(join(scratch, "containerd.log"), "w");
      containerd = spawn(labBinary("containerd"), ["--config", join(dir, "config.toml")], {
        stdio: ["ignore", log, log],
        env: { ...process.env, PATH: `${labBinDir()}:${process.env["PATH"] ?? ""}` },
      });
      closeSync(log);
      const deadline = Date.now() + 30_000;
      while (!(existsSync(socket) && (await ctr(["version"], 10_000)).exitCode === 0)) {
        if (Date.now() > deadline) throw new Error("containerd did not answer within 30 s");
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const snapshotter of SNAPSHOTTERS) {
        const layout = nodeLayout(join(scratch, `node-${snapshotter}`));
        mkdirSync(dirname(layout.containerdSocket), { recursive: true });
        // `images` finds containerd where a node's would be; this one's socket is elsewhere.
        symlinkSync(socket, layout.containerdSocket);
        writeFileSync(
          layout.stateFile,
          JSON.stringify({
            schema: "sandkube.node/v1",
            config: { snapshotter, binaries: { ctr: labBinary("ctr") } },
          }),
        );
        dataDirs.set(snapshotter, layout.dataDir);
      }
    });

    after(async () => {
      if (containerd?.pid !== undefined && containerd.exitCode === null) {
        await ctr(["task", "kill", "-s", "SIGKILL", "sk-layers"]);
        await ctr(["task", "delete", "--force", "sk-layers"]);
        await ctr(["container", "delete", "sk-layers"]);
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

    test("overlayfs wrote the upper layers: a whiteout device and an opaque directory", async () => {
      const whiteout = lstatSync(join(layers.top, "data/a"));
      assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0, "data/a is a 0:0 device");
      const opaque = await readOverlayOpaqueDirectories(layers.middle, [
        "",
        "data",
        "opt",
        "opt/x",
      ]);
      assert.deepEqual([...opaque], ["opt/x"], "trusted.overlay.opaque=y on opt/x only");
      assert.deepEqual(tree(layers.middle), ["data/", "data/c", "opt/", "opt/x/", "opt/x/new"]);
      assert.deepEqual(tree(layers.top), ["data/", "data/a (special, rdev 0)"]);
    });

    test("images build takes three --from-dir layers and imports them (overlayfs snapshotter)", async () => {
      const output = join(scratch, "layered.tar");
      const result = await sandkube("overlayfs", [
        "build",
        "--from-dir",
        layers.base,
        "--from-dir",
        layers.middle,
        "--from-dir",
        layers.top,
        "--name",
        "layered:sk",
        "--cmd",
        "/bin/sh",
        "--output",
        output,
        "--json",
      ]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.equal(result.stderr, "", "no warnings: GNU tar read the opaque xattr");
      const built = JSON.parse(result.stdout) as {
        name: string;
        digest: string;
        layers: { digest: string; diffId: string }[];
        imported: boolean;
      };
      assert.equal(built.name, IMAGE);
      assert.equal(built.imported, true);
      assert.equal(built.layers.length, 3);
      assert.equal(new Set(built.layers.map((l) => l.diffId)).size, 3);

      // The same files again give the same bytes.
      const again = join(scratch, "layered-again.tar");
      const rebuilt = await sandkube("overlayfs", [
        "build",
        ...["--from-dir", layers.base, "--from-dir", layers.middle, "--from-dir", layers.top],
        ...["--name", "layered:sk", "--cmd", "/bin/sh", "--output", again, "--json"],
      ]);
      assert.equal(rebuilt.exitCode, 0, rebuilt.stderr);
      assert.deepEqual(readFileSync(again), readFileSync(output));

      assert.equal(await committedSnapshots("overlayfs"), 3, "one committed snapshot per layer");
      const listed = await sandkube("overlayfs", ["ls", "--json"]);
      assert.equal(listed.exitCode, 0, listed.stderr);
      const { images } = JSON.parse(listed.stdout) as {
        images: { name: string; digest: string }[];
      };
      assert.equal(images.find((i) => i.name === IMAGE)?.digest, built.digest);
    });

    test("the layers' tars carry OCI whiteouts, not devices", async () => {
      const extract = join(scratch, "extract");
      mkdirSync(extract);
      ensureSuccess(await runCommand(["tar", "-xf", join(scratch, "layered.tar"), "-C", extract]));
      const index = JSON.parse(readFileSync(join(extract, "index.json"), "utf8")) as {
        manifests: { digest: string }[];
      };
      const blob = (digest: string): string => join(extract, "blobs/sha256", digest.slice(7));
      const manifest = JSON.parse(readFileSync(blob(index.manifests[0]?.digest ?? ""), "utf8")) as {
        layers: { digest: string }[];
      };
      const names: string[][] = [];
      for (const layer of manifest.layers) {
        const listing = ensureSuccess(
          await runCommand(["tar", "-tvzf", blob(layer.digest)], { env: { TZ: "UTC" } }),
        );
        names.push(listing.stdout.trim().split("\n"));
      }
      const [, middle, top] = names;
      assert.deepEqual(
        top?.map((line) => line.split(/\s+/).slice(-1)[0]),
        ["data/", "data/.wh.a"],
      );
      assert.match(top?.[1] ?? "", /^-{10} 0\/0 +0 1970-01-01 00:00 data\/\.wh\.a$/);
      assert.ok(
        middle?.some((line) => line.endsWith(" opt/x/.wh..wh..opq")),
        middle?.join("\n"),
      );
      assert.ok(!names.flat().some((line) => line.startsWith("c")), "no character devices");
    });

    test("the same layers written the OCI way (.wh.a, .wh..wh..opq) give the same image", async () => {
      const middle = join(scratch, "oci-layer2");
      const top = join(scratch, "oci-layer3");
      // cp without --preserve=xattr: the opaque xattr stays behind; the .wh..wh..opq file says it.
      ensureSuccess(
        await runCommand(["cp", "-r", "--preserve=mode,ownership", layers.middle, middle]),
      );
      ensureSuccess(await runCommand(["cp", "-r", "--preserve=mode,ownership", layers.top, top]));
      assert.deepEqual([...(await readOverlayOpaqueDirectories(middle, ["opt/x"]))], []);
      writeFileSync(join(middle, "opt/x/.wh..wh..opq"), "");
      rmSync(join(top, "data/a"));
      writeFileSync(join(top, "data/.wh.a"), "");
      const output = join(scratch, "layered-oci-way.tar");
      const result = await sandkube("overlayfs", [
        "build",
        ...["--from-dir", layers.base, "--from-dir", middle, "--from-dir", top],
        ...["--name", "layered:sk", "--cmd", "/bin/sh", "--output", output],
      ]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(readFileSync(output), readFileSync(join(scratch, "layered.tar")));
    });

    test("images import unpacks the same image with the native snapshotter", async () => {
      const result = await sandkube("native", ["import", join(scratch, "layered.tar"), "--json"]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), {
        file: join(scratch, "layered.tar"),
        format: "oci",
        names: [IMAGE],
      });
      assert.equal(await committedSnapshots("native"), 3);
    });

    for (const snapshotter of SNAPSHOTTERS) {
      test(`unpacked with ${snapshotter}: data/a gone, b and c there, opt/x holds layer 2's file only`, async () => {
        assert.deepEqual(await unpackedTree(snapshotter, IMAGE), EXPECTED_TREE);
        await containerSeesTheLayers(snapshotter);
      });
    }

    test("ctr images export, as a docker-archive, imports again and unpacks the same", async () => {
      const exported = join(scratch, "exported.tar");
      // --local: written by ctr itself, so the file is whole when ctr exits (through the transfer
      // API, gVisor once read it back truncated: test/gvisor/images-layers-inside.ts).
      const exportResult = await ctr(["images", "export", "--local", exported, IMAGE]);
      assert.equal(exportResult.exitCode, 0, exportResult.stderr);
      // Without its OCI members the export is a plain docker-archive: manifest.json and blobs.
      ensureSuccess(
        await runCommand(["tar", "--delete", "-f", exported, "oci-layout", "index.json"]),
      );
      const members = ensureSuccess(await runCommand(["tar", "-tf", exported])).stdout;
      assert.doesNotMatch(members, /^(oci-layout|index\.json)$/m);
      const dockerManifest = JSON.parse(
        ensureSuccess(await runCommand(["tar", "-xOf", exported, "manifest.json"])).stdout,
      ) as { Layers: string[] }[];
      assert.equal(dockerManifest[0]?.Layers.length, 3);

      // Nothing left to reuse: the re-import must unpack every layer again.
      // The CRI plugin adds references of its own (by config digest, by repo digest): all go.
      const references = ensureSuccess(await ctr(["images", "ls", "-q"]))
        .stdout.split("\n")
        .filter(Boolean);
      assert.ok(references.includes(IMAGE), references.join(", "));
      const removed = await ctr(["images", "rm", "--sync", ...references]);
      assert.equal(removed.exitCode, 0, removed.stderr);
      for (const snapshotter of SNAPSHOTTERS) {
        assert.equal(await committedSnapshots(snapshotter), 0, `${snapshotter} emptied`);
      }

      for (const snapshotter of SNAPSHOTTERS) {
        const result = await sandkube(snapshotter, ["import", exported, "--json"]);
        assert.equal(result.exitCode, 0, result.stderr);
        const summary = JSON.parse(result.stdout) as { format: string; names: string[] };
        assert.equal(summary.format, "docker-archive");
        assert.deepEqual(summary.names, [IMAGE]);
        assert.equal(await committedSnapshots(snapshotter), 3);
        assert.deepEqual(await unpackedTree(snapshotter, IMAGE), EXPECTED_TREE);
      }
      const listed = await sandkube("native", ["ls", "--json"]);
      const { images } = JSON.parse(listed.stdout) as { images: { name: string }[] };
      assert.ok(
        images.some((i) => i.name === IMAGE),
        JSON.stringify(images),
      );
    });

    for (const snapshotter of SNAPSHOTTERS) {
      test(`unpacked without mounts (the path for kernels that refuse MS_REC), ${snapshotter}: the same tree`, async () => {
        const references = ensureSuccess(await ctr(["images", "ls", "-q"]))
          .stdout.split("\n")
          .filter(Boolean);
        if (references.length > 0) {
          const removed = await ctr(["images", "rm", "--sync", ...references]);
          assert.equal(removed.exitCode, 0, removed.stderr);
        }
        assert.equal(await committedSnapshots(snapshotter), 0, `${snapshotter} emptied`);
        const target = {
          ctr: labBinary("ctr"),
          socket,
          snapshotter,
          containerdRoot: join(scratch, "containerd", "root"),
        };
        await importWithoutMounts(target, join(scratch, "layered.tar"));
        assert.equal(await committedSnapshots(snapshotter), 3, "one snapshot per layer");
        // The top layer's opaque /opt/x became whiteouts of what the layers below hold there.
        assert.deepEqual(await unpackedTree(snapshotter, IMAGE), EXPECTED_TREE);
        await containerSeesTheLayers(snapshotter);
        // A second import finds every layer there and unpacks nothing.
        await importWithoutMounts(target, join(scratch, "layered.tar"));
        assert.equal(await committedSnapshots(snapshotter), 3);
      });
    }
  },
);

if (reason) test("multi-layer images under containerd", { skip: reason }, () => undefined);
