import { createReadStream, type Stats } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { Header, Pax } from "tar";

/**
 * A deterministic tar writer: the bytes depend only on the entries given, never on the machine,
 * the user or the clock. node-tar's `create` cannot promise that here: its `portable` mode drops
 * group and other write bits (so /tmp's 1777 would become 1755, tar/dist/esm/mode-fix.js) and
 * writes the packing user's name into `uname`. So the walk is ours and node-tar encodes headers.
 */

export type TarEntryType =
  "File" | "Directory" | "SymbolicLink" | "Link" | "CharacterDevice" | "BlockDevice" | "FIFO";

export interface TarEntry {
  /** Relative, "/"-separated; directories without the trailing slash. */
  readonly path: string;
  readonly type: TarEntryType;
  /** Permission bits with setuid, setgid and sticky (07777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: Date;
  /** Bytes of content; 0 for everything but files. */
  readonly size: number;
  /** Symlink target, or the earlier entry's path for a hard link. */
  readonly linkpath?: string;
  readonly devmajor?: number;
  readonly devminor?: number;
  /** A file's bytes: a buffer, or the path of a file to stream that must still be `size` long. */
  readonly content?: Buffer | { readonly file: string };
}

const BLOCK = 512;

/** Pure: the header block(s) for one entry, with a PAX header first when a field overflows ustar. */
export function tarHeader(entry: TarEntry): Buffer {
  const path = entry.type === "Directory" ? `${entry.path}/` : entry.path;
  const fields = {
    path,
    mode: entry.mode & 0o7777,
    uid: entry.uid,
    gid: entry.gid,
    size: entry.type === "File" ? entry.size : 0,
    mtime: entry.mtime,
    type: entry.type,
    linkpath: entry.linkpath ?? "",
    uname: "",
    gname: "",
    devmaj: entry.devmajor ?? 0,
    devmin: entry.devminor ?? 0,
  };
  const header = new Header(fields);
  const needsPax = header.encode();
  const block = header.block;
  if (block === undefined) throw new Error(`tar: no header block for ${path}`);
  if (!needsPax) return block;
  const pax = new Pax({
    path,
    ...(entry.linkpath === undefined ? {} : { linkpath: entry.linkpath }),
    size: fields.size,
    uid: entry.uid,
    gid: entry.gid,
    mtime: entry.mtime,
  }).encode();
  return Buffer.concat([pax, block]);
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** The tar stream of `entries`, ending with the two zero blocks. */
export async function* tarStream(
  entries: AsyncIterable<TarEntry> | Iterable<TarEntry>,
): AsyncGenerator<Buffer> {
  for await (const entry of entries) {
    yield tarHeader(entry);
    if (entry.type !== "File" || entry.size === 0) continue;
    const content = entry.content;
    if (content === undefined) throw new Error(`tar: ${entry.path} has no content`);
    if (Buffer.isBuffer(content)) {
      if (content.length !== entry.size) throw new Error(`tar: ${entry.path} size mismatch`);
      yield content;
    } else {
      let written = 0;
      for await (const chunk of createReadStream(content.file, { end: entry.size - 1 })) {
        const bytes = chunk as Buffer;
        written += bytes.length;
        yield bytes;
      }
      if (written !== entry.size) {
        throw new Error(
          `tar: ${content.file} shrank while it was archived (${written} of ${entry.size} bytes)`,
        );
      }
    }
    yield padding(entry.size);
  }
  yield Buffer.alloc(2 * BLOCK);
}

export interface DirectoryWalkOptions {
  /** Every entry's mtime, so the same files give the same bytes whenever they were copied. */
  readonly mtime: Date;
  /** "root": every entry 0:0, as a rootfs built by an unprivileged user must be; else the files' own. */
  readonly owner: "root" | "preserve";
}

/** linux/kdev_t.h's new_decode_dev, as glibc's major()/minor() do. */
export function deviceNumbers(rdev: number): { devmajor: number; devminor: number } {
  const value = BigInt(rdev);
  const major = ((value >> 8n) & 0xfffn) | ((value >> 32n) & ~0xfffn);
  const minor = (value & 0xffn) | ((value >> 12n) & ~0xffn);
  return { devmajor: Number(major), devminor: Number(minor) };
}

/**
 * One entry from its lstat, or null for a socket (tar has no type for them). `seenInodes` maps an
 * inode to the first path written for it, so later paths of a hard-linked file become links.
 */
export async function statEntry(
  absolute: string,
  path: string,
  stat: Stats,
  options: DirectoryWalkOptions,
  seenInodes: Map<string, string>,
): Promise<TarEntry | null> {
  const base = {
    path,
    mode: stat.mode & 0o7777,
    uid: options.owner === "root" ? 0 : stat.uid,
    gid: options.owner === "root" ? 0 : stat.gid,
    mtime: options.mtime,
    size: 0,
  };
  if (stat.isDirectory()) return { ...base, type: "Directory" };
  if (stat.isFile()) {
    const inode = `${stat.dev}:${stat.ino}`;
    const first = stat.nlink > 1 ? seenInodes.get(inode) : undefined;
    if (first !== undefined) return { ...base, type: "Link", linkpath: first };
    if (stat.nlink > 1) seenInodes.set(inode, path);
    return { ...base, type: "File", size: stat.size, content: { file: absolute } };
  }
  if (stat.isSymbolicLink()) {
    return { ...base, type: "SymbolicLink", linkpath: await readlink(absolute) };
  }
  if (stat.isCharacterDevice()) {
    return { ...base, type: "CharacterDevice", ...deviceNumbers(stat.rdev) };
  }
  if (stat.isBlockDevice()) return { ...base, type: "BlockDevice", ...deviceNumbers(stat.rdev) };
  if (stat.isFIFO()) return { ...base, type: "FIFO" };
  return null;
}

/**
 * Every entry under `dir` (not `dir` itself), depth first with names sorted, so the order never
 * depends on the filesystem's readdir order. Sockets are skipped: tar has no type for them.
 */
export async function* directoryEntries(
  dir: string,
  options: DirectoryWalkOptions,
): AsyncGenerator<TarEntry> {
  const seenInodes = new Map<string, string>();
  async function* walk(absolute: string, relative: string): AsyncGenerator<TarEntry> {
    const names = (await readdir(absolute)).sort();
    for (const name of names) {
      const childAbsolute = join(absolute, name);
      const path = relative === "" ? name : `${relative}/${name}`;
      const stat = await lstat(childAbsolute);
      const entry = await statEntry(childAbsolute, path, stat, options, seenInodes);
      if (entry === null) continue;
      yield entry;
      if (entry.type === "Directory") yield* walk(childAbsolute, path);
    }
  }
  yield* walk(dir, "");
}
