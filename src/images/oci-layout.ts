import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { normalizeImageReference, parseImageReference } from "./reference.js";
import {
  layerEntries,
  OpaqueXattrsUnreadableError,
  readOverlayOpaqueDirectories,
  type OpaqueDirectoryReader,
} from "./layers.js";
import { tarStream, type DirectoryWalkOptions, type TarEntry } from "./tar-writer.js";

/**
 * OCI image layout tarballs (image-spec v1.1 image-layout.md) built from a directory. The JSON
 * builders are pure; `buildOciArchive` does the I/O.
 */

export const MEDIA_TYPE = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** containerd's images.AnnotationImageName: `ctr images import` names the image after it. */
export const ANNOTATION_IMAGE_NAME = "io.containerd.image.name";
export const ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";

/** Docker's and containerd's default PATH (oci/spec.go defaultUnixEnv) when the image sets none. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Platform;
}

export interface Platform {
  readonly architecture: string;
  readonly os: "linux";
  readonly variant?: string;
}

/** Node's process.arch -> the GOARCH names image platforms use (containerd/platforms). */
const ARCHITECTURES: Readonly<Record<string, { architecture: string; variant?: string }>> = {
  x64: { architecture: "amd64" },
  arm64: { architecture: "arm64" },
  arm: { architecture: "arm", variant: "v7" },
  ia32: { architecture: "386" },
  ppc64: { architecture: "ppc64le" },
  s390x: { architecture: "s390x" },
  riscv64: { architecture: "riscv64" },
  loong64: { architecture: "loong64" },
};

export function platformFor(nodeArch: string): Platform {
  const known = ARCHITECTURES[nodeArch];
  if (known === undefined) {
    throw new Error(`no OCI architecture name for Node's process.arch "${nodeArch}"`);
  }
  return { ...known, os: "linux" };
}

export interface ImageConfigOptions {
  readonly entrypoint?: readonly string[];
  readonly cmd?: readonly string[];
  /** K=V; PATH defaults to DEFAULT_PATH unless one of these sets it. */
  readonly env?: readonly string[];
  readonly workingDir?: string;
  readonly user?: string;
}

/** Pure: the PATH default first, then the user's variables; a user's PATH replaces the default. */
export function imageEnv(env: readonly string[]): string[] {
  const setsPath = env.some((entry) => entry.startsWith("PATH="));
  return setsPath ? [...env] : [`PATH=${DEFAULT_PATH}`, ...env];
}

/**
 * Pure: the image config (image-spec config.md). No `created` or `history`, so the same files
 * and options give the same digest on any day.
 */
export function imageConfig(
  options: ImageConfigOptions,
  diffIds: readonly string[],
  platform: Platform,
): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  if (options.user !== undefined) config["User"] = options.user;
  config["Env"] = imageEnv(options.env ?? []);
  if (options.entrypoint !== undefined) config["Entrypoint"] = [...options.entrypoint];
  if (options.cmd !== undefined) config["Cmd"] = [...options.cmd];
  config["WorkingDir"] = options.workingDir ?? "/";
  return {
    architecture: platform.architecture,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    os: platform.os,
    config,
    rootfs: { type: "layers", diff_ids: [...diffIds] },
  };
}

/** Pure: bytes as stored in a blob. JSON.stringify keeps insertion order, so this is stable. */
export function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), "utf8");
}

export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export function describe(mediaType: string, bytes: Buffer): Descriptor {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length };
}

/** Pure: the image manifest (image-spec manifest.md). */
export function imageManifest(
  config: Descriptor,
  layers: readonly Descriptor[],
): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.manifest,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
}

/**
 * Pure: index.json naming the manifest. `name` must be normalized; the ref.name annotation is the
 * tag only, as containerd writes it on export (core/images/archive/reference.go ociReferenceName).
 */
export function imageIndex(
  manifest: Descriptor,
  name: string,
  platform: Platform,
): Record<string, unknown> {
  const reference = parseImageReference(name);
  const refName = reference.tag ?? name;
  return {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.index,
    manifests: [
      {
        mediaType: manifest.mediaType,
        digest: manifest.digest,
        size: manifest.size,
        annotations: { [ANNOTATION_IMAGE_NAME]: name, [ANNOTATION_REF_NAME]: refName },
        platform,
      },
    ],
  };
}

export const OCI_LAYOUT_FILE = { imageLayoutVersion: "1.0.0" } as const;

/** Pure: the path of a blob inside the layout. */
export function blobPath(digest: string): string {
  const [algorithm, hex] = digest.split(":");
  return `blobs/${algorithm}/${hex}`;
}

export interface LayerBlob {
  readonly file: string;
  readonly descriptor: Descriptor;
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry. */
  readonly diffId: string;
}

/** Passes bytes through and keeps their sha256 and count. */
class HashingPassThrough extends Transform {
  readonly hash = createHash("sha256");
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    done(null, chunk);
  }
}

/** Writes `entries` as a gzip layer to `file`, hashing the tar and the gzip in the same pass. */
export async function writeLayer(
  entries: AsyncIterable<TarEntry> | Iterable<TarEntry>,
  file: string,
): Promise<LayerBlob> {
  const uncompressed = new HashingPassThrough();
  const compressed = new HashingPassThrough();
  // gzip's header carries no mtime or name from Node's zlib, so the bytes depend on the input only.
  await pipeline(
    Readable.from(tarStream(entries)),
    uncompressed,
    createGzip({ level: 9 }),
    compressed,
    createWriteStream(file),
  );
  return {
    file,
    diffId: `sha256:${uncompressed.hash.digest("hex")}`,
    descriptor: {
      mediaType: MEDIA_TYPE.layerGzip,
      digest: `sha256:${compressed.hash.digest("hex")}`,
      size: compressed.bytes,
    },
  };
}

