import { type Dirent, type Stats } from "node:fs";
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand, type CommandRunner } from "../common/exec.js";
import { statEntry, type DirectoryWalkOptions, type TarEntry } from "./tar-writer.js";

/**
 * One image layer from one directory, with deletions turned into OCI whiteouts (image-spec
 * layer.md "Whiteouts"). A directory says what the layer deletes in either of two ways:
 *
 * - as overlayfs leaves it in an upper directory: a character device 0:0 hides that name, and a
 *   directory with the xattr trusted.overlay.opaque (or user.overlay.opaque, for a `userxattr`
 *   mount) set to "y" hides everything below it in lower layers (kernel
 *   Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories");
 * - as a layer tar says it: a file named `.wh.NAME`, and a file `.wh..wh..opq` in an opaque
 *   directory.
 *
 * Both give the same bytes. The conversion is moby's overlayWhiteoutConverter.ConvertWrite
 * (pkg/archive/archive_linux.go), which the overlay2 graph driver uses to export an upper dir.
 */

export const WHITEOUT_PREFIX = ".wh.";
/** containerd pkg/archive/tar.go whiteoutMetaPrefix: names the layer format keeps for itself. */
export const WHITEOUT_META_PREFIX = ".wh..wh.";
export const WHITEOUT_OPAQUE_DIR = ".wh..wh..opq";
/** The xattrs overlayfs marks an opaque directory with; moby reads the same two. */
export const OPAQUE_XATTRS = ["trusted.overlay.opaque", "user.overlay.opaque"] as const;

/**
 * Whiteouts carry no owner, mode or time of their own: they are never written to disk by an
 * unpacker (containerd pkg/archive/tar.go applyNaive removes the target instead). containerd's
 * ChangeWriter writes them as empty regular files with mode 0, owner 0:0 and, since containerd 2.0,
 * mtime 0 rather than SOURCE_DATE_EPOCH; so does sandkube, which also makes the two source forms
 * give identical bytes.
 */
export const WHITEOUT_MTIME = new Date(0);

/** Thrown with one sentence naming the path and what is wrong with it; the CLI makes it a UsageError. */
export class LayerSourceError extends Error {
  constructor(
    message: string,
    /** The layer's directory, once known; the message's paths are relative to it. */
    readonly layerDir?: string,
  ) {
    super(message);
    this.name = "LayerSourceError";
  }
}

/** What a directory child is, as far as the layer format cares. */
export type ChildKind =
  | { readonly kind: "entry" }
  | { readonly kind: "whiteout"; readonly target: string }
  | { readonly kind: "opaque" };

/** The bits of an lstat that decide whether a name is a whiteout. */
export interface ChildStat {
  readonly isDirectory: boolean;
  readonly isCharacterDevice: boolean;
  readonly rdev: number;
}

function joinPath(directory: string, name: string): string {
  return directory === "" ? name : `${directory}/${name}`;
}

/** Pure: how one child of `directory` (relative to the layer, "" for its root) goes into the tar. */
export function classifyChild(directory: string, name: string, stat: ChildStat): ChildKind {
  const path = joinPath(directory, name);
  if (name === WHITEOUT_OPAQUE_DIR) {
    if (stat.isDirectory) {
      throw new LayerSourceError(`${path} is a directory; an opaque marker must be an empty file`);
    }
    return { kind: "opaque" };
  }
  if (name.startsWith(WHITEOUT_META_PREFIX)) {
    throw new LayerSourceError(
      `${path}: names starting with ${WHITEOUT_META_PREFIX} are reserved by the layer format (only ${WHITEOUT_OPAQUE_DIR} is understood)`,
    );
  }
  if (stat.isCharacterDevice && stat.rdev === 0) {
    if (name.startsWith(WHITEOUT_PREFIX)) {
      throw new LayerSourceError(
        `${path} is an overlay whiteout of a name that starts with ${WHITEOUT_PREFIX}, which a layer cannot express`,
      );
    }
    return { kind: "whiteout", target: name };
  }
  if (name.startsWith(WHITEOUT_PREFIX)) {
    const target = name.slice(WHITEOUT_PREFIX.length);
    if (target === "") throw new LayerSourceError(`${path} is a whiteout of no name`);
    if (stat.isDirectory) {
      throw new LayerSourceError(`${path} is a directory; a whiteout must be an empty file`);
    }
    return { kind: "whiteout", target };
  }
  return { kind: "entry" };
}

/** What to write for one directory's children, in order. */
export type PlannedChild =
  | { readonly kind: "entry"; readonly name: string }
  | { readonly kind: "whiteout"; readonly target: string }
  | { readonly kind: "opaque" };

/** Pure: the tar name of a planned child of `directory`. */
export function plannedName(directory: string, child: PlannedChild): string {
  switch (child.kind) {
    case "entry":
      return joinPath(directory, child.name);
    case "whiteout":
      return joinPath(directory, `${WHITEOUT_PREFIX}${child.target}`);
    case "opaque":
      return joinPath(directory, WHITEOUT_OPAQUE_DIR);
  }
}

