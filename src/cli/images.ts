import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { CommandFailedError } from "../common/exec.js";
import {
  gunzipTo,
  inspectArchive,
  isGzip,
  UnreadableArchiveError,
  type ArchiveSummary,
} from "../images/archive.js";
import {
  containerdAnswers,
  importImage,
  listImages,
  resolveCtr,
  type ImportOptions,
  type ListedImage,
} from "../images/containerd.js";
import { LayerSourceError } from "../images/layers.js";
import { buildLayeredOciArchive, type BuiltImage } from "../images/oci-layout.js";
import {
  InvalidReferenceError,
  parseImageReference,
  formatImageReference,
} from "../images/reference.js";
import { nodeImportTarget } from "../node/image-target.js";
import { nodeLayout } from "../node/layout.js";
import { registryHostsDir } from "../plan/containerd-config.js";
import { parseCredentialsFile, type RegistryLogin } from "../registry/credentials.js";
import {
  ctrFailureLine,
  pullArgv,
  pushArgv,
  runWithLogin,
  type PullTarget,
} from "../registry/transfer.js";
import { readNodeState } from "../node/state.js";
import type { Command } from "./main.js";
import { renderTable } from "./table.js";
import { UsageError } from "./usage-error.js";

export const DEFAULT_DATA_DIR = "/var/lib/sandkube";

const USAGE = `usage: sandkube images <build|import|ls|pull|push> [options]

Images for the node: build one from local files, import a tarball, list them, pull from or push
to a registry.

  sandkube images build --from-dir DIR [--from-dir DIR]... --name NAME [--entrypoint ARG]...
                        [--cmd ARG]... [--env K=V]... [--workdir DIR] [--user USER]
                        [--preserve-owner] [--output FILE] [--data-dir DIR] [--json]
      Makes an OCI image with one layer per --from-dir, lowest first (owned by 0:0 unless
      --preserve-owner; the same files give the same digest). In an upper layer, a deletion is
      an overlayfs whiteout (character device 0:0) or an empty file .wh.NAME, and an opaque
      directory has trusted.overlay.opaque=y or an empty file .wh..wh..opq; they become OCI
      whiteouts. Imports the image into the running node, and/or writes it to FILE.
      --entrypoint and --cmd take one argument each time they are given, or a JSON array
      (--entrypoint '["/bin/sh","-c"]'). PATH defaults to the usual Linux PATH.

  sandkube images import FILE [--data-dir DIR] [--json]
      Imports an OCI image layout or docker-archive tarball (plain or gzip) into the node.

  sandkube images ls [--data-dir DIR] [--json]
      Lists the node's images (containerd namespace k8s.io): name, digest, size.

  sandkube images pull REF [--credentials FILE] [--data-dir DIR] [--json]
  sandkube images push REF [--credentials FILE] [--data-dir DIR] [--json]
      Pulls REF into the node, or pushes the node's image REF to the registry REF names, through
      the node's containerd: its proxy settings and its registry configuration (mirrors, CA,
      skip-verify; docs/registries.md). The login for REF's registry comes from FILE, a docker
      config.json, else from the node's own (kubelet's config.json); never from the command line.

  --data-dir DIR   the node's data dir (default ${DEFAULT_DATA_DIR})

Exit status: 0 on success, 1 when containerd refuses, 2 on bad usage or no running node.`;

export interface BuildArgs {
  /** One per layer, lowest first. */
  readonly fromDirs: readonly string[];
  /** Normalized: docker.io/library/busybox:latest. */
  readonly name: string;
  readonly entrypoint?: readonly string[];
  readonly cmd?: readonly string[];
  readonly env: readonly string[];
  readonly workdir?: string;
  readonly user?: string;
  readonly preserveOwner: boolean;
  readonly output: string | null;
}

export type ImagesArgs =
  | { readonly action: "help" }
  | {
      readonly action: "build";
      readonly dataDir: string;
      readonly json: boolean;
      readonly build: BuildArgs;
    }
  | {
      readonly action: "import";
      readonly dataDir: string;
      readonly json: boolean;
      readonly file: string;
    }
  | { readonly action: "ls"; readonly dataDir: string; readonly json: boolean }
  | {
      readonly action: "pull" | "push";
      readonly dataDir: string;
      readonly json: boolean;
      /** Normalized: docker.io/library/busybox:latest. */
      readonly ref: string;
      /** The registry REF names, host[:port], as credentials files key it. */
      readonly registry: string;
      readonly credentials: string | null;
    };

