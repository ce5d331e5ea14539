/**
 * Local OCI images for the add-ons that run in pods: CoreDNS, rancher's local-path-provisioner and
 * the busybox its helper pods run. Each holds one static binary from the install cache (or Debian's
 * busybox-static), so the node needs no registry: the sandboxes sandkube targets often reach none,
 * which is also why the pause image is built locally (src/images/pause.ts). Same binary, same bytes.
 */
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ensureSuccess, runCommand, type CommandRunner } from "../common/exec.js";
import { busyboxRootfs, DEBIAN_BUSYBOX } from "../images/busybox.js";
import { importImage, listImages, type ImportOptions } from "../images/containerd.js";
import { isStaticElf } from "../images/elf.js";
import { buildOciArchive, type BuiltImage } from "../images/oci-layout.js";
import { COREDNS_VERSION, LOCAL_PATH_PROVISIONER_VERSION } from "../install/components.js";

export const COREDNS_IMAGE = `sandkube.local/coredns:${COREDNS_VERSION}`;
export const LOCAL_PATH_PROVISIONER_IMAGE = `sandkube.local/local-path-provisioner:${LOCAL_PATH_PROVISIONER_VERSION}`;
/** Tagged with the busybox version the image holds: `sandkube.local/busybox:1.35.0`. */
export const BUSYBOX_IMAGE_REPOSITORY = "sandkube.local/busybox";

/** An image of one static binary, plus the few files a Go program looks for. */
export interface BinaryImageSpec {
  readonly name: string;
  /** Where the binary sits in the image, absolute. */
  readonly path: string;
  readonly entrypoint: readonly string[];
  /** Absent: root, and the pod's securityContext decides. */
  readonly user?: string;
}

/**
 * As upstream's image (coredns Dockerfile): /coredns is the entrypoint. Upstream runs it as
 * nonroot with `setcap cap_net_bind_service=+ep /coredns`; these layers carry no xattrs
 * (src/images/tar-writer.ts), and a non-root process keeps no capability across execve without
 * file capabilities or ambient ones (capabilities(7)), which CRI does not set. So no User here:
 * binding port 53 needs uid 0 with NET_BIND_SERVICE, or the Corefile can listen on a port >= 1024.
 */
export const COREDNS_IMAGE_SPEC: BinaryImageSpec = {
  name: COREDNS_IMAGE,
  path: "/coredns",
  entrypoint: ["/coredns"],
};

/**
 * Upstream's v0.0.37 image (package/Dockerfile, FROM scratch) has the binary at
 * /usr/bin/local-path-provisioner and deploy/local-path-storage.yaml starts it by name from PATH.
 * It only talks to the API server (its volumes are made by helper pods), so it runs as nobody.
 */
export const LOCAL_PATH_PROVISIONER_IMAGE_SPEC: BinaryImageSpec = {
  name: LOCAL_PATH_PROVISIONER_IMAGE,
  path: "/usr/bin/local-path-provisioner",
  entrypoint: ["/usr/bin/local-path-provisioner"],
  user: "65534:65534",
};

/** Pure: /etc/passwd of a binary image: root, and nobody for a pod that asks for uid 65534. */
export function binaryImagePasswd(): string {
  return (
    "root:x:0:0:root:/root:/sbin/nologin\n" +
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
  );
}

/** Pure: /etc/group; 65534 is Debian's `nogroup`. */
export function binaryImageGroup(): string {
  return "root:x:0:\nnogroup:x:65534:\n";
}

/** The layer's clock: fixed, so that the same binary gives the same digest on any day. */
const LAYER = { mtime: new Date(0), owner: "root" } as const;

async function requireStaticBinary(path: string, what: string): Promise<void> {
  const isStatic = await isStaticElf(path).catch((error: NodeJS.ErrnoException) => {
    throw new Error(
      `${what} ${path} cannot be read (${error.code ?? error.message}); run \`sandkube install\``,
    );
  });
  // The image holds no dynamic loader or libc; go builds with CGO_ENABLED=0 are static.
  if (!isStatic)
    throw new Error(`${what} ${path} is dynamically linked and cannot run in a one-binary image`);
}

/**
 * Writes an OCI image layout tarball to `outFile` holding `binary` at spec.path, /etc/passwd,
 * /etc/group and a sticky /tmp (klog and Go's os.TempDir write there). Every mode is set
 * explicitly, so the umask of whoever builds it never reaches the layer.
 */
