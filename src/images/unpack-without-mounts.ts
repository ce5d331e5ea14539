/**
 * Unpacking an imported image into containerd's snapshotter without mounting anything, for kernels
 * that refuse MS_REC (gVisor before 2024: docs/gvisor-blockers.md B5).
 *
 * containerd's applier (core/diff/apply/apply_linux.go) writes an overlay snapshot straight into
 * its upper directory, but mounts every `bind` snapshot first, and both the overlayfs and native
 * snapshotters hand an image's first layer out as `rbind` (MS_BIND|MS_REC), which such a kernel
 * rejects with EINVAL. So sandkube imports without unpacking and then does what the unpacker does,
 * through the snapshots API: prepare each layer's snapshot on its parent, extract the layer with
 * tar into the directory the snapshot's mount names, commit it under the layer's chain id, and
 * label the image config so garbage collection keeps the chain. CRI's `IsUnpacked` only looks the
 * chain id up, and a container's own snapshot has a parent, so the overlayfs snapshotter mounts it
 * as `overlay`, which these kernels accept.
 */
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ensureSuccess, runCommand, type CommandRunner } from "../common/exec.js";
import { ctrArgv, listImages, type ContainerdTarget } from "./containerd.js";
import { platformFor } from "./oci-layout.js";
import { WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX } from "./layers.js";

/** Where a layer's files go: a directory already holding its parent's files, or an overlay upper. */
export type ExtractionTarget =
  | { readonly kind: "full"; readonly dir: string }
  | {
      readonly kind: "overlay-upper";
      readonly dir: string;
      /** The layers below, uppermost first, as overlay's lowerdir lists them. */
      readonly lowers: readonly string[];
    };

export class UnpackWithoutMountsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnpackWithoutMountsError";
  }
}

/** Pure: the OCI chain ids of a layer stack (image-spec config.md, "Layer ChainID"). */
export function chainIds(diffIds: readonly string[]): string[] {
  const chain: string[] = [];
  for (const diffId of diffIds) {
    const parent = chain.at(-1);
    chain.push(
      parent === undefined
        ? diffId
        : `sha256:${createHash("sha256").update(`${parent} ${diffId}`).digest("hex")}`,
    );
  }
  return chain;
}

/**
 * Pure: where to extract, from `ctr snapshots mounts`, which prints a shell command
 * (`mount -t TYPE SOURCE TARGET -o OPTIONS`, cmd/ctr/commands/snapshots). A bind's source holds the
 * parent's files (native copies them) or nothing (a first layer); an overlay's upperdir holds only
 * this layer's changes.
 */
export function extractionTarget(mountCommand: string): ExtractionTarget {
  const line = mountCommand.trim().split("\n")[0] ?? "";
  const words = line.split(/\s+/);
  const type = words[words.indexOf("-t") + 1];
  const options = (words[words.indexOf("-o") + 1] ?? "").split(",");
  if (words.indexOf("-t") >= 0 && type === "bind") {
    const source = words[words.indexOf("-t") + 2];
    if (source !== undefined && source.startsWith("/")) return { kind: "full", dir: source };
  }
  if (type === "overlay") {
    const upper = options.find((o) => o.startsWith("upperdir="))?.slice("upperdir=".length);
    const lowers = (options.find((o) => o.startsWith("lowerdir="))?.slice("lowerdir=".length) ?? "")
      .split(":")
      .filter(Boolean);
    if (upper !== undefined && upper !== "") return { kind: "overlay-upper", dir: upper, lowers };
  }
  throw new UnpackWithoutMountsError(
    `cannot tell where to unpack from the snapshot's mount: ${JSON.stringify(line)}`,
  );
}

/** What a layer's whiteout entries ask for, as paths relative to the layer's root. */
export interface WhiteoutPlan {
  /** `.wh.NAME`: NAME from the layers below is gone. */
  readonly removed: readonly string[];
  /** `.wh..wh..opq` in DIR: DIR keeps only this layer's children. */
  readonly opaqueDirs: readonly string[];
}