const VALUE_EXAMPLES: Record<string, string> = {
  "--data-dir": DEFAULT_DATA_DIR,
  "--from-dir": "./rootfs",
  "--name": "busybox:local",
  "--entrypoint": "/bin/sh",
  "--cmd": "/bin/sh",
  "--env": "KEY=value",
  "--workdir": "/",
  "--user": "1000:1000",
  "--output": "image.tar",
  "--credentials": "registry-auth.json",
};

type Action = "build" | "import" | "ls" | "pull" | "push";
const ACTIONS: readonly Action[] = ["build", "import", "ls", "pull", "push"];

function isAction(word: string): word is Action {
  return (ACTIONS as readonly string[]).includes(word);
}

const FLAGS_OF: Record<Action, readonly string[]> = {
  build: [
    "--from-dir",
    "--name",
    "--entrypoint",
    "--cmd",
    "--env",
    "--workdir",
    "--user",
    "--preserve-owner",
    "--output",
    "--data-dir",
    "--json",
  ],
  import: ["--data-dir", "--json"],
  ls: ["--data-dir", "--json"],
  pull: ["--credentials", "--data-dir", "--json"],
  push: ["--credentials", "--data-dir", "--json"],
};

/** One --entrypoint/--cmd value: a JSON array (a Dockerfile's exec form) or one argument. */
function argvValue(flag: string, value: string): string[] {
  if (!value.startsWith("[")) return [value];
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || !parsed.every((item): item is string => typeof item === "string")) {
    throw new UsageError(
      `images build: ${flag} ${value} is not a JSON array of strings; write e.g. ${flag} '["/bin/sh","-c"]'.`,
    );
  }
  return parsed;
}

