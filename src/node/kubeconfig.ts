import { existsSync } from "node:fs";
import { mkdir, open, readFile, realpath, rm } from "node:fs/promises";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { Document, isMap, isScalar, isSeq, parse, parseDocument, type YAMLMap } from "yaml";
import { UsageError } from "../cli/usage-error.js";
import type { ClusterConfig } from "../plan/cluster-config.js";
import { kubeconfigFiles } from "../plan/pki-files.js";
import type { NodeLayout } from "./layout.js";
import {
  PRIVATE_FILE_MODE,
  certificateProblem,
  certificateRequest,
  ensurePrivateDir,
  isUnspecifiedAddress,
  issueCertificate,
  nodePkiIO,
  readSigner,
  type CertificateId,
  type PkiChange,
  type PkiIO,
  type PkiReport,
} from "./pki.js";

/**
 * Kubeconfigs: the components' own (embedded certificates, under the data dir) and the user's
 * ~/.kube/config, merged as kind merges it (kind's `kubeconfig` package: entries replaced or appended, current-context set, `<file>.lock`).
 */

/** The name sandkube's cluster, user and context carry in every kubeconfig it writes. */
export const DEFAULT_CONTEXT_NAME = "sandkube";

/**
 * Pure: where local clients reach the API server. A wildcard or loopback bind is reached on
 * 127.0.0.1, which the serving certificate always names; anything else on that address itself.
 */
export function apiServerUrl(config: ClusterConfig): string {
  const address = config.apiServerBindAddress;
  const host =
    isUnspecifiedAddress(address) || address === "127.0.0.1"
      ? "127.0.0.1"
      : address.includes(":")
        ? `[${address}]`
        : address;
  return `https://${host}:${config.apiServerPort}`;
}

export interface KubeconfigParts {
  readonly clusterName: string;
  readonly server: string;
  readonly caPem: string;
  /** The user entry's name. */
  readonly user: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** The context's name; it is also current-context. */
  readonly context: string;
}

function base64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

function unbase64(value: unknown): string | undefined {
  return typeof value === "string" ? Buffer.from(value, "base64").toString("utf8") : undefined;
}

/** Pure: a kubeconfig with its certificates embedded, as kubeadm writes them. */
export function renderKubeconfig(parts: KubeconfigParts): string {
  const document = new Document({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: parts.clusterName,
        cluster: { "certificate-authority-data": base64(parts.caPem), server: parts.server },
      },
    ],
    contexts: [{ name: parts.context, context: { cluster: parts.clusterName, user: parts.user } }],
    "current-context": parts.context,
    preferences: {},
    users: [
      {
        name: parts.user,
        user: {
          "client-certificate-data": base64(parts.certPem),
          "client-key-data": base64(parts.keyPem),
        },
      },
    ],
  });
  return document.toString();
}

type Entry = Record<string, unknown>;

function asRecord(value: unknown): Entry | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Entry)
    : undefined;
}

function namedEntry(config: Entry, listKey: string, name: unknown): Entry | undefined {
  const list = config[listKey];
  if (!Array.isArray(list)) return undefined;
  return list.map(asRecord).find((entry) => entry !== undefined && entry["name"] === name);
}

/** The cluster and user bodies a kubeconfig's current context points at. */
export interface KubeconfigEntries {
  readonly cluster: Entry;
  readonly user: Entry;
}

/** Pure: the entries of `text`'s current context; undefined when it has none or is not YAML. */
export function currentEntries(text: string): KubeconfigEntries | undefined {
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch {
    return undefined;
  }
  const config = asRecord(parsed);
  if (config === undefined) return undefined;
  const context = asRecord(namedEntry(config, "contexts", config["current-context"])?.["context"]);
  const cluster = asRecord(namedEntry(config, "clusters", context?.["cluster"])?.["cluster"]);
  const user = asRecord(namedEntry(config, "users", context?.["user"])?.["user"]);
  return cluster === undefined || user === undefined ? undefined : { cluster, user };
}

const COMPONENT_KUBECONFIGS = [
  { certificate: "admin", file: "admin" },
  { certificate: "kubelet-client", file: "kubelet" },
  { certificate: "controller-manager", file: "controllerManager" },
  { certificate: "scheduler", file: "scheduler" },
  { certificate: "kube-proxy", file: "kubeProxy" },
] as const satisfies readonly {
  certificate: CertificateId;
  file: keyof ReturnType<typeof kubeconfigFiles>;
}[];

/**
 * Writes admin.conf, kubelet.conf, controller-manager.conf, scheduler.conf and kube-proxy.conf, signed by the
 * cluster CA that ensurePki made. A file is kept when its server, CA and client certificate are
 * still right for `config`, so a second `up` leaves them alone; written files are mode 0600.
 */