/** Pure: the whiteouts in a layer's member list (`tar -t` output). */
export function whiteoutPlan(members: readonly string[]): WhiteoutPlan {
  const removed: string[] = [];
  const opaqueDirs: string[] = [];
  for (const raw of members) {
    const member = raw.replace(/^\.\//, "").replace(/\/$/, "");
    const slash = member.lastIndexOf("/");
    const dir = slash < 0 ? "" : member.slice(0, slash);
    const base = member.slice(slash + 1);
    if (base === WHITEOUT_OPAQUE_DIR) opaqueDirs.push(dir === "" ? "." : dir);
    else if (base.startsWith(WHITEOUT_PREFIX)) {
      const name = base.slice(WHITEOUT_PREFIX.length);
      removed.push(dir === "" ? name : `${dir}/${name}`);
    }
  }
  return { removed, opaqueDirs };
}

/** Pure: the names a layer itself puts directly in `dir` ("." for its root), whiteouts aside. */
export function namesAddedIn(members: readonly string[], dir: string): Set<string> {
  const prefix = dir === "." ? "" : `${dir}/`;
  const names = new Set<string>();
  for (const raw of members) {
    const member = raw.replace(/^\.\//, "").replace(/\/$/, "");
    if (!member.startsWith(prefix) || member === dir) continue;
    const name = member.slice(prefix.length).split("/")[0] ?? "";
    if (name !== "" && !name.startsWith(WHITEOUT_PREFIX)) names.add(name);
  }
  return names;
}

interface ImageLayers {
  readonly config: string;
  readonly layers: readonly string[];
  readonly diffIds: readonly string[];
}

export interface UnpackTarget extends ContainerdTarget {
  readonly snapshotter: string;
  /** containerd's root: the local content store keeps each blob at content/blobs/sha256/<hex>. */
  readonly containerdRoot: string;
}

function blobPath(target: UnpackTarget, digest: string): string {
  const [algorithm, hex] = digest.split(":");
  return join(
    target.containerdRoot,
    "io.containerd.content.v1.content",
    "blobs",
    algorithm ?? "",
    hex ?? "",
  );
}

async function readJson(target: UnpackTarget, digest: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(blobPath(target, digest), "utf8")) as Record<string, unknown>;
}

interface DescriptorLike {
  readonly digest?: string;
  readonly mediaType?: string;
  readonly platform?: { readonly architecture?: string; readonly os?: string };
}

/** The manifest for this machine's platform, its config, layers and diff ids. */
async function imageLayers(target: UnpackTarget, digest: string): Promise<ImageLayers> {
  let document = await readJson(target, digest);
  const manifests = document["manifests"] as DescriptorLike[] | undefined;
  if (manifests !== undefined) {
    const { architecture } = platformFor(process.arch);
    const chosen = manifests.find(
      (m) =>
        m.platform === undefined ||
        (m.platform.architecture === architecture && m.platform.os === "linux"),
    );
    if (chosen?.digest === undefined) {
      throw new UnpackWithoutMountsError(
        `image index ${digest} has no linux/${architecture} image`,
      );
    }
    document = await readJson(target, chosen.digest);
  }
  const config = (document["config"] as DescriptorLike | undefined)?.digest;
  const layers = ((document["layers"] as DescriptorLike[] | undefined) ?? []).map(
    (l) => l.digest ?? "",
  );
  if (config === undefined || layers.some((l) => l === "")) {
    throw new UnpackWithoutMountsError(
      `manifest for ${digest} names no config or a layer without a digest`,
    );
  }
  const rootfs = (await readJson(target, config))["rootfs"] as { diff_ids?: string[] } | undefined;
  const diffIds = rootfs?.diff_ids ?? [];
  if (diffIds.length !== layers.length) {
    throw new UnpackWithoutMountsError(
      `image config ${config} lists ${diffIds.length} diff ids for ${layers.length} layers`,
    );
  }
  return { config, layers, diffIds };
}

function snapshotsArgv(target: UnpackTarget, args: readonly string[]): string[] {
  return ctrArgv(target, ["snapshots", "--snapshotter", target.snapshotter, ...args]);
}

async function snapshotExists(
  target: UnpackTarget,
  key: string,
  run: CommandRunner,
): Promise<boolean> {
  const result = await run(snapshotsArgv(target, ["info", key]), { timeoutMs: 30_000 });
  return result.exitCode === 0 && result.failure === undefined;
}

/** Applies one layer's whiteouts to the extraction directory, before its files are written. */
async function applyWhiteouts(
  plan: WhiteoutPlan,
  members: readonly string[],
  into: ExtractionTarget,
  run: CommandRunner,
): Promise<void> {
  if (into.kind === "full") {
    for (const path of plan.removed)
      ensureSuccess(await run(["rm", "-rf", "--", join(into.dir, path)]));
    for (const dir of plan.opaqueDirs) {
      // A directory new in this layer has nothing from below to hide.
      const present = await readdir(join(into.dir, dir)).then(
        () => true,
        () => false,
      );
      if (present) {
        ensureSuccess(await run(["find", join(into.dir, dir), "-mindepth", "1", "-delete"]));
      }
    }
    return;
  }
  // overlayfs reads a whiteout as a 0/0 character device, as containerd's OverlayConvertWhiteout
  // writes them (pkg/archive). An opaque directory is an xattr there, which Node cannot set; a
  // whiteout for each name the layers below hold in it, and this layer does not add, hides the
  // same entries.
  const whiteouts = [...plan.removed];
  for (const dir of plan.opaqueDirs) {
    const own = namesAddedIn(members, dir);
    const below = new Set<string>();
    for (const lower of into.lowers) {
      for (const name of await readdir(join(lower, dir)).catch(() => [])) below.add(name);
    }
    for (const name of below) if (!own.has(name)) whiteouts.push(join(dir, name));
    ensureSuccess(await run(["mkdir", "-p", "--", join(into.dir, dir)]));
  }
  for (const path of whiteouts) {
    // Before the layer's own files: its directories may not be in the upper dir yet.
    ensureSuccess(await run(["mkdir", "-p", "--", dirname(join(into.dir, path))]));
    ensureSuccess(await run(["mknod", "--", join(into.dir, path), "c", "0", "0"]));
  }
}

async function unpackLayer(
  target: UnpackTarget,
  layer: string,
  chainId: string,
  parent: string | undefined,
  run: CommandRunner,
): Promise<void> {
  const key = `sandkube-unpack-${randomBytes(6).toString("hex")}`;
  ensureSuccess(
    await run(snapshotsArgv(target, ["prepare", key, ...(parent === undefined ? [] : [parent])]), {
      timeoutMs: 120_000,
    }),
  );
  try {
    const mounts = ensureSuccess(
      await run(snapshotsArgv(target, ["mounts", "/sandkube-unused", key])),
    );
    const into = extractionTarget(mounts.stdout);
    const blob = blobPath(target, layer);
    // GNU tar detects the compression of a file by itself (gzip, zstd where it has zstd).
    const listing = ensureSuccess(await run(["tar", "-tf", blob], { timeoutMs: 300_000 }));
    const members = listing.stdout.split("\n").filter(Boolean);
    await applyWhiteouts(whiteoutPlan(members), members, into, run);
    ensureSuccess(
      await run(
        [
          "tar",
          "-x",
          "--numeric-owner",
          "--same-permissions",
          "--same-owner",
          "--wildcards",
          `--exclude=${WHITEOUT_PREFIX}*`,
          "-f",
          blob,
          "-C",
          into.dir,
        ],
        { timeoutMs: 600_000 },
      ),
    );
    ensureSuccess(
      await run(snapshotsArgv(target, ["commit", chainId, key]), { timeoutMs: 120_000 }),
    );
  } catch (error) {
    await run(snapshotsArgv(target, ["rm", key]), { timeoutMs: 60_000 });
    throw error;
  }
}

/**
 * Unpacks the image whose manifest (or index) is `digest` into the snapshotter, layer by layer,
 * skipping layers already there. Returns the number of layers it unpacked.
 */
export async function unpackImageWithoutMounts(
  target: UnpackTarget,
  digest: string,
  run: CommandRunner = runCommand,
): Promise<number> {
  const image = await imageLayers(target, digest);
  const chain = chainIds(image.diffIds);
  let unpacked = 0;
  for (const [index, chainId] of chain.entries()) {
    if (await snapshotExists(target, chainId, run)) continue;
    await unpackLayer(target, image.layers[index] ?? "", chainId, chain[index - 1], run);
    unpacked += 1;
  }
  const top = chain.at(-1);
  if (top !== undefined) {
    // What containerd's unpacker sets, so garbage collection keeps the chain while the image lives.
    ensureSuccess(
      await run(
        ctrArgv(target, [
          "content",
          "label",
          image.config,
          `containerd.io/gc.ref.snapshot.${target.snapshotter}=${top}`,
        ]),
        { timeoutMs: 30_000 },
      ),
    );
  }
  return unpacked;
}

/**
 * Imports a tarball without unpacking it, then unpacks every image in the CRI namespace whose
 * layers are not all there yet (the names containerd gives an archive's images are its own).
 */
export async function importWithoutMounts(
  target: UnpackTarget,
  file: string,
  run: CommandRunner = runCommand,
): Promise<void> {
  ensureSuccess(
    await run(ctrArgv(target, ["images", "import", "--no-unpack", file]), { timeoutMs: 300_000 }),
  );
  const digests = new Set((await listImages(target, run)).map((image) => image.digest));
  for (const digest of digests) await unpackImageWithoutMounts(target, digest, run);
}
