import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  chmodSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { list, type ReadEntry } from "tar";
import {
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_REF_NAME,
  DEFAULT_PATH,
  buildOciArchive,
  describe as describeBlob,
  imageConfig,
  imageIndex,
  imageManifest,
  jsonBytes,
  MEDIA_TYPE,
  platformFor,
} from "../../src/images/oci-layout.js";
import { tarHeader } from "../../src/images/tar-writer.js";
import { elfNeedsLoader } from "../../src/images/elf.js";

const scratch = mkdtempSync(join(tmpdir(), "sandkube-images-unit-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

const AMD64 = platformFor("x64");

test("platforms follow the GOARCH names images use", () => {
  assert.deepEqual(platformFor("x64"), { architecture: "amd64", os: "linux" });
  assert.deepEqual(platformFor("arm64"), { architecture: "arm64", os: "linux" });
  assert.deepEqual(platformFor("arm"), { architecture: "arm", variant: "v7", os: "linux" });
  assert.throws(() => platformFor("pdp11"), /no OCI architecture/);
});

test("the config carries the options, a PATH by default, and no timestamps", () => {
  const config = imageConfig(
    { entrypoint: ["/pause"], cmd: ["-v"], env: ["A=1"], workingDir: "/w", user: "65535:65535" },
    ["sha256:aa"],
    AMD64,
  );
  assert.deepEqual(config, {
    architecture: "amd64",
    os: "linux",
    config: {
      User: "65535:65535",
      Env: [`PATH=${DEFAULT_PATH}`, "A=1"],
      Entrypoint: ["/pause"],
      Cmd: ["-v"],
      WorkingDir: "/w",
    },
    rootfs: { type: "layers", diff_ids: ["sha256:aa"] },
  });
  const ownPath = imageConfig({ env: ["PATH=/bin", "B=2"] }, [], AMD64) as {
    config: { Env: string[]; WorkingDir: string };
  };
  assert.deepEqual(ownPath.config.Env, ["PATH=/bin", "B=2"]);
  assert.equal(ownPath.config.WorkingDir, "/");
  assert.equal("created" in config, false);
});

test("manifest and index describe their blobs and name the image for containerd", () => {
  const config = describeBlob(MEDIA_TYPE.config, Buffer.from("{}"));
  assert.equal(config.digest, `sha256:${createHash("sha256").update("{}").digest("hex")}`);
  assert.equal(config.size, 2);
  const layer = { mediaType: MEDIA_TYPE.layerGzip, digest: "sha256:bb", size: 7 };
  const manifest = imageManifest(config, [layer]);
  assert.deepEqual(manifest, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.manifest,
    config: { mediaType: MEDIA_TYPE.config, digest: config.digest, size: 2 },
    layers: [layer],
  });
  const manifestDescriptor = describeBlob(MEDIA_TYPE.manifest, jsonBytes(manifest));
  const index = imageIndex(manifestDescriptor, "registry.k8s.io/pause:3.10.2-sandkube", AMD64) as {
    manifests: { annotations: Record<string, string>; platform: unknown; digest: string }[];
  };
  assert.equal(index.manifests.length, 1);
  assert.deepEqual(index.manifests[0]?.annotations, {
    [ANNOTATION_IMAGE_NAME]: "registry.k8s.io/pause:3.10.2-sandkube",
    [ANNOTATION_REF_NAME]: "3.10.2-sandkube",
  });
  assert.deepEqual(index.manifests[0]?.platform, AMD64);
  assert.equal(index.manifests[0]?.digest, manifestDescriptor.digest);
});

test("tar headers carry numeric owners, no user names, and a PAX header for long paths", () => {
  const mtime = new Date(0);
  const short = tarHeader({
    path: "tmp",
    type: "Directory",
    mode: 0o1777,
    uid: 0,
    gid: 0,
    mtime,
    size: 0,
  });
  assert.equal(short.length, 512);
  assert.equal(short.subarray(0, 4).toString(), "tmp/");
  assert.equal(parseInt(short.subarray(100, 108).toString().replace(/[\0 ]/g, ""), 8), 0o1777);
  assert.equal(short.subarray(265, 297).toString().replace(/\0+$/, ""), "", "no uname");
  const long = tarHeader({
    path: `${"d".repeat(120)}/${"f".repeat(120)}`,
    type: "File",
    mode: 0o644,
    uid: 1000,
    gid: 1000,
    mtime,
    size: 0,
  });
  assert.ok(long.length > 512, "PAX extended header before the ustar header");
  assert.equal(long[156], "x".charCodeAt(0));
});

function makeTree(root: string): void {
  mkdirSync(join(root, "bin"), { recursive: true });
  mkdirSync(join(root, "tmp"));
  chmodSync(join(root, "tmp"), 0o1777);
  writeFileSync(join(root, "bin/tool"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  symlinkSync("tool", join(root, "bin/alias"));
  linkSync(join(root, "bin/tool"), join(root, "bin/hardlink"));
  writeFileSync(join(root, "z-last"), "z");
  writeFileSync(join(root, "a-first"), "a");
  mkdirSync(join(root, "deep/er"), { recursive: true });
  writeFileSync(join(root, "deep/er", "x".repeat(150)), "long name");
}

async function layerEntries(archive: string, dir: string): Promise<ReadEntry[]> {
  mkdirSync(dir, { recursive: true });
  const index = JSON.parse(await readMember(archive, "index.json")) as {
    manifests: { digest: string }[];
  };
  const manifestHex = (index.manifests[0]?.digest ?? "").slice("sha256:".length);
  const manifest = JSON.parse(await readMember(archive, `blobs/sha256/${manifestHex}`)) as {
    layers: { digest: string }[];
  };
  const layerHex = (manifest.layers[0]?.digest ?? "").slice("sha256:".length);
  const layerFile = join(dir, "layer.tgz");
  writeFileSync(layerFile, await readMemberBytes(archive, `blobs/sha256/${layerHex}`));
  assert.equal(
    createHash("sha256").update(readFileSync(layerFile)).digest("hex"),
    layerHex,
    "blob named by its digest",
  );
  const entries: ReadEntry[] = [];
  await list({
    file: layerFile,
    strict: true,
    onReadEntry: (e: ReadEntry) => void entries.push(e),
  });
  return entries;
}

async function readMemberBytes(archive: string, member: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await list({
    file: archive,
    strict: true,
    onReadEntry: (e: ReadEntry) => {
      if (e.path === member) e.on("data", (c: Buffer) => chunks.push(c));
    },
  });
  return Buffer.concat(chunks);
}

async function readMember(archive: string, member: string): Promise<string> {
  return (await readMemberBytes(archive, member)).toString("utf8");
}

test("the same files give the same digests, whenever they were written and by whom", async () => {
  const first = join(scratch, "first");
  const second = join(scratch, "second");
  makeTree(first);
  makeTree(second);
  utimesSync(join(second, "bin/tool"), new Date(2020, 1, 1), new Date(2020, 1, 1));
  const options = {
    name: "busybox:repro",
    entrypoint: ["/bin/tool"],
    layer: { mtime: new Date(0), owner: "root" as const },
  };
  const a = await buildOciArchive({ ...options, fromDir: first, output: join(scratch, "a.tar") });
  const b = await buildOciArchive({ ...options, fromDir: second, output: join(scratch, "b.tar") });
  assert.equal(a.manifest.digest, b.manifest.digest);
  assert.equal(a.layers[0]?.digest, b.layers[0]?.digest);
  assert.deepEqual(readFileSync(join(scratch, "a.tar")), readFileSync(join(scratch, "b.tar")));
  assert.equal(a.name, "docker.io/library/busybox:repro");

  writeFileSync(join(second, "a-first"), "changed");
  const c = await buildOciArchive({ ...options, fromDir: second, output: join(scratch, "c.tar") });
  assert.notEqual(c.manifest.digest, a.manifest.digest, "different content, different digest");
});

test("the layer keeps modes, links and long names, sorted, owned by 0:0 or preserved", async () => {
  const root = join(scratch, "modes");
  makeTree(root);
  const archive = join(scratch, "modes.tar");
  await buildOciArchive({
    fromDir: root,
    name: "m:1",
    output: archive,
    layer: { mtime: new Date(86_400_000), owner: "root" },
  });
  const entries = await layerEntries(archive, join(scratch, "modes-out"));
  const byPath = new Map(entries.map((e) => [e.path, e]));
  assert.deepEqual(
    entries.map((e) => e.path),
    [
      "a-first",
      "bin/",
      "bin/alias",
      "bin/hardlink",
      "bin/tool",
      "deep/",
      "deep/er/",
      `deep/er/${"x".repeat(150)}`,
      "tmp/",
      "z-last",
    ],
  );
  assert.equal(byPath.get("tmp/")?.mode, 0o1777, "sticky, world-writable /tmp survives");
  assert.equal(byPath.get("bin/alias")?.type, "SymbolicLink");
  assert.equal(byPath.get("bin/alias")?.linkpath, "tool");
  assert.equal(
    byPath.get("bin/hardlink")?.type,
    "File",
    "the first path of an inode carries the bytes",
  );
  assert.equal(byPath.get("bin/tool")?.type, "Link");
  assert.equal(byPath.get("bin/tool")?.linkpath, "bin/hardlink");
  for (const entry of entries) {
    assert.equal(entry.uid, 0);
    assert.equal(entry.gid, 0);
    assert.equal(entry.mtime?.getTime(), 86_400_000);
    assert.equal(entry.uname ?? "", "");
  }

  if (process.getuid?.() === 0) {
    const { chownSync } = await import("node:fs");
    chownSync(join(root, "z-last"), 1234, 5678);
    const preserved = join(scratch, "preserved.tar");
    await buildOciArchive({
      fromDir: root,
      name: "m:2",
      output: preserved,
      layer: { mtime: new Date(0), owner: "preserve" },
    });
    const owned = (await layerEntries(preserved, join(scratch, "preserved-out"))).find(
      (e) => e.path === "z-last",
    );
    assert.equal(owned?.uid, 1234);
    assert.equal(owned?.gid, 5678);
  }
});

test("ELF: a dynamic loader is found in the program headers", () => {
  assert.equal(
    elfNeedsLoader(readFileSync(process.execPath).subarray(0, 64 * 1024)),
    true,
    "node is dynamic",
  );
  assert.throws(() => elfNeedsLoader(Buffer.from("#!/bin/sh\n".padEnd(64))), /not an ELF/);
});
