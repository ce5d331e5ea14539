import { access, stat } from "node:fs/promises";
import { constants } from "node:fs";
import { delimiter, join } from "node:path";
import { labBinary } from "../../lab/paths.js";
import { ensureSuccess, runCommand, type CommandRunner } from "../common/exec.js";

/** Every image the node can run lives in the CRI plugin's namespace. */
export const CRI_NAMESPACE = "k8s.io";

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Where `ctr` is: the lab's build first, then PATH. A stand-in until `up` and the installer's
 * binary lookup land; then the node state's BinaryPaths.ctr is the answer.
 */
export async function resolveCtr(env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const candidates = [
    labBinary("ctr", env),
    ...(env["PATH"] ?? "")
      .split(delimiter)
      .filter(Boolean)
      .map((dir) => join(dir, "ctr")),
  ];
  for (const candidate of candidates) {
    if (await isExecutable(candidate)) return candidate;
  }
  return null;
}

export interface ContainerdTarget {
  readonly ctr: string;
  readonly socket: string;
}

/** Pure: ctr against the target's socket, in the CRI plugin's namespace. */
export function ctrArgv(target: ContainerdTarget, args: readonly string[]): string[] {
  return [target.ctr, "--address", target.socket, "--namespace", CRI_NAMESPACE, ...args];
}

/** True when containerd answers on the socket (a stale socket file alone is not a running node). */
export async function containerdAnswers(
  target: ContainerdTarget,
  run: CommandRunner = runCommand,
): Promise<boolean> {
  const socketExists = await stat(target.socket).then(
    (s) => s.isSocket(),
    () => false,
  );
  if (!socketExists) return false;
  const result = await run(ctrArgv(target, ["version"]), { timeoutMs: 10_000 });
  return result.exitCode === 0 && result.failure === undefined;
}

export interface ImportOptions extends ContainerdTarget {
  /** The snapshotter the CRI plugin uses, so kubelet's pods find the layers already unpacked. */
  readonly snapshotter: string;
  readonly file: string;
  /**
   * Set where the kernel refuses MS_REC: import without unpacking, then sandkube unpacks each
   * layer itself (src/images/unpack-without-mounts.ts). containerd's root holds the content store.
   */
  readonly withoutMounts?: { readonly containerdRoot: string };
}

/** Pure: the ctr command line that imports an OCI or docker-archive tarball. */
export function importArgv(options: ImportOptions): string[] {
  return ctrArgv(options, [
    "images",
    "import",
    // Through the transfer service (ctr's default since containerd 2.0), the daemon unpacks only for
    // the snapshotters listed in its unpack_config, overlayfs alone by default
    // (plugins/transfer/plugin_defaults_linux.go), and a native import fails with "no unpack
    // platforms defined". --local unpacks client-side into whichever snapshotter is named.
    "--local",
    "--snapshotter",
    options.snapshotter,
    options.file,
  ]);
}

/** Imports a tarball into the node's containerd and unpacks it; throws CommandFailedError. */
export async function importImage(
  options: ImportOptions,
  run: CommandRunner = runCommand,
): Promise<void> {
  if (options.withoutMounts !== undefined) {
    // Loaded on demand: the module imports this one.
    const { importWithoutMounts } = await import("./unpack-without-mounts.js");
    await importWithoutMounts({ ...options, ...options.withoutMounts }, options.file, run);
    return;
  }
  ensureSuccess(await run(importArgv(options), { timeoutMs: 300_000 }));
}

export interface ListedImage {
  readonly name: string;
  readonly digest: string;
  /** As ctr prints it (e.g. "2.1 MiB"): the content size for this machine's platform. */
  readonly size: string;
  readonly platforms: string;
}

const LIST_COLUMNS = ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"] as const;

/**
 * Pure: parses `ctr images ls`. It prints a tabwriter table (cmd/ctr/commands/images/images.go),
 * whose cells line up under the header's words, and SIZE holds a space ("2.1 MiB"), so columns
 * are cut at the header's offsets rather than split on whitespace.
 */
export function parseImageList(output: string): ListedImage[] {
  const lines = output.split("\n").filter((line) => line.trim() !== "");
  const header = lines.shift();
  if (header === undefined) return [];
  const starts = LIST_COLUMNS.map((column) => header.search(new RegExp(`(^|\\s)${column}(\\s|$)`)));
  if (starts.some((start) => start < 0)) {
    throw new Error(`unexpected ctr images ls header: ${header}`);
  }
  const offsets = starts.map((start, i) => (i === 0 ? start : start + 1));
  const cell = (line: string, i: number): string =>
    line.slice(offsets[i], i + 1 < offsets.length ? offsets[i + 1] : undefined).trim();
  return lines.map((line) => ({
    name: cell(line, 0),
    digest: cell(line, 2),
    size: cell(line, 3),
    platforms: cell(line, 4),
  }));
}

export async function listImages(
  target: ContainerdTarget,
  run: CommandRunner = runCommand,
): Promise<ListedImage[]> {
  const result = ensureSuccess(await run(ctrArgv(target, ["images", "ls"]), { timeoutMs: 30_000 }));
  return parseImageList(result.stdout);
}