/** Sorted as JavaScript sorts strings (UTF-16 code units), as directoryEntries sorts names. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Pure: the order a directory's children go into the tar. The opaque marker comes first, right
 * after the directory's own entry, where moby's ConvertWrite puts it; the rest sort by the name
 * written, so a whiteout sits in the same place whether it came from a device or a `.wh.` file.
 * A name both present and whited out in one layer is refused: overlayfs never makes that, and
 * the image spec gives the whiteout no effect on its own layer, so it can only be a mistake.
 */
export function planDirectory(
  directory: string,
  children: readonly { readonly name: string; readonly kind: ChildKind }[],
  opaqueByXattr: boolean,
): PlannedChild[] {
  const present = new Set<string>();
  const whitedOut = new Set<string>();
  let opaque = opaqueByXattr;
  for (const child of children) {
    if (child.kind.kind === "entry") present.add(child.name);
    else if (child.kind.kind === "whiteout") whitedOut.add(child.kind.target);
    else opaque = true;
  }
  for (const target of whitedOut) {
    if (present.has(target)) {
      throw new LayerSourceError(
        `${joinPath(directory, target)} is both in the layer and whited out by it; keep one`,
      );
    }
  }
  const rest: PlannedChild[] = [
    ...[...present].map((name): PlannedChild => ({ kind: "entry", name })),
    ...[...whitedOut].map((target): PlannedChild => ({ kind: "whiteout", target })),
  ].sort((a, b) => byCodeUnits(plannedName(directory, a), plannedName(directory, b)));
  return opaque ? [{ kind: "opaque" }, ...rest] : rest;
}

/** Pure: the tar entry of a whiteout marker (a deleted name, or the opaque marker). */
export function whiteoutEntry(path: string): TarEntry {
  return {
    path,
    type: "File",
    mode: 0,
    uid: 0,
    gid: 0,
    mtime: WHITEOUT_MTIME,
    size: 0,
    content: Buffer.alloc(0),
  };
}

/** Reads which directories (relative to `root`, "" for root itself) overlayfs marked opaque. */
export type OpaqueDirectoryReader = (
  root: string,
  directories: readonly string[],
) => Promise<ReadonlySet<string>>;

export interface LayerWalkOptions extends DirectoryWalkOptions {
  /** Default: readOverlayOpaqueDirectories with GNU tar. */
  readonly opaqueDirectories?: OpaqueDirectoryReader;
}

/** Every directory under `root`, relative, "" for root itself; symlinks are not followed. */
async function listDirectories(root: string): Promise<string[]> {
  const found = [""];
  async function walk(relative: string): Promise<void> {
    const children: Dirent[] = await readdir(join(root, relative), { withFileTypes: true });
    for (const child of children) {
      if (!child.isDirectory()) continue;
      const path = joinPath(relative, child.name);
      found.push(path);
      await walk(path);
    }
  }
  await walk("");
  return found;
}

/**
 * The layer tar's entries for `dir`: directoryEntries' walk (same owners, modes, mtimes, links),
 * with overlay and `.wh.` deletions written as OCI whiteouts.
 */
export async function* layerEntries(
  dir: string,
  options: LayerWalkOptions,
): AsyncGenerator<TarEntry> {
  const reader = options.opaqueDirectories ?? readOverlayOpaqueDirectories;
  const opaqueDirs = await reader(dir, await listDirectories(dir));
  const seenInodes = new Map<string, string>();
  async function* walk(absolute: string, relative: string): AsyncGenerator<TarEntry> {
    const stats = new Map<string, Stats>();
    const children: { name: string; kind: ChildKind }[] = [];
    for (const name of await readdir(absolute)) {
      const stat = await lstat(join(absolute, name));
      stats.set(name, stat);
      const kind = classifyChild(relative, name, {
        isDirectory: stat.isDirectory(),
        isCharacterDevice: stat.isCharacterDevice(),
        rdev: stat.rdev,
      });
      children.push({ name, kind });
    }
    for (const child of planDirectory(relative, children, opaqueDirs.has(relative))) {
      const path = plannedName(relative, child);
      if (child.kind !== "entry") {
        yield whiteoutEntry(path);
        continue;
      }
      const childAbsolute = join(absolute, child.name);
      const stat = stats.get(child.name);
      if (stat === undefined) continue;
      const entry = await statEntry(childAbsolute, path, stat, options, seenInodes);
      if (entry === null) continue;
      yield entry;
      if (entry.type === "Directory") yield* walk(childAbsolute, path);
    }
  }
  try {
    yield* walk(dir, "");
  } catch (error) {
    if (error instanceof LayerSourceError && error.layerDir === undefined) {
      throw new LayerSourceError(error.message, dir);
    }
    throw error;
  }
}

const BLOCK = 512;

function cString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString("utf8");
}