export interface BuildOptions extends ImageConfigOptions {
  readonly fromDir: string;
  /** Any valid reference; stored normalized (docker.io/library/...:latest). */
  readonly name: string;
  readonly output: string;
  readonly layer: DirectoryWalkOptions;
  readonly platform?: Platform;
}

export interface LayeredBuildOptions extends Omit<BuildOptions, "fromDir"> {
  /** One directory per layer, lowest first; deletions in them become whiteouts (layers.ts). */
  readonly fromDirs: readonly string[];
  /** Which directories overlayfs marked opaque; default: their xattrs, read with GNU tar. */
  readonly opaqueDirectories?: OpaqueDirectoryReader;
}

export interface BuiltImage {
  readonly name: string;
  readonly output: string;
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  /** The config's rootfs.diff_ids, one per layer in the same order. */
  readonly diffIds: readonly string[];
  /** Bytes of the written tarball. */
  readonly archiveSize: number;
  /** Things the build could not check, one sentence each (e.g. unreadable opaque xattrs). */
  readonly warnings: readonly string[];
}

/** A fixed time for the layout's own entries; their bytes never reach a digest, but stay stable. */
const LAYOUT_MTIME = new Date(0);

function layoutEntry(path: string, bytes: Buffer): TarEntry {
  return {
    path,
    type: "File",
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: LAYOUT_MTIME,
    size: bytes.length,
    content: bytes,
  };
}

function layoutDirectory(path: string): TarEntry {
  return { path, type: "Directory", mode: 0o755, uid: 0, gid: 0, mtime: LAYOUT_MTIME, size: 0 };
}

/** Builds a one-layer image of `fromDir`: buildLayeredOciArchive with one directory. */
export async function buildOciArchive(options: BuildOptions): Promise<BuiltImage> {
  const { fromDir, ...rest } = options;
  return buildLayeredOciArchive({ ...rest, fromDirs: [fromDir] });
}

/**
 * Builds an OCI image layout tarball with one layer per directory, lowest first. The tarball is
 * written next to `output` and renamed into place, so a failed build leaves no half file.
 */
export async function buildLayeredOciArchive(options: LayeredBuildOptions): Promise<BuiltImage> {
  if (options.fromDirs.length === 0) throw new Error("buildLayeredOciArchive: no layers");
  const name = normalizeImageReference(options.name);
  const platform = options.platform ?? platformFor(process.arch);
  const warnings: string[] = [];
  const opaqueDirectories: OpaqueDirectoryReader =
    options.opaqueDirectories ??
    (async (root, directories) => {
      try {
        return await readOverlayOpaqueDirectories(root, directories);
      } catch (error) {
        if (!(error instanceof OpaqueXattrsUnreadableError)) throw error;
        warnings.push(
          `${error.message}; a directory marked opaque only by trusted.overlay.opaque is built as an ordinary one (put an empty .wh..wh..opq file in it instead)`,
        );
        return new Set<string>();
      }
    });
  const work = await mkdtemp(join(tmpdir(), "sandkube-image-"));
  const partial = join(dirname(options.output), `.${process.pid}.sandkube-image.partial`);
  try {
    const layers: LayerBlob[] = [];
    for (const [i, fromDir] of options.fromDirs.entries()) {
      layers.push(
        await writeLayer(
          layerEntries(fromDir, { ...options.layer, opaqueDirectories }),
          join(work, `layer-${i}`),
        ),
      );
    }
    const diffIds = layers.map((layer) => layer.diffId);
    const configBytes = jsonBytes(imageConfig(options, diffIds, platform));
    const config = describe(MEDIA_TYPE.config, configBytes);
    const manifestBytes = jsonBytes(
      imageManifest(
        config,
        layers.map((layer) => layer.descriptor),
      ),
    );
    const manifest = describe(MEDIA_TYPE.manifest, manifestBytes);
    const indexBytes = jsonBytes(imageIndex(manifest, name, platform));

    // Two equal layers are one blob: a layout holds each digest once (image-layout.md "blobs").
    const layerBlobs = new Map(layers.map((layer) => [layer.descriptor.digest, layer]));
    const entries: TarEntry[] = [
      layoutEntry("oci-layout", jsonBytes(OCI_LAYOUT_FILE)),
      layoutEntry("index.json", indexBytes),
      layoutDirectory("blobs"),
      layoutDirectory("blobs/sha256"),
      layoutEntry(blobPath(manifest.digest), manifestBytes),
      layoutEntry(blobPath(config.digest), configBytes),
      ...[...layerBlobs.values()].map((layer): TarEntry => ({
        ...layoutEntry(blobPath(layer.descriptor.digest), Buffer.alloc(0)),
        size: layer.descriptor.size,
        content: { file: layer.file },
      })),
    ];
    await pipeline(Readable.from(tarStream(entries)), createWriteStream(partial));
    await rename(partial, options.output);
    return {
      name,
      output: options.output,
      manifest,
      config,
      layers: layers.map((layer) => layer.descriptor),
      diffIds,
      archiveSize: (await stat(options.output)).size,
      warnings,
    };
  } finally {
    await rm(partial, { force: true });
    await rm(work, { recursive: true, force: true });
  }
}
