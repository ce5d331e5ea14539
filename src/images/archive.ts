import { createReadStream, createWriteStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { posix } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { list, type ReadEntry } from "tar";
import { ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME } from "./oci-layout.js";
import { normalizeImageReference } from "./reference.js";

/** The two tarball formats `ctr images import` reads (containerd core/images/archive/importer.go). */
export type ArchiveFormat = "oci" | "docker-archive";

export interface ArchiveSummary {
  readonly format: ArchiveFormat;
  /** The names containerd will give the images; empty when the archive names none. */
  readonly names: readonly string[];
}

/** Thrown with one sentence saying what is wrong with the file; the CLI makes it a UsageError. */
export class UnreadableArchiveError extends Error {
  constructor(file: string, reason: string) {
    super(`${file} ${reason}`);
    this.name = "UnreadableArchiveError";
  }
}

/** The only members that decide the format and the names. */
const METADATA_FILES = new Set(["oci-layout", "index.json", "manifest.json"]);

interface OciIndex {
  readonly manifests?: readonly { readonly annotations?: Readonly<Record<string, string>> }[];
}

interface DockerManifestEntry {
  readonly RepoTags?: readonly string[] | null;
}

function parseJson<T>(file: string, member: string, bytes: Buffer): T {
  try {
    return JSON.parse(bytes.toString("utf8")) as T;
  } catch {
    throw new UnreadableArchiveError(file, `has a ${member} that is not JSON`);
  }
}

/**
 * Pure: what containerd will make of an archive, from its metadata members. Names follow the
 * importer: an OCI layout's io.containerd.image.name as it is, a ref.name only when it is a whole
 * reference, and docker-archive RepoTags normalized (docker.io/library/...).
 */
export function summarizeArchive(
  file: string,
  members: ReadonlyMap<string, Buffer>,
): ArchiveSummary {
  const layout = members.get("oci-layout");
  if (layout !== undefined) {
    const index = members.get("index.json");
    if (index === undefined)
      throw new UnreadableArchiveError(file, "is an OCI layout without index.json");
    const parsed = parseJson<OciIndex>(file, "index.json", index);
    const names: string[] = [];
    for (const manifest of parsed.manifests ?? []) {
      const annotations = manifest.annotations ?? {};
      const name = annotations[ANNOTATION_IMAGE_NAME] ?? annotations[ANNOTATION_REF_NAME];
      if (name !== undefined && /[/:@]/.test(name)) names.push(name);
    }
    return { format: "oci", names };
  }
  const manifest = members.get("manifest.json");
  if (manifest !== undefined) {
    const entries = parseJson<readonly DockerManifestEntry[]>(file, "manifest.json", manifest);
    if (!Array.isArray(entries)) {
      throw new UnreadableArchiveError(
        file,
        "has a manifest.json that is not a docker-archive list",
      );
    }
    const names = entries
      .flatMap((entry) => entry.RepoTags ?? [])
      .map((tag) => {
        try {
          return normalizeImageReference(tag);
        } catch {
          throw new UnreadableArchiveError(
            file,
            `names an invalid image "${tag}" in manifest.json`,
          );
        }
      });
    return { format: "docker-archive", names };
  }
  throw new UnreadableArchiveError(
    file,
    "is neither an OCI image layout (no oci-layout) nor a docker-archive (no manifest.json)",
  );
}

export async function isGzip(file: string): Promise<boolean> {
  const handle = await open(file, "r");
  try {
    const magic = Buffer.alloc(2);
    const { bytesRead } = await handle.read(magic, 0, 2, 0);
    return bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/** Reads the whole archive (a truncated one fails here, not halfway through an import). */
export async function inspectArchive(file: string): Promise<ArchiveSummary> {
  const members = new Map<string, Buffer>();
  // node-tar ends quietly on a half header; a plain tar is whole 512-byte blocks (POSIX ustar).
  const size = await stat(file).then(
    (s) => (s.isFile() ? s.size : null),
    () => null,
  );
  if (size !== null && size % 512 !== 0 && !(await isGzip(file))) {
    throw new UnreadableArchiveError(
      file,
      `is truncated (${size} bytes is not a whole number of 512-byte tar blocks)`,
    );
  }
  try {
    await list({
      file,
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const name = posix.normalize(entry.path);
        if (entry.type !== "File" || !METADATA_FILES.has(name)) return;
        const chunks: Buffer[] = [];
        entry.on("data", (chunk: Buffer) => chunks.push(chunk));
        entry.on("end", () => members.set(name, Buffer.concat(chunks)));
      },
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT"
        ? "does not exist"
        : code === "EACCES"
          ? "cannot be read (permission denied)"
          : code === "EISDIR"
            ? "is a directory, not a tarball"
            : `is not a readable tar archive (${error instanceof Error ? error.message : String(error)})`;
    throw new UnreadableArchiveError(file, reason);
  }
  return summarizeArchive(file, members);
}

/** ctr reads plain tar only (client.Import hands the file to a tar reader as it is). */
export async function gunzipTo(file: string, output: string): Promise<void> {
  await pipeline(createReadStream(file), createGunzip(), createWriteStream(output));
}