export async function writeComponentKubeconfigs(
  config: ClusterConfig,
  layout: NodeLayout,
  io: PkiIO = nodePkiIO,
): Promise<PkiReport> {
  const signer = await readSigner(layout, "ca", io);
  const server = apiServerUrl(config);
  const files = kubeconfigFiles(layout);
  const now = io.now();
  const written: PkiChange[] = [];
  const kept: string[] = [];
  await ensurePrivateDir(layout.kubeconfigDir);
  for (const { certificate, file } of COMPONENT_KUBECONFIGS) {
    const path = files[file];
    const request = certificateRequest(config, certificate);
    const existing = await io.readFile(path);
    const entries = existing === undefined ? undefined : currentEntries(existing);
    let problem: string | undefined;
    if (existing === undefined) problem = "missing";
    else if (entries === undefined) problem = "unreadable";
    else if (entries.cluster["server"] !== server) problem = `server changed (now ${server})`;
    else if (unbase64(entries.cluster["certificate-authority-data"]) !== signer.certPem) {
      problem = "CA changed";
    } else {
      problem = await certificateProblem(
        request,
        {
          certPem: unbase64(entries.user["client-certificate-data"]),
          keyPem: unbase64(entries.user["client-key-data"]),
        },
        signer,
        now,
      );
    }
    if (problem === undefined) {
      kept.push(path);
      continue;
    }
    const pair = await issueCertificate(request, signer, now);
    const text = renderKubeconfig({
      clusterName: DEFAULT_CONTEXT_NAME,
      server,
      caPem: signer.certPem,
      user: request.commonName,
      certPem: pair.certPem,
      keyPem: pair.keyPem,
      context: DEFAULT_CONTEXT_NAME,
    });
    await io.writeFile(path, text, PRIVATE_FILE_MODE);
    written.push({ path, reason: problem });
  }
  return { written, kept };
}

/** What `up` merges into the user's kubeconfig: admin.conf's cluster and user. */
export async function adminKubeconfigEntries(
  layout: NodeLayout,
  io: PkiIO = nodePkiIO,
): Promise<KubeconfigEntries> {
  const path = kubeconfigFiles(layout).admin;
  const text = await io.readFile(path);
  const entries = text === undefined ? undefined : currentEntries(text);
  if (entries === undefined) {
    throw new Error(`${path} is missing or unreadable; run writeComponentKubeconfigs first`);
  }
  return entries;
}

/**
 * Which file `up` merges into: --kubeconfig, else the first existing file in $KUBECONFIG, else
 * its first entry, else ~/.kube/config (client-go's loading rules, as kind applies them).
 */
export function resolveKubeconfigTarget(options: {
  readonly flag?: string | undefined;
  readonly env?: string | undefined;
  readonly home: string;
  readonly exists?: (path: string) => boolean;
  readonly cwd?: string;
}): string {
  const exists = options.exists ?? existsSync;
  const cwd = options.cwd ?? process.cwd();
  const absolute = (path: string) => (isAbsolute(path) ? path : resolve(cwd, path));
  if (options.flag !== undefined && options.flag !== "") return absolute(options.flag);
  const listed = (options.env ?? "").split(delimiter).filter((path) => path !== "");
  const existing = listed.find((path) => exists(absolute(path)));
  if (existing !== undefined) return absolute(existing);
  if (listed[0] !== undefined) return absolute(listed[0]);
  return join(options.home, ".kube", "config");
}

export interface LockOptions {
  /** How long to wait for another writer before giving up. */
  readonly timeoutMs?: number;
  readonly pollMs?: number;
}

