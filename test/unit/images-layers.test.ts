import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { Header, list, type ReadEntry } from "tar";
import {
  classifyChild,
  LayerSourceError,
  layerEntries,
  opaqueFromXattrs,
  parsePaxRecords,
  planDirectory,
  plannedName,
  tarMemberXattrs,
  whiteoutEntry,
  type ChildKind,
  type OpaqueDirectoryReader,
} from "../../src/images/layers.js";
import { runCommand } from "../../src/common/exec.js";
import { buildLayeredOciArchive, buildOciArchive } from "../../src/images/oci-layout.js";
import {
  directoryEntries,
  tarHeader,
  tarStream,
  type TarEntry,
} from "../../src/images/tar-writer.js";

const scratch = mkdtempSync(join(tmpdir(), "sandkube-images-layers-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

const FILE = { isDirectory: false, isCharacterDevice: false, rdev: 0 };
const DIR = { isDirectory: true, isCharacterDevice: false, rdev: 0 };
const WHITEOUT_DEVICE = { isDirectory: false, isCharacterDevice: true, rdev: 0 };
/** /dev/null is 1:3; new_encode_dev gives (1 << 8) | 3. */
const DEV_NULL = { isDirectory: false, isCharacterDevice: true, rdev: (1 << 8) | 3 };

/** No xattrs: unit tests run without root, which trusted.* needs; the host test reads real ones. */
const noOpaqueXattrs: OpaqueDirectoryReader = async () => new Set<string>();
const layer = { mtime: new Date(0), owner: "root" as const };

test("whiteouts: an overlay device 0:0 or a .wh. file; .wh..wh..opq marks an opaque directory", () => {
  assert.deepEqual(classifyChild("data", "a", WHITEOUT_DEVICE), { kind: "whiteout", target: "a" });
  assert.deepEqual(classifyChild("data", ".wh.a", FILE), { kind: "whiteout", target: "a" });
  assert.deepEqual(classifyChild("opt/x", ".wh..wh..opq", FILE), { kind: "opaque" });
  assert.deepEqual(classifyChild("dev", "null", DEV_NULL), { kind: "entry" }, "a real device");
  assert.deepEqual(classifyChild("", "a", FILE), { kind: "entry" });
  assert.deepEqual(classifyChild("", ".whatever", FILE), { kind: "entry" });
  const refused: [string, Parameters<typeof classifyChild>[2], RegExp][] = [
    [".wh..wh.plnk", FILE, /d\/\.wh\.\.wh\.plnk: names starting with \.wh\.\.wh\. are reserved/],
    [".wh.", FILE, /d\/\.wh\. is a whiteout of no name/],
    [".wh.sub", DIR, /d\/\.wh\.sub is a directory; a whiteout must be an empty file/],
    [".wh..wh..opq", DIR, /an opaque marker must be an empty file/],
    [".wh.x", WHITEOUT_DEVICE, /overlay whiteout of a name that starts with \.wh\./],
  ];
  for (const [name, stat, message] of refused) {
    assert.throws(
      () => classifyChild("d", name, stat),
      (e: unknown) => e instanceof LayerSourceError && message.test(e.message),
      name,
    );
  }
});

test("a directory's plan: opaque marker first, whiteouts sorted by the name they are written as", () => {
  const children: { name: string; kind: ChildKind }[] = [
    { name: "zeta", kind: { kind: "entry" } },
    { name: "b", kind: { kind: "whiteout", target: "b" } },
    { name: ".wh.b", kind: { kind: "whiteout", target: "b" } },
    { name: ".wh..wh..opq", kind: { kind: "opaque" } },
    { name: "-dash", kind: { kind: "entry" } },
    { name: "A", kind: { kind: "entry" } },
  ];
  const plan = planDirectory("opt", children, false);
  assert.deepEqual(
    plan.map((child) => plannedName("opt", child)),
    ["opt/.wh..wh..opq", "opt/-dash", "opt/.wh.b", "opt/A", "opt/zeta"],
    "the device b and the file .wh.b are one whiteout",
  );
  assert.deepEqual(
    planDirectory("", [{ name: "x", kind: { kind: "entry" } }], true).map((c) =>
      plannedName("", c),
    ),
    [".wh..wh..opq", "x"],
    "an xattr-opaque root gets its marker at the top level",
  );
  assert.throws(
    () =>
      planDirectory(
        "data",
        [
          { name: "a", kind: { kind: "entry" } },
          { name: ".wh.a", kind: { kind: "whiteout", target: "a" } },
        ],
        false,
      ),
    (e: unknown) =>
      e instanceof LayerSourceError &&
      e.message === "data/a is both in the layer and whited out by it; keep one",
  );
});

test("a whiteout is an empty regular file, mode 0, 0:0, mtime 0, as containerd's ChangeWriter writes it", () => {
  const block = tarHeader(whiteoutEntry("data/.wh.a"));
  assert.equal(block.length, 512);
  const header = new Header(block);
  assert.equal(header.path, "data/.wh.a");
  assert.equal(header.type, "File");
  assert.equal(header.size, 0);
  assert.equal(header.mode, 0);
  assert.equal(header.uid, 0);
  assert.equal(header.gid, 0);
  assert.equal(header.mtime?.getTime(), 0);
});

/** A PAX `x` header with these records, then a ustar directory header, as GNU tar --xattrs writes. */
function paxTar(members: { path: string; records: Record<string, string> }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const member of members) {
    const body = Buffer.concat(
      Object.entries(member.records).map(([key, value]) => {
        const text = ` ${key}=${value}\n`;
        const bytes = Buffer.byteLength(text);
        let length = bytes + 1;
        while (String(length).length + bytes !== length) length++;
        return Buffer.from(`${length}${text}`);
      }),
    );
    const pax = new Header({ path: "PaxHeaders/x", type: "ExtendedHeader", size: body.length });
    pax.encode();
    blocks.push(
      pax.block ?? Buffer.alloc(0),
      body,
      Buffer.alloc((512 - (body.length % 512)) % 512),
    );
    const dir = new Header({ path: member.path.slice(0, 99), type: "Directory", size: 0 });
    dir.encode();
    blocks.push(dir.block ?? Buffer.alloc(0));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

test("xattrs from GNU tar's pax records: trusted.overlay.opaque=y and user.overlay.opaque=y only", () => {
  const records = parsePaxRecords(
    Buffer.from("30 mtime=1796618514.604116501\n41 SCHILY.xattr.trusted.overlay.opaque=y\n"),
  );
  assert.equal(records.get("SCHILY.xattr.trusted.overlay.opaque")?.toString(), "y");
  assert.equal(records.get("mtime")?.toString(), "1796618514.604116501");

  const long = `./${"d".repeat(120)}/opaque/`;
  const tar = paxTar([
    { path: "./", records: { mtime: "1" } },
    { path: "./opt/x/", records: { "SCHILY.xattr.trusted.overlay.opaque": "y" } },
    { path: "./u/", records: { "SCHILY.xattr.user.overlay.opaque": "y" } },
    { path: "./nested/", records: { "SCHILY.xattr.trusted.overlay.opaque": "x" } },
    { path: "./ignored/", records: { path: long, "SCHILY.xattr.trusted.overlay.opaque": "y" } },
  ]);
  const members = tarMemberXattrs(tar);
  assert.deepEqual([...members.keys()], ["", "opt/x", "u", "nested", `${"d".repeat(120)}/opaque`]);
  assert.deepEqual(
    [...opaqueFromXattrs(members)].sort(),
    [`${"d".repeat(120)}/opaque`, "opt/x", "u"],
    '"x" (Linux 6.7+: holds xattr whiteouts) is not opaque',
  );
});

async function collect(entries: AsyncIterable<TarEntry>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of tarStream(entries)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

test("a tree without whiteouts gives the same layer bytes as the one-layer walk did", async () => {
  const root = join(scratch, "plain");
  mkdirSync(join(root, "bin"), { recursive: true });
  mkdirSync(join(root, ".hidden"));
  writeFileSync(join(root, "bin/tool"), "tool", { mode: 0o755 });
  writeFileSync(join(root, ".hidden/.wh"), "not a whiteout: no name after the prefix dot");
  writeFileSync(join(root, ".whiteboard"), "not a whiteout either");
  const walked = await collect(directoryEntries(root, layer));
  const converted = await collect(
    layerEntries(root, { ...layer, opaqueDirectories: noOpaqueXattrs }),
  );
  assert.ok(walked.length > 1024);
  assert.deepEqual(converted, walked);
});

async function layoutMembers(archive: string): Promise<Map<string, Buffer>> {
  const members = new Map<string, Buffer>();
  await list({
    file: archive,
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      const chunks: Buffer[] = [];
      entry.on("data", (chunk: Buffer) => chunks.push(chunk));
      entry.on("end", () => members.set(entry.path, Buffer.concat(chunks)));
    },
  });
  return members;
}

interface ReadImage {
  readonly blobs: Map<string, Buffer>;
  readonly layers: { digest: string; size: number; mediaType: string }[];
  readonly diffIds: string[];
  /** Entry names of each layer, in tar order. */
  readonly layerNames: string[][];
}

async function readImage(archive: string): Promise<ReadImage> {
  const members = await layoutMembers(archive);
  const blob = (digest: string): Buffer => {
    const bytes = members.get(`blobs/sha256/${digest.slice("sha256:".length)}`);
    assert.ok(bytes !== undefined, `blob ${digest} is in the layout`);
    assert.equal(`sha256:${createHash("sha256").update(bytes).digest("hex")}`, digest);
    return bytes;
  };
  const index = JSON.parse((members.get("index.json") ?? "").toString()) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(blob(index.manifests[0]?.digest ?? "").toString()) as {
    config: { digest: string };
    layers: { digest: string; size: number; mediaType: string }[];
  };
  const config = JSON.parse(blob(manifest.config.digest).toString()) as {
    rootfs: { diff_ids: string[] };
  };
  const layerNames: string[][] = [];
  for (const [i, descriptor] of manifest.layers.entries()) {
    const compressed = blob(descriptor.digest);
    assert.equal(compressed.length, descriptor.size);
    const tar = gunzipSync(compressed);
    assert.equal(
      `sha256:${createHash("sha256").update(tar).digest("hex")}`,
      config.rootfs.diff_ids[i],
      `diff_id ${i} is the sha256 of the uncompressed layer`,
    );
    const file = join(scratch, `layer-${i}-${Date.now()}.tar`);
    writeFileSync(file, tar);
    const names: string[] = [];
    await list({ file, strict: true, onReadEntry: (e: ReadEntry) => void names.push(e.path) });
    layerNames.push(names);
  }
  return { blobs: members, layers: manifest.layers, diffIds: config.rootfs.diff_ids, layerNames };
}

function writeTree(root: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    if (path.endsWith("/")) mkdirSync(join(root, path), { recursive: true });
    else writeFileSync(join(root, path), content);
  }
}

test("three layers: order kept, .wh. files become whiteouts, digests and diff_ids check out, same bytes twice", async () => {
  const base = join(scratch, "l1");
  const middle = join(scratch, "l2");
  const top = join(scratch, "l3");
  writeTree(base, { "data/a": "a", "data/b": "b", "etc/keep": "keep", "opt/x/old": "old" });
  writeTree(middle, { "data/c": "c", "opt/x/.wh..wh..opq": "", "opt/x/new": "new" });
  writeTree(top, { "data/.wh.a": "" });
  const options = {
    name: "layered:unit",
    layer,
    fromDirs: [base, middle, top],
    opaqueDirectories: noOpaqueXattrs,
  };
  const first = await buildLayeredOciArchive({ ...options, output: join(scratch, "one.tar") });
  const second = await buildLayeredOciArchive({ ...options, output: join(scratch, "two.tar") });
  assert.deepEqual(readFileSync(first.output), readFileSync(second.output), "reproducible");
  assert.equal(first.layers.length, 3);
  assert.deepEqual(first.warnings, []);

  const image = await readImage(first.output);
  assert.deepEqual(image.diffIds, first.diffIds);
  assert.deepEqual(
    image.layers.map((l) => l.digest),
    first.layers.map((l) => l.digest),
  );
  assert.ok(
    image.layers.every((l) => l.mediaType === "application/vnd.oci.image.layer.v1.tar+gzip"),
  );
  assert.deepEqual(image.layerNames, [
    ["data/", "data/a", "data/b", "etc/", "etc/keep", "opt/", "opt/x/", "opt/x/old"],
    ["data/", "data/c", "opt/", "opt/x/", "opt/x/.wh..wh..opq", "opt/x/new"],
    ["data/", "data/.wh.a"],
  ]);
});

test("an opaque xattr and a .wh..wh..opq file give the same layer", async () => {
  const byFile = join(scratch, "opq-file");
  const byXattr = join(scratch, "opq-xattr");
  writeTree(byFile, { "opt/x/.wh..wh..opq": "", "opt/x/new": "new" });
  writeTree(byXattr, { "opt/x/new": "new" });
  const a = await buildLayeredOciArchive({
    name: "opq:1",
    fromDirs: [byFile],
    output: join(scratch, "opq-a.tar"),
    layer,
    opaqueDirectories: noOpaqueXattrs,
  });
  // Stands in for trusted.overlay.opaque, which only root can set; the host test sets it for real.
  const xattrOpaque: OpaqueDirectoryReader = async () => new Set(["opt/x"]);
  const b = await buildLayeredOciArchive({
    name: "opq:1",
    fromDirs: [byXattr],
    output: join(scratch, "opq-b.tar"),
    layer,
    opaqueDirectories: xattrOpaque,
  });
  assert.equal(a.diffIds[0], b.diffIds[0]);
  assert.equal(a.manifest.digest, b.manifest.digest);
});

test("two equal layers are listed twice but stored once; one-layer builds still work", async () => {
  const same = join(scratch, "same");
  writeTree(same, { f: "f" });
  const built = await buildLayeredOciArchive({
    name: "twice:1",
    fromDirs: [same, same],
    output: join(scratch, "twice.tar"),
    layer,
    opaqueDirectories: noOpaqueXattrs,
  });
  assert.equal(built.layers[0]?.digest, built.layers[1]?.digest);
  const members = await layoutMembers(built.output);
  const blobs = [...members.keys()].filter((k) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(k));
  assert.equal(blobs.length, 3, "manifest, config, one layer");

  const single = await buildOciArchive({
    name: "twice:1",
    fromDir: same,
    output: join(scratch, "single.tar"),
    layer,
  });
  assert.equal(single.layers.length, 1);
  assert.equal(single.diffIds[0], built.diffIds[0]);
});

test("a layer that both has and whites out a name is refused with the layer's directory", async () => {
  const bad = join(scratch, "bad");
  writeTree(bad, { "data/a": "a", "data/.wh.a": "" });
  await assert.rejects(
    buildLayeredOciArchive({
      name: "bad:1",
      fromDirs: [bad],
      output: join(scratch, "bad.tar"),
      layer,
      opaqueDirectories: noOpaqueXattrs,
    }),
    (e: unknown) =>
      e instanceof LayerSourceError &&
      e.layerDir === bad &&
      e.message === "data/a is both in the layer and whited out by it; keep one",
  );
});

test("images build names the layer and the path of a refused whiteout, exit status 2", async () => {
  const cli = join(dirname(fileURLToPath(import.meta.url)), "../../src/cli/main.js");
  const bad = join(scratch, "cli-bad");
  writeTree(bad, { "data/a": "a", "data/.wh.a": "" });
  const good = join(scratch, "cli-good");
  writeTree(good, { f: "f" });
  const result = await runCommand([
    process.execPath,
    cli,
    "images",
    "build",
    ...["--from-dir", good, "--from-dir", bad],
    ...["--name", "x:1", "--output", join(scratch, "cli-bad.tar")],
    ...["--data-dir", join(scratch, "no-node")],
  ]);
  assert.equal(result.exitCode, 2);
  assert.equal(
    result.stderr,
    `sandkube: images build: --from-dir ${bad}: data/a is both in the layer and whited out by it; keep one.\n`,
  );
});