export async function buildBinaryImage(
  spec: BinaryImageSpec,
  binary: string,
  outFile: string,
): Promise<BuiltImage> {
  await requireStaticBinary(binary, spec.name);
  const root = await mkdtemp(join(tmpdir(), "sandkube-addon-image-"));
  try {
    const target = join(root, spec.path);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(binary, target);
    await chmod(target, 0o755);
    await mkdir(join(root, "etc"), { recursive: true });
    await writeFile(join(root, "etc/passwd"), binaryImagePasswd());
    await writeFile(join(root, "etc/group"), binaryImageGroup());
    await mkdir(join(root, "tmp"));
    await chmod(join(root, "etc/passwd"), 0o644);
    await chmod(join(root, "etc/group"), 0o644);
    await chmod(join(root, "tmp"), 0o1777);
    for (let dir = dirname(target); dir !== root; dir = dirname(dir)) await chmod(dir, 0o755);
    await chmod(join(root, "etc"), 0o755);
    return await buildOciArchive({
      fromDir: root,
      name: spec.name,
      output: outFile,
      entrypoint: spec.entrypoint,
      ...(spec.user === undefined ? {} : { user: spec.user }),
      layer: LAYER,
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Pure: "1.35.0" from busybox's banner "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) ...". */
export function parseBusyboxVersion(banner: string): string | null {
  return /^BusyBox v(\d+\.\d+\.\d+)/m.exec(banner)?.[1] ?? null;
}

/** The busybox image's name for this busybox binary. */
export async function busyboxImageName(
  busybox: string = DEBIAN_BUSYBOX,
  run: CommandRunner = runCommand,
): Promise<string> {
  // Run without arguments, busybox prints its banner and applet list and exits 0.
  const result = ensureSuccess(await run([busybox], { timeoutMs: 10_000 }));
  const version = parseBusyboxVersion(result.stdout) ?? parseBusyboxVersion(result.stderr);
  if (version === null)
    throw new Error(`${busybox} printed no "BusyBox vX.Y.Z" banner; is it busybox?`);
  return `${BUSYBOX_IMAGE_REPOSITORY}:${version}`;
}

/**
 * The image local-path-provisioner's helper pods run `/bin/sh /script/setup` in
 * (provisioner.go createHelperPod): busybox with its applets, /tmp and the users of
 * src/images/busybox.ts, no User so the helper is root and can make folders under the data dir.
 */
export async function buildBusyboxImage(
  outFile: string,
  busybox: string = DEBIAN_BUSYBOX,
): Promise<BuiltImage> {
  const name = await busyboxImageName(busybox);
  const root = await mkdtemp(join(tmpdir(), "sandkube-busybox-image-"));
  try {
    await busyboxRootfs(root, busybox);
    for (const dir of ["bin", "etc", "proc", "sys", "dev"]) await chmod(join(root, dir), 0o755);
    await chmod(join(root, "etc/passwd"), 0o644);
    await chmod(join(root, "etc/group"), 0o644);
    return await buildOciArchive({
      fromDir: root,
      name,
      output: outFile,
      cmd: ["/bin/sh"],
      layer: LAYER,
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The add-ons' binaries as `sandkube install` resolved them (Resolution.paths). */
export interface AddonBinaries {
  readonly coredns: string;
  readonly localPathProvisioner: string;
  /** Debian's busybox-static by default. */
  readonly busybox?: string;
}

/** The names to put in the add-ons' manifests (src/addons/manifests.ts AddonImages). */
export interface AddonImageNames {
  readonly coredns: string;
  readonly localPathProvisioner: string;
  readonly busybox: string;
}

export interface AddonImageOutcome {
  readonly name: string;
  /** "present": containerd had the name already, nothing was built. */
  readonly status: "present" | "imported";
  /** The manifest digest, when built here. */
  readonly digest?: string;
}

export interface EnsureAddonImagesResult {
  readonly names: AddonImageNames;
  readonly outcomes: readonly AddonImageOutcome[];
}

/** The node's containerd and the snapshotter its CRI plugin unpacks into. */
export type AddonImageTarget = Omit<ImportOptions, "file">;

/**
 * Imports each add-on image into containerd's k8s.io namespace unless an image of that name is
 * there already. The name carries the pinned version, and the binaries were held against that pin
 * when they were resolved, so a present name is the same build. Archives are written under
 * `workDir` (default: a fresh temporary folder) and removed after the import.
 */
export async function ensureAddonImages(
  target: AddonImageTarget,
  binaries: AddonBinaries,
  options: { readonly workDir?: string; readonly run?: CommandRunner } = {},
): Promise<EnsureAddonImagesResult> {
  const run = options.run ?? runCommand;
  const busybox = binaries.busybox ?? DEBIAN_BUSYBOX;
  const names: AddonImageNames = {
    coredns: COREDNS_IMAGE,
    localPathProvisioner: LOCAL_PATH_PROVISIONER_IMAGE,
    busybox: await busyboxImageName(busybox, run),
  };
  const builds: readonly { name: string; build: (out: string) => Promise<BuiltImage> }[] = [
    {
      name: names.coredns,
      build: (out) => buildBinaryImage(COREDNS_IMAGE_SPEC, binaries.coredns, out),
    },
    {
      name: names.localPathProvisioner,
      build: (out) =>
        buildBinaryImage(LOCAL_PATH_PROVISIONER_IMAGE_SPEC, binaries.localPathProvisioner, out),
    },
    { name: names.busybox, build: (out) => buildBusyboxImage(out, busybox) },
  ];
  const present = new Set((await listImages(target, run)).map((image) => image.name));
  const work = options.workDir ?? (await mkdtemp(join(tmpdir(), "sandkube-addon-images-")));
  await mkdir(work, { recursive: true });
  const outcomes: AddonImageOutcome[] = [];
  try {
    for (const [index, { name, build }] of builds.entries()) {
      if (present.has(name)) {
        outcomes.push({ name, status: "present" });
        continue;
      }
      const file = join(work, `addon-${index}.oci.tar`);
      try {
        const built = await build(file);
        await importImage({ ...target, file }, run);
        outcomes.push({ name, status: "imported", digest: built.manifest.digest });
      } finally {
        await rm(file, { force: true });
      }
    }
  } finally {
    if (options.workDir === undefined) await rm(work, { recursive: true, force: true });
  }
  return { names, outcomes };
}