/** Raised when `<file>.lock` stays in place; its message says which file to delete. */
export class KubeconfigLockedError extends UsageError {
  constructor(
    readonly lockPath: string,
    detail: string,
  ) {
    super(
      `cannot update the kubeconfig: ${lockPath} exists ${detail}. If no kubectl or sandkube is ` +
        `writing that kubeconfig, delete ${lockPath} and run the command again.`,
    );
    this.name = "KubeconfigLockedError";
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function describeLockOwner(lockPath: string, waitedMs: number): Promise<string> {
  const waited = `and was not released within ${(waitedMs / 1000).toFixed(1)} s`;
  const content = await readFile(lockPath, "utf8").catch(() => "");
  const pid = Number.parseInt(content.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) return waited;
  return isRunning(pid)
    ? `${waited} (held by running pid ${pid})`
    : `${waited} (left by pid ${pid}, which is no longer running)`;
}

/**
 * Runs `update` while holding `<file>.lock`, created with O_EXCL as client-go's lockFile does
 * (tools/clientcmd/loader.go), so kubectl and sandkube never interleave their writes. Our pid
 * goes in the lock so a stale one can be named; client-go's own locks are empty.
 */
async function withKubeconfigLock<T>(
  file: string,
  update: () => Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const lockPath = `${file}.lock`;
  const timeoutMs = options.timeoutMs ?? 5000;
  const pollMs = options.pollMs ?? 100;
  const started = Date.now();
  for (;;) {
    try {
      const handle = await open(lockPath, "wx", PRIVATE_FILE_MODE);
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const waited = Date.now() - started;
      if (waited >= timeoutMs) {
        throw new KubeconfigLockedError(lockPath, await describeLockOwner(lockPath, waited));
      }
      await new Promise((done) => setTimeout(done, pollMs));
    }
  }
  try {
    return await update();
  } finally {
    await rm(lockPath, { force: true });
  }
}

function loadUserKubeconfig(path: string, text: string | undefined): Document {
  if (text === undefined || text.trim() === "") {
    return new Document({
      apiVersion: "v1",
      kind: "Config",
      clusters: [],
      contexts: [],
      "current-context": "",
      preferences: {},
      users: [],
    });
  }
  const document = parseDocument(text);
  const firstError = document.errors[0];
  if (firstError !== undefined || !isMap(document.contents)) {
    const why = firstError?.message.split("\n")[0] ?? "it is not a YAML mapping";
    throw new UsageError(
      `${path} is not a valid kubeconfig (${why}); fix or move it, or pass --kubeconfig FILE.`,
    );
  }
  return document;
}

function entryName(item: unknown): unknown {
  if (!isMap(item)) return undefined;
  const name = (item as YAMLMap).get("name");
  return isScalar(name) ? name.value : name;
}

/** Replaces the list item called `name`, or appends it, leaving every other item untouched. */
function upsertNamed(document: Document, path: string, listKey: string, item: Entry): void {
  const node = document.createNode(item);
  const list = document.get(listKey, true);
  if (list === undefined || list === null || (isScalar(list) && list.value === null)) {
    document.set(listKey, document.createNode([item]));
    return;
  }
  if (!isSeq(list)) {
    throw new UsageError(`${path}: "${listKey}" is not a list; fix or move the file.`);
  }
  const index = list.items.findIndex((existing) => entryName(existing) === item["name"]);
  if (index >= 0) list.items[index] = node;
  else list.items.push(node);
}

function removeNamed(document: Document, listKey: string, name: string): boolean {
  const list = document.get(listKey, true);
  if (!isSeq(list)) return false;
  const before = list.items.length;
  list.items = list.items.filter((existing) => entryName(existing) !== name);
  return list.items.length !== before;
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** A symlinked ~/.kube/config (dotfile managers) is updated where it points, not replaced. */
async function writeTarget(target: string): Promise<string> {
  return realpath(target).catch(() => target);
}

/**
 * Adds (or replaces) the cluster, user and context called `contextName` and makes it current,
 * as `kind create cluster` does. Every other entry and field of the file is kept as it was.
 */
export async function mergeIntoUserKubeconfig(
  target: string,
  entries: KubeconfigEntries,
  contextName = DEFAULT_CONTEXT_NAME,
  options: LockOptions & { readonly io?: PkiIO } = {},
): Promise<void> {
  const io = options.io ?? nodePkiIO;
  await mkdir(dirname(target), { recursive: true, mode: 0o755 });
  await withKubeconfigLock(
    target,
    async () => {
      const destination = await writeTarget(target);
      const document = loadUserKubeconfig(target, await readIfExists(destination));
      upsertNamed(document, target, "clusters", { name: contextName, cluster: entries.cluster });
      upsertNamed(document, target, "users", { name: contextName, user: entries.user });
      upsertNamed(document, target, "contexts", {
        name: contextName,
        context: { cluster: contextName, user: contextName },
      });
      document.set("current-context", contextName);
      await io.writeFile(destination, document.toString(), PRIVATE_FILE_MODE);
    },
    options,
  );
}

/**
 * Takes sandkube's cluster, user and context out of `target` and clears current-context if it
 * named them. A missing file or entry is not an error: `down` may run twice.
 */
export async function removeFromUserKubeconfig(
  target: string,
  contextName = DEFAULT_CONTEXT_NAME,
  options: LockOptions & { readonly io?: PkiIO } = {},
): Promise<boolean> {
  const io = options.io ?? nodePkiIO;
  if (!existsSync(target)) return false;
  return withKubeconfigLock(
    target,
    async () => {
      const destination = await writeTarget(target);
      const text = await readIfExists(destination);
      if (text === undefined) return false;
      const document = loadUserKubeconfig(target, text);
      let changed = false;
      for (const listKey of ["clusters", "users", "contexts"]) {
        changed = removeNamed(document, listKey, contextName) || changed;
      }
      if (document.get("current-context") === contextName) {
        document.set("current-context", "");
        changed = true;
      }
      if (changed) await io.writeFile(destination, document.toString(), PRIVATE_FILE_MODE);
      return changed;
    },
    options,
  );
}