/** Pure: argv -> what to do, or a UsageError naming the bad argument. */
export function parseImagesArgs(args: readonly string[]): ImagesArgs {
  const [action, ...rest] = args;
  if (action === undefined || action === "--help" || action === "-h" || action === "help") {
    if (action === undefined) {
      throw new UsageError(
        "images: say what to do: build, import, ls, pull or push. Run `sandkube images --help`.",
      );
    }
    return { action: "help" };
  }
  if (!isAction(action)) {
    throw new UsageError(
      `images: unknown action "${action}". Use build, import, ls, pull or push.`,
    );
  }
  const allowed = FLAGS_OF[action];
  let dataDir = DEFAULT_DATA_DIR;
  let json = false;
  const fromDirs: string[] = [];
  let name: string | null = null;
  let entrypoint: string[] | undefined;
  let cmd: string[] | undefined;
  const env: string[] = [];
  let workdir: string | undefined;
  let user: string | undefined;
  let preserveOwner = false;
  let output: string | null = null;
  let credentials: string | null = null;
  const positional: string[] = [];

  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] ?? "";
    if (arg === "--help" || arg === "-h") return { action: "help" };
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const [flag, inline] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    if (!allowed.includes(flag)) {
      throw new UsageError(
        `images ${action}: unknown argument "${arg}". Run \`sandkube images --help\` for the options.`,
      );
    }
    const takesValue = flag in VALUE_EXAMPLES;
    if (inline !== undefined && !takesValue) {
      throw new UsageError(`images ${action}: ${flag} takes no value (got "${arg}").`);
    }
    const value = (): string => {
      const v = inline ?? rest[++i];
      if (v === undefined || v === "") {
        throw new UsageError(
          `images ${action}: ${flag} needs a value, e.g. ${flag} ${VALUE_EXAMPLES[flag]}`,
        );
      }
      return v;
    };
    switch (flag) {
      case "--json":
        json = true;
        break;
      case "--preserve-owner":
        preserveOwner = true;
        break;
      case "--data-dir":
        dataDir = value();
        break;
      case "--from-dir":
        fromDirs.push(value());
        break;
      case "--name":
        name = value();
        break;
      case "--entrypoint":
        entrypoint = [...(entrypoint ?? []), ...argvValue(flag, value())];
        break;
      case "--cmd":
        cmd = [...(cmd ?? []), ...argvValue(flag, value())];
        break;
      case "--env": {
        const v = value();
        if (!/^[^=\s]+=/.test(v)) {
          throw new UsageError(
            `images build: --env ${v} must be KEY=value, e.g. --env LANG=C.UTF-8`,
          );
        }
        env.push(v);
        break;
      }
      case "--workdir":
        workdir = value();
        if (!workdir.startsWith("/")) {
          throw new UsageError(
            `images build: --workdir ${workdir} must be an absolute path, e.g. --workdir /`,
          );
        }
        break;
      case "--user":
        user = value();
        break;
      case "--output":
        output = value();
        break;
      case "--credentials":
        credentials = value();
        break;
    }
  }

  const common = { dataDir: resolve(dataDir), json };
  if (action === "ls") {
    if (positional.length > 0)
      throw new UsageError(`images ls: unexpected argument "${positional[0]}".`);
    return { action, ...common };
  }
  if (action === "import") {
    if (positional.length !== 1) {
      throw new UsageError(
        positional.length === 0
          ? "images import: name the tarball to import, e.g. sandkube images import busybox.tar"
          : `images import: one tarball at a time (got ${positional.length}: ${positional.join(" ")}).`,
      );
    }
    return { action, ...common, file: resolve(positional[0] ?? "") };
  }
  if (action === "pull" || action === "push") {
    if (positional.length !== 1) {
      throw new UsageError(
        positional.length === 0
          ? `images ${action}: name the image, e.g. sandkube images ${action} 127.0.0.1:5000/app:dev`
          : `images ${action}: one image at a time (got ${positional.length}: ${positional.join(" ")}).`,
      );
    }
    const raw = positional[0] ?? "";
    try {
      const reference = parseImageReference(raw);
      return {
        action,
        ...common,
        ref: formatImageReference(reference),
        registry: reference.domain,
        credentials: credentials === null ? null : resolve(credentials),
      };
    } catch (error) {
      if (error instanceof InvalidReferenceError)
        throw new UsageError(`images ${action}: ${error.message}.`);
      throw error;
    }
  }
  if (positional.length > 0)
    throw new UsageError(`images build: unexpected argument "${positional[0]}".`);
  if (fromDirs.length === 0) {
    throw new UsageError(
      "images build: --from-dir DIR is required (the files of the image; repeat it for more layers, lowest first).",
    );
  }
  if (name === null)
    throw new UsageError("images build: --name NAME is required, e.g. --name busybox:local");
  let normalized: string;
  try {
    const reference = parseImageReference(name);
    if (reference.digest !== null) {
      throw new UsageError(
        `images build: --name ${name} has a digest; a built image gets its digest from its content, so give a tag instead.`,
      );
    }
    normalized = formatImageReference(reference);
  } catch (error) {
    if (error instanceof InvalidReferenceError)
      throw new UsageError(`images build: --name ${error.message}.`);
    throw error;
  }
  return {
    action,
    ...common,
    build: {
      fromDirs: fromDirs.map((dir) => resolve(dir)),
      name: normalized,
      ...(entrypoint === undefined ? {} : { entrypoint }),
      ...(cmd === undefined ? {} : { cmd }),
      env,
      ...(workdir === undefined ? {} : { workdir }),
      ...(user === undefined ? {} : { user }),
      preserveOwner,
      output: output === null ? null : resolve(output),
    },
  };
}

/** The node's containerd, the snapshotter its CRI plugin unpacks into, and who unpacks. */
type NodeImageTarget = Omit<ImportOptions, "file">;

/** The running node's containerd, or a sentence saying why there is none. */
async function runningNode(dataDir: string): Promise<NodeImageTarget | string> {
  const layout = nodeLayout(dataDir);
  let state: Awaited<ReturnType<typeof readNodeState>>;
  try {
    state = await readNodeState(layout);
  } catch (error) {
    return `the node state ${layout.stateFile} cannot be read (${error instanceof Error ? error.message : String(error)})`;
  }
  if (state === undefined) return `no node in ${dataDir} (no ${layout.stateFile})`;
  const ctr = state.config.binaries.ctr || (await resolveCtr());
  if (ctr === null) return "no ctr binary: run `sandkube install`";
  const target = nodeImportTarget(state.config, layout, ctr);
  if (!(await containerdAnswers(target))) {
    return `the node in ${dataDir} is not running (containerd does not answer on ${layout.containerdSocket})`;
  }
  return target;
}

async function requireRunningNode(action: string, dataDir: string): Promise<NodeImageTarget> {
  const node = await runningNode(dataDir);
  if (typeof node === "string") {
    throw new UsageError(
      `images ${action}: ${node}. Start it with \`sandkube up\`, or pass --data-dir DIR.`,
    );
  }
  return node;
}

/**
 * containerd's own last line is the clearest thing to show, with the command that failed. Not a
 * UsageError: the input was fine and containerd said no, so exit status 1.
 */