function octal(block: Buffer, start: number, length: number): number {
  const text = cString(block, start, length).trim();
  return text === "" ? 0 : parseInt(text, 8);
}

/** Pure: the records of a PAX extended header ("LEN key=value\n", LEN counting bytes). */
export function parsePaxRecords(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space < 0) break;
    const length = Number(data.subarray(offset, space).toString("ascii"));
    if (!Number.isSafeInteger(length) || length <= 0) break;
    const record = data.subarray(space + 1, offset + length - 1);
    const equals = record.indexOf(0x3d);
    if (equals > 0) {
      records.set(record.subarray(0, equals).toString("utf8"), record.subarray(equals + 1));
    }
    offset += length;
  }
  return records;
}

/** "./a/b/" -> "a/b"; "./" and "." -> "". */
function normalizeMemberName(name: string): string {
  const trimmed = name.replace(/\/+$/, "").replace(/^(\.\/)+/, "");
  return trimmed === "." ? "" : trimmed;
}

const XATTR_RECORD = "SCHILY.xattr.";

/**
 * Pure: each member's extended attributes, from a POSIX (pax) tar as GNU tar writes it with
 * --xattrs: an `x` header whose SCHILY.xattr.NAME records belong to the member after it.
 */
export function tarMemberXattrs(tar: Buffer): Map<string, Map<string, Buffer>> {
  const members = new Map<string, Map<string, Buffer>>();
  let pending: Map<string, Buffer> | undefined;
  for (let offset = 0; offset + BLOCK <= tar.length;) {
    const block = tar.subarray(offset, offset + BLOCK);
    if (block.every((byte) => byte === 0)) break;
    const size = octal(block, 124, 12);
    const type = String.fromCharCode(block[156] ?? 0);
    const dataStart = offset + BLOCK;
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === "x") {
      pending = parsePaxRecords(tar.subarray(dataStart, dataStart + size));
      continue;
    }
    if (type === "g") continue;
    const prefix = cString(block, 345, 155);
    const name = cString(block, 0, 100);
    const paxPath = pending?.get("path")?.toString("utf8");
    const path = normalizeMemberName(paxPath ?? (prefix === "" ? name : `${prefix}/${name}`));
    const xattrs = new Map<string, Buffer>();
    for (const [key, value] of pending ?? []) {
      if (key.startsWith(XATTR_RECORD)) xattrs.set(key.slice(XATTR_RECORD.length), value);
    }
    members.set(path, xattrs);
    pending = undefined;
  }
  return members;
}

/** Pure: the directories whose overlay opaque xattr is "y" ("x" on Linux 6.7+ is not opacity). */
export function opaqueFromXattrs(
  members: ReadonlyMap<string, ReadonlyMap<string, Buffer>>,
): Set<string> {
  const opaque = new Set<string>();
  for (const [path, xattrs] of members) {
    if (OPAQUE_XATTRS.some((name) => xattrs.get(name)?.toString("utf8") === "y")) opaque.add(path);
  }
  return opaque;
}

/** Thrown when the xattrs cannot be read; layerEntries' caller decides whether that is fatal. */
export class OpaqueXattrsUnreadableError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "OpaqueXattrsUnreadableError";
  }
}

/**
 * Node has no getxattr, and getfattr (Debian's `attr`) is often absent, so GNU tar reads them: it
 * archives just the directories (--no-recursion), keeping only the overlay xattrs. trusted.* is
 * listed only to a process with CAP_SYS_ADMIN (xattr(7)), so as another user a trusted.overlay
 * opaque directory is not seen, exactly as overlayfs itself would not honour it.
 */
export async function readOverlayOpaqueDirectories(
  root: string,
  directories: readonly string[],
  run: CommandRunner = runCommand,
): Promise<ReadonlySet<string>> {
  const work = await mkdtemp(join(tmpdir(), "sandkube-xattrs-"));
  try {
    const list = join(work, "directories");
    const archive = join(work, "directories.tar");
    await writeFile(list, directories.map((d) => (d === "" ? "./" : `./${d}`)).join("\0") + "\0");
    const result = await run(
      [
        "tar",
        "--create",
        "--file",
        archive,
        "--directory",
        root,
        "--no-recursion",
        "--format=posix",
        "--xattrs",
        ...OPAQUE_XATTRS.map((name) => `--xattrs-include=${name}`),
        "--null",
        "--verbatim-files-from",
        "--files-from",
        list,
      ],
      { timeoutMs: 120_000 },
    );
    if (result.exitCode !== 0 || result.failure !== undefined) {
      const why = result.failure ?? result.stderr.trim().split("\n").slice(-1)[0] ?? "";
      throw new OpaqueXattrsUnreadableError(
        `GNU tar could not read the directories' xattrs under ${root} (${why || `exit status ${result.exitCode}`})`,
      );
    }
    return opaqueFromXattrs(tarMemberXattrs(await readFile(archive)));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