function reportContainerdFailure(action: string, error: unknown): number {
  if (!(error instanceof CommandFailedError)) throw error;
  const stderr = error.result.stderr.trim().split("\n").slice(-1)[0] ?? "";
  process.stderr.write(
    `sandkube: images ${action}: containerd refused: ${stderr || error.message} (${error.result.argv.join(" ")})\n`,
  );
  return 1;
}

/** Output file names keep the reference readable: docker.io/library/busybox:x -> busybox_x.tar. */
export function defaultOutputName(name: string): string {
  const reference = parseImageReference(name);
  const last = reference.path.split("/").pop() ?? "image";
  return `${last}${reference.tag === null ? "" : `_${reference.tag}`}.tar`;
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function runBuild(dataDir: string, json: boolean, build: BuildArgs): Promise<number> {
  for (const fromDir of build.fromDirs) {
    if (!(await isDirectory(fromDir))) {
      throw new UsageError(`images build: --from-dir ${fromDir} is not a directory.`);
    }
  }
  const node = await runningNode(dataDir);
  if (typeof node === "string" && build.output === null) {
    throw new UsageError(
      `images build: ${node}, so there is nowhere to put the image. Start the node with \`sandkube up\`, or pass --output FILE to write the tarball.`,
    );
  }
  const layout = nodeLayout(dataDir);
  const output = build.output ?? join(layout.imageDir, defaultOutputName(build.name));
  if (build.output === null) await mkdir(layout.imageDir, { recursive: true });
  else if (!(await isDirectory(resolve(output, "..")))) {
    throw new UsageError(`images build: --output ${output}: its folder does not exist.`);
  }
  const sourceDateEpoch = Number(process.env["SOURCE_DATE_EPOCH"] ?? "0");
  let built: BuiltImage;
  try {
    built = await buildLayeredOciArchive({
      fromDirs: build.fromDirs,
      name: build.name,
      output,
      ...(build.entrypoint === undefined ? {} : { entrypoint: build.entrypoint }),
      ...(build.cmd === undefined ? {} : { cmd: build.cmd }),
      env: build.env,
      ...(build.workdir === undefined ? {} : { workingDir: build.workdir }),
      ...(build.user === undefined ? {} : { user: build.user }),
      layer: {
        // The reproducible-builds convention: SOURCE_DATE_EPOCH, else the epoch.
        mtime: new Date((Number.isFinite(sourceDateEpoch) ? sourceDateEpoch : 0) * 1000),
        owner: build.preserveOwner ? "preserve" : "root",
      },
    });
  } catch (error) {
    if (error instanceof LayerSourceError) {
      throw new UsageError(`images build: --from-dir ${error.layerDir ?? "?"}: ${error.message}.`);
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "ENOENT" || code === "ELOOP") {
      const path = (error as NodeJS.ErrnoException).path ?? "";
      const under = build.fromDirs.find((dir) => path.startsWith(`${dir}/`)) ?? build.fromDirs[0];
      throw new UsageError(
        `images build: cannot read ${path} (${code}) under --from-dir ${under}.`,
      );
    }
    throw error;
  }
  for (const warning of built.warnings) {
    process.stderr.write(`sandkube: images build: warning: ${warning}\n`);
  }
  let imported = false;
  if (typeof node !== "string") {
    try {
      await importImage({ ...node, file: built.output });
    } catch (error) {
      return reportContainerdFailure("build", error);
    }
    imported = true;
  }
  if (json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          name: built.name,
          digest: built.manifest.digest,
          config: built.config.digest,
          layers: built.layers.map((l, i) => ({
            digest: l.digest,
            size: l.size,
            diffId: built.diffIds[i],
          })),
          output: built.output,
          imported,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    const layerCount = `${built.layers.length} layer${built.layers.length === 1 ? "" : "s"}`;
    process.stdout.write(`built ${built.name} ${built.manifest.digest} (${layerCount})\n`);
    process.stdout.write(`wrote ${built.output} (${built.archiveSize} bytes)\n`);
    if (imported && typeof node !== "string") {
      process.stdout.write(
        `imported into the node's containerd (snapshotter ${node.snapshotter})\n`,
      );
    }
  }
  return 0;
}

async function runImport(dataDir: string, json: boolean, file: string): Promise<number> {
  let summary: ArchiveSummary;
  try {
    summary = await inspectArchive(file);
  } catch (error) {
    if (error instanceof UnreadableArchiveError)
      throw new UsageError(`images import: ${error.message}.`);
    throw error;
  }
  const node = await requireRunningNode("import", dataDir);
  let plainTar = file;
  const layout = nodeLayout(dataDir);
  if (await isGzip(file)) {
    await mkdir(layout.imageDir, { recursive: true });
    plainTar = join(layout.imageDir, `.${process.pid}.${basename(file)}.tar`);
    await gunzipTo(file, plainTar);
  }
  try {
    await importImage({ ...node, file: plainTar });
  } catch (error) {
    return reportContainerdFailure("import", error);
  } finally {
    if (plainTar !== file) await rm(plainTar, { force: true });
  }
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ file, format: summary.format, names: summary.names }, null, 2)}\n`,
    );
  } else {
    const names =
      summary.names.length > 0
        ? summary.names.join(", ")
        : "(the archive names no image; containerd calls it import-DATE)";
    process.stdout.write(`imported ${summary.format} ${file}: ${names}\n`);
  }
  return 0;
}

/**
 * The login for `registry`: from --credentials FILE (a UsageError when it has none for it), else
 * from the node's own, kubelet's config.json, which `up` writes from the registry options; else
 * none (an anonymous pull).
 */
async function loginFor(
  action: string,
  dataDir: string,
  registry: string,
  credentials: string | null,
): Promise<RegistryLogin | undefined> {
  if (credentials !== null) {
    let text: string;
    try {
      text = await readFile(credentials, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "unreadable";
      throw new UsageError(
        `images ${action}: --credentials ${credentials} ${code === "ENOENT" ? "does not exist" : `cannot be read (${code})`}.`,
      );
    }
    try {
      return parseCredentialsFile(text, credentials, registry);
    } catch (error) {
      if (error instanceof UsageError) throw new UsageError(`images ${action}: ${error.message}`);
      throw error;
    }
  }
  const nodeConfig = join(nodeLayout(dataDir).kubeletRoot, "config.json");
  const text = await readFile(nodeConfig, "utf8").catch(() => null);
  if (text === null) return undefined;
  try {
    return parseCredentialsFile(text, nodeConfig, registry);
  } catch {
    // The node's file has no login for this registry: pull anonymously, as kubelet would.
    return undefined;
  }
}

type TransferArgs = Extract<ImagesArgs, { action: "pull" | "push" }>;

async function runTransfer(args: TransferArgs): Promise<number> {
  const login = await loginFor(args.action, args.dataDir, args.registry, args.credentials);
  const node = await requireRunningNode(args.action, args.dataDir);
  const layout = nodeLayout(args.dataDir);
  const target: PullTarget = { ...node, hostsDir: registryHostsDir(layout) };
  const argv =
    args.action === "pull"
      ? pullArgv(target, args.ref, login?.username)
      : pushArgv(target, args.ref, login?.username);
  const result = await runWithLogin(argv, login);
  if (result.exitCode !== 0 || result.failure !== undefined) {
    const why = ctrFailureLine(result) || result.failure || `exit status ${result.exitCode}`;
    process.stderr.write(
      `sandkube: images ${args.action}: containerd refused: ${why} (${argv.join(" ")})\n`,
    );
    return 1;
  }
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify({ action: args.action, ref: args.ref, registry: args.registry, login: login !== undefined }, null, 2)}\n`,
    );
  } else {
    const verb = args.action === "pull" ? "pulled" : "pushed";
    process.stdout.write(
      `${verb} ${args.ref}${login === undefined ? "" : ` (as ${login.username})`}\n`,
    );
  }
  return 0;
}

export function renderImageList(images: readonly ListedImage[]): string {
  if (images.length === 0) return "no images\n";
  return renderTable(
    ["NAME", "DIGEST", "SIZE"],
    images.map((image) => [image.name, image.digest, image.size]),
    [80, 71, 12],
  );
}

async function runList(dataDir: string, json: boolean): Promise<number> {
  const node = await requireRunningNode("ls", dataDir);
  let images: ListedImage[];
  try {
    images = await listImages(node);
  } catch (error) {
    return reportContainerdFailure("ls", error);
  }
  process.stdout.write(json ? `${JSON.stringify({ images }, null, 2)}\n` : renderImageList(images));
  return 0;
}

export const images: Command = async (args) => {
  const parsed = parseImagesArgs(args);
  switch (parsed.action) {
    case "help":
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case "build":
      return runBuild(parsed.dataDir, parsed.json, parsed.build);
    case "import":
      return runImport(parsed.dataDir, parsed.json, parsed.file);
    case "ls":
      return runList(parsed.dataDir, parsed.json);
    case "pull":
    case "push":
      return runTransfer(parsed);
  }
};
