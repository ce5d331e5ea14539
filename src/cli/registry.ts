import { constants } from "node:fs";
import { access, lstat, readdir, readFile, rename, rm, rmdir, writeFile } from "node:fs/promises";
import { createServer, isIPv4, isIPv6 } from "node:net";
import { join, resolve } from "node:path";
import { identify, terminate, type ProcessIdentity } from "../node/process-identity.js";
import {
  DEBIAN_DOCKER_REGISTRY,
  isRegistryProcess,
  LocalRegistryError,
  registryAnswers,
  registryPaths,
  registryUrl,
  startDetachedRegistry,
  type LocalRegistryOptions,
} from "../registry/local.js";
import type { Command } from "./main.js";
import { dataDirFrom, lastFlag, parseFlags, type FlagSpec } from "./node-args.js";
import { progressTo } from "./progress.js";
import { UsageError } from "./usage-error.js";

export const DEFAULT_REGISTRY_ADDRESS = "127.0.0.1:5000";
const RECORD_SCHEMA = "sandkube.registry/v1";
/** docker-registry drains its connections on SIGTERM; a stuck one gets SIGKILL after this. */
const STOP_GRACE_MS = 10_000;
const START_TIMEOUT_MS = 30_000;

const USAGE = `usage: sandkube registry <start|stop|status> [options]

A local image registry (Debian's docker-registry, ${DEBIAN_DOCKER_REGISTRY}) that runs in the
background, for offline nodes and tests. Its config, log, blobs and registry.json (pid, address)
live in DIR, by default <data-dir>/registry.

  sandkube registry start [--address HOST:PORT] [--tls-cert FILE --tls-key FILE]
                          [--htpasswd FILE] [--dir DIR] [--json]
      Starts it, waits until /v2/ answers, and prints what \`up --registries FILE\` needs so the
      node pulls from it. --address defaults to ${DEFAULT_REGISTRY_ADDRESS}; plain HTTP without
      --tls-cert; --htpasswd is a file of bcrypt entries (user:$2b$...). A registry already running
      in DIR is left as it is.

  sandkube registry stop [--purge] [--dir DIR] [--json]
      Stops the recorded process (only if it is still that registry) and forgets it. The images
      stay in DIR/data unless --purge.

  sandkube registry status [--dir DIR] [--json]
      running or stopped, its address, pid and the size of its data.

  --dir DIR        the registry's folder (default <data-dir>/registry)
  --data-dir DIR   sandkube's data dir (default $SANDKUBE_DATA_DIR, else /var/lib/sandkube)

Exit status: 0 on success (status: running and answering), 1 when the registry cannot start or
stop, 2 on bad usage, 3 (status) when no registry runs.`;

type Action = "start" | "stop" | "status";
const ACTIONS: readonly Action[] = ["start", "stop", "status"];

const COMMON: Record<string, FlagSpec> = {
  "--dir": { takesValue: true },
  "--data-dir": { takesValue: true },
  "--json": { takesValue: false },
  "--help": { takesValue: false },
  "-h": { takesValue: false },
};

const FLAGS_OF: Record<Action, Record<string, FlagSpec>> = {
  start: {
    ...COMMON,
    "--address": { takesValue: true },
    "--tls-cert": { takesValue: true },
    "--tls-key": { takesValue: true },
    "--htpasswd": { takesValue: true },
  },
  stop: { ...COMMON, "--purge": { takesValue: false } },
  status: COMMON,
};

export type RegistryArgs =
  | { readonly action: "help" }
  | {
      readonly action: "start";
      readonly dir: string;
      readonly json: boolean;
      readonly address: string;
      /** Whether --address was given; a running registry is compared against it only then. */
      readonly addressGiven: boolean;
      readonly tls: { readonly cert: string; readonly key: string } | null;
      readonly htpasswd: string | null;
    }
  | {
      readonly action: "stop";
      readonly dir: string;
      readonly json: boolean;
      readonly purge: boolean;
    }
  | { readonly action: "status"; readonly dir: string; readonly json: boolean };

/**
 * Pure: HOST:PORT as docker-registry's `http.addr` (Go's net.Listen) takes it, restricted to what
 * can be checked here: an IPv4 address, localhost or a bracketed IPv6 address, and a port.
 */
export function parseListenAddress(text: string): { host: string; port: number } {
  const fail = (why: string): never => {
    throw new UsageError(
      `registry start: --address ${text} ${why}; give HOST:PORT, e.g. --address ${DEFAULT_REGISTRY_ADDRESS}`,
    );
  };
  const match = /^(\[[^\]]*\]|[^:[\]]*):([^:]*)$/.exec(text);
  if (match === null) return fail("is not HOST:PORT");
  const [, host = "", portText = ""] = match;
  if (host === "") return fail("has no host (write 0.0.0.0:PORT to listen on every address)");
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  if (host.startsWith("[") ? !isIPv6(bare) : !(isIPv4(host) || host === "localhost")) {
    return fail("has a host that is not an IPv4 address, [IPv6] or localhost");
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    return fail("has no port between 1 and 65535");
  }
  return { host: bare, port: Number(portText) };
}

/**
 * Pure: the host[:port] image references use for a registry listening on `address`: a wildcard
 * address is reached through loopback.
 */
export function referenceHost(address: string): string {
  const { host, port } = parseListenAddress(address);
  if (host === "0.0.0.0") return `127.0.0.1:${port}`;
  if (host === "::") return `[::1]:${port}`;
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Pure: loopback as containerd's docker.IsLocalhost sees it (localhost, 127/8, ::1). */
export function isLoopbackHost(hostPort: string): boolean {
  const host = hostPort.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" || (isIPv4(host) && host.startsWith("127."));
}

function pathFlag(flags: Map<string, string[]>, name: string): string | null {
  const value = lastFlag(flags, name);
  return value === undefined ? null : resolve(value);
}

/** Pure: argv (after `registry`) -> what to do, or a UsageError naming the bad argument. */
export function parseRegistryArgs(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): RegistryArgs {
  const [action, ...rest] = args;
  if (action === "--help" || action === "-h" || action === "help") return { action: "help" };
  if (action === undefined) {
    throw new UsageError(
      "registry: say what to do: start, stop or status. Run `sandkube registry --help`.",
    );
  }
  if (!(ACTIONS as readonly string[]).includes(action)) {
    throw new UsageError(`registry: unknown action "${action}". Use start, stop or status.`);
  }
  const act = action as Action;
  const { flags, positional } = parseFlags(`registry ${act}`, rest, FLAGS_OF[act], USAGE);
  if (flags.has("--help") || flags.has("-h")) return { action: "help" };
  if (positional.length > 0) {
    throw new UsageError(`registry ${act}: unexpected argument "${positional[0]}".`);
  }
  if (flags.has("--dir") && flags.has("--data-dir")) {
    throw new UsageError(
      `registry ${act}: give --dir DIR or --data-dir DIR, not both (--dir is the registry's own folder).`,
    );
  }
  const dir = pathFlag(flags, "--dir") ?? join(dataDirFrom(flags, env), "registry");
  const json = flags.has("--json");
  if (act === "stop") return { action: act, dir, json, purge: flags.has("--purge") };
  if (act === "status") return { action: act, dir, json };
  const addressFlag = lastFlag(flags, "--address");
  const address = addressFlag ?? DEFAULT_REGISTRY_ADDRESS;
  parseListenAddress(address);
  const cert = pathFlag(flags, "--tls-cert");
  const key = pathFlag(flags, "--tls-key");
  if ((cert === null) !== (key === null)) {
    throw new UsageError(
      `registry start: ${cert === null ? "--tls-key needs --tls-cert" : "--tls-cert needs --tls-key"} (the serving certificate and its private key, PEM).`,
    );
  }
  return {
    action: act,
    dir,
    json,
    address,
    addressGiven: addressFlag !== undefined,
    tls: cert === null || key === null ? null : { cert, key },
    htpasswd: pathFlag(flags, "--htpasswd"),
  };
}

/** DIR/registry.json: what `start` started, so that `stop` and `status` find it. */
export interface RegistryRecord {
  readonly schema: typeof RECORD_SCHEMA;
  readonly pid: number;
  /** /proc/PID/stat's start time: with the pid, names the process even after the pid is reused. */
  readonly startTime: string;
  readonly address: string;
  readonly url: string;
  /** ISO 8601. */
  readonly started: string;
  readonly tls: { readonly cert: string; readonly key: string } | null;
  readonly auth: { readonly htpasswd: string } | null;
  readonly config: string;
  readonly log: string;
}

export function recordPath(dir: string): string {
  return join(dir, "registry.json");
}

/** Pure: registry.json's text -> the record, or undefined when it is not one. */
export function parseRegistryRecord(text: string): RegistryRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const r = value as Record<string, unknown>;
  const strings = ["startTime", "address", "url", "started", "config", "log"];
  if (
    r["schema"] !== RECORD_SCHEMA ||
    typeof r["pid"] !== "number" ||
    !Number.isInteger(r["pid"]) ||
    r["pid"] <= 1 ||
    strings.some((key) => typeof r[key] !== "string")
  ) {
    return undefined;
  }
  return value as RegistryRecord;
}

type RecordRead =
  | { readonly kind: "none" }
  | { readonly kind: "unreadable"; readonly why: string }
  | { readonly kind: "record"; readonly record: RegistryRecord };

async function readRecord(dir: string): Promise<RecordRead> {
  let text: string;
  try {
    text = await readFile(recordPath(dir), "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { kind: "none" };
    return { kind: "unreadable", why: code ?? String(error) };
  }
  const record = parseRegistryRecord(text);
  return record === undefined
    ? { kind: "unreadable", why: "not a sandkube registry record" }
    : { kind: "record", record };
}

/** Written to a temporary file and renamed, so a reader never sees half a record. */
async function writeRecord(dir: string, record: RegistryRecord): Promise<void> {
  const path = recordPath(dir);
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(temporary, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/**
 * The recorded process if it is still that registry: same start time (the pid was not reused)
 * and its command line is docker-registry serving this DIR's config.
 */
async function liveProcess(record: RegistryRecord): Promise<ProcessIdentity | undefined> {
  const now = await identify(record.pid);
  if (now === undefined || now.startTime !== record.startTime) return undefined;
  return (await isRegistryProcess(record.pid, record.config)) ? now : undefined;
}

export interface RegistryHint {
  /** A whole `up --registries FILE` file on one line, or null when none is needed. */
  readonly registries: string | null;
  /** The same registry as docker.io's mirror, for offline pulls of docker.io names. */
  readonly mirror: string;
  readonly note: string;
}

/** A flow-style YAML scalar: plain when safe, else JSON-quoted (JSON strings are YAML). */
function scalar(value: string): string {
  return /^[A-Za-z0-9._/-][A-Za-z0-9._/:-]*$/.test(value) && !value.endsWith(":")
    ? value
    : JSON.stringify(value);
}

function flowEntry(entries: readonly (readonly [string, string | readonly string[]])[]): string {
  const fields = entries.map(([key, value]) =>
    typeof value === "string"
      ? `${key}: ${scalar(value)}`
      : `${key}: [${value.map((v) => scalar(v)).join(", ")}]`,
  );
  return `{${fields.join(", ")}}`;
}

/**
 * Pure: what `up --registries FILE` needs for the node to pull from this registry, as the file's
 * whole text on one line, and why. containerd 2.4.2 (core/remotes/docker/config/hosts.go): with no
 * hosts.toml for a loopback host it tries HTTPS, then falls back to HTTP; a hosts.toml, which
 * sandkube writes for every listed host, always says `server = "https://HOST"` and so turns that
 * fallback off. Plain HTTP therefore goes into a listed host as an http:// mirror of itself (pull
 * and resolve only).
 */
export function registriesHint(
  address: string,
  tls: { readonly cert: string } | null,
  htpasswd: boolean,
  dir: string,
): RegistryHint {
  const host = referenceHost(address);
  const scheme = tls === null ? "http" : "https";
  const login = join(dir, "login.json");
  const loginNote = htpasswd
    ? ` Put the login in ${login} as {"username": ..., "password": ...} (or use a docker config.json).`
    : "";
  const mirror = `registries: [${flowEntry([
    ["host", "docker.io"],
    ["mirrors", [`${scheme}://${host}`]],
    ...(tls === null ? [] : ([["ca", tls.cert]] as const)),
  ])}]`;
  const credentials = htpasswd ? ([["credentialsFile", login]] as const) : [];
  if (tls !== null) {
    return {
      registries: `registries: [${flowEntry([["host", host], ["ca", tls.cert], ...credentials])}]`,
      mirror,
      note: `ca is the serving certificate itself (Go trusts a certificate found in its root pool, crypto/x509 verify.go) or the CA that issued it.${loginNote}`,
    };
  }
  if (isLoopbackHost(host) && !htpasswd) {
    return {
      registries: null,
      mirror,
      note: `Pods can name ${host}/IMAGE with no --registries entry: containerd tries HTTPS, then plain HTTP, for a loopback registry without hosts.toml. Listing ${host} in --registries would make it HTTPS only.`,
    };
  }
  return {
    registries: `registries: [${flowEntry([["host", host], ["mirrors", [`http://${host}`]], ...credentials])}]`,
    mirror,
    note: `Pull only: hosts.toml tries [host."http://${host}"] first, then server = "https://${host}"; \`images push\` to it needs no entry${isLoopbackHost(host) ? "" : " and TLS"}.${loginNote}`,
  };
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}

/** Whether HOST:PORT can be bound now; docker-registry would fail on it otherwise. */
function bindProblem(host: string, port: number): Promise<string | undefined> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => {
      done(
        error.code === "EADDRINUSE"
          ? "is in use by another process"
          : error.code === "EADDRNOTAVAIL"
            ? "is not an address of this machine"
            : error.code === "EACCES"
              ? "needs root (a port below 1024)"
              : `cannot be bound (${error.code ?? error.message})`,
      );
    });
    server.listen({ host, port, exclusive: true }, () => server.close(() => done(undefined)));
  });
}

async function checkFile(flag: string, path: string): Promise<void> {
  if (!(await exists(path, constants.R_OK))) {
    throw new UsageError(
      `registry start: ${flag} ${path} ${(await exists(path)) ? "cannot be read" : "does not exist"}.`,
    );
  }
}

function output(json: boolean, value: Record<string, unknown>, text: string): void {
  if (json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else process.stdout.write(text);
}

function hintText(hint: RegistryHint): string {
  const lines = [
    `  --registries: ${hint.registries ?? "nothing needed"}`,
    `  ${hint.note}`,
    `  as docker.io's mirror: ${hint.mirror}`,
  ];
  return `${lines.join("\n")}\n`;
}

type StartArgs = Extract<RegistryArgs, { action: "start" }>;

function recordJson(record: RegistryRecord, dir: string): Record<string, unknown> {
  return {
    schema: RECORD_SCHEMA,
    dir,
    pid: record.pid,
    address: record.address,
    url: record.url,
    started: record.started,
    tls: record.tls,
    auth: record.auth,
    log: record.log,
  };
}

async function runStart(args: StartArgs, binary = DEBIAN_DOCKER_REGISTRY): Promise<number> {
  const progress = progressTo(process.stderr);
  const previous = await readRecord(args.dir);
  if (previous.kind === "record") {
    const record = previous.record;
    if ((await liveProcess(record)) !== undefined) {
      const differs = [
        args.addressGiven && args.address !== record.address ? `--address ${args.address}` : "",
        args.tls !== null && args.tls.cert !== record.tls?.cert ? "--tls-cert" : "",
        args.htpasswd !== null && args.htpasswd !== record.auth?.htpasswd ? "--htpasswd" : "",
      ].filter(Boolean);
      const hint = registriesHint(record.address, record.tls, record.auth !== null, args.dir);
      output(
        args.json,
        { ...recordJson(record, args.dir), running: true, alreadyRunning: true, hint },
        `registry already running in ${args.dir}: ${record.url} (pid ${record.pid})\n${hintText(hint)}`,
      );
      if (differs.length > 0) {
        process.stderr.write(
          `sandkube: registry start: it runs with other settings than ${differs.join(", ")}; run \`sandkube registry stop --dir ${args.dir}\` first to change them.\n`,
        );
        return 1;
      }
      return 0;
    }
    process.stderr.write(
      `registry: pid ${record.pid} recorded in ${recordPath(args.dir)} is no longer this registry; forgetting it.\n`,
    );
    await rm(recordPath(args.dir), { force: true });
  } else if (previous.kind === "unreadable") {
    throw new UsageError(
      `registry start: ${recordPath(args.dir)} is unreadable (${previous.why}); check that no docker-registry serves ${registryPaths(args.dir).config}, remove the file, and start again.`,
      1,
    );
  }

  if (!(await exists(binary, constants.X_OK))) {
    throw new UsageError(
      `registry start: ${binary} is missing; install it with \`apt-get install docker-registry\` (or run scripts/setup.sh).`,
      1,
    );
  }
  if (args.tls !== null) {
    await checkFile("--tls-cert", args.tls.cert);
    await checkFile("--tls-key", args.tls.key);
  }
  // Given a missing htpasswd path, docker-registry 2.8.2 creates it with a user "docker" and a
  // random password that only its log shows ("htpasswd is missing, provisioning with default user").
  if (args.htpasswd !== null) await checkFile("--htpasswd", args.htpasswd);
  const { host, port } = parseListenAddress(args.address);
  const problem = await bindProblem(host, port);
  if (problem !== undefined) {
    throw new UsageError(
      `registry start: ${args.address} ${problem}; pick another with --address HOST:PORT.`,
      1,
    );
  }

  const options: LocalRegistryOptions = {
    dir: args.dir,
    address: args.address,
    ...(args.tls === null ? {} : { tls: args.tls }),
    ...(args.htpasswd === null ? {} : { htpasswd: args.htpasswd }),
  };
  let started: Awaited<ReturnType<typeof startDetachedRegistry>>;
  let nextNote = 5000;
  try {
    started = await progress.step(`starting docker-registry on ${args.address}`, () =>
      startDetachedRegistry(options, binary, START_TIMEOUT_MS, (elapsed) => {
        if (elapsed >= nextNote) {
          nextNote += 5000;
          progress.note(
            `   waiting for ${registryUrl(options)}/v2/ (${Math.round(elapsed / 1000)} s of ${START_TIMEOUT_MS / 1000} s)`,
          );
        }
      }),
    );
  } catch (error) {
    if (error instanceof LocalRegistryError) {
      throw new UsageError(`registry start: ${error.message}`, 1);
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EROFS") {
      throw new UsageError(
        `registry start: cannot write ${args.dir} (${code}); run as root or pass --dir DIR.`,
        1,
      );
    }
    throw error;
  }
  const identity = await identify(started.pid);
  const record: RegistryRecord = {
    schema: RECORD_SCHEMA,
    pid: started.pid,
    startTime: identity?.startTime ?? "",
    address: started.address,
    url: started.url,
    started: new Date().toISOString(),
    tls: args.tls,
    auth: args.htpasswd === null ? null : { htpasswd: args.htpasswd },
    config: started.config,
    log: started.logFile,
  };
  try {
    if (identity === undefined) throw new Error(`docker-registry (pid ${started.pid}) is gone`);
    await writeRecord(args.dir, record);
  } catch (error) {
    // Without its record nothing could find and stop it later.
    if (identity !== undefined) await terminate(identity, STOP_GRACE_MS);
    throw error;
  }
  const hint = registriesHint(record.address, record.tls, record.auth !== null, args.dir);
  output(
    args.json,
    { ...recordJson(record, args.dir), running: true, alreadyRunning: false, hint },
    `registry running: ${record.url} (pid ${record.pid}), images in ${registryPaths(args.dir).data}\n` +
      `  push: sandkube images push ${referenceHost(record.address)}/NAME:TAG\n${hintText(hint)}`,
  );
  return 0;
}

async function removeIfEmpty(dir: string): Promise<void> {
  if ((await readdir(dir).catch(() => ["?"])).length === 0) await rmdir(dir).catch(() => undefined);
}

async function runStop(args: Extract<RegistryArgs, { action: "stop" }>): Promise<number> {
  const read = await readRecord(args.dir);
  let stopped: number | null = null;
  let stale: string | null = null;
  if (read.kind === "unreadable") {
    stale = `${recordPath(args.dir)} was unreadable (${read.why}); nothing was signalled`;
  } else if (read.kind === "record") {
    const live = await liveProcess(read.record);
    if (live === undefined) {
      stale = `pid ${read.record.pid} is gone or is no longer docker-registry serving ${read.record.config}; nothing was signalled`;
    } else {
      await progressTo(process.stderr).step(`stopping docker-registry (pid ${live.pid})`, () =>
        terminate(live, STOP_GRACE_MS),
      );
      if ((await identify(live.pid))?.startTime === live.startTime) {
        throw new UsageError(`registry stop: pid ${live.pid} did not exit, even on SIGKILL.`, 1);
      }
      stopped = live.pid;
    }
  }
  if (read.kind !== "none") await rm(recordPath(args.dir), { force: true });
  if (args.purge) {
    const paths = registryPaths(args.dir);
    for (const path of [paths.data, paths.config, paths.logFile]) {
      await rm(path, { recursive: true, force: true });
    }
    await removeIfEmpty(args.dir);
  }
  const text =
    stopped !== null
      ? `registry stopped (pid ${stopped}); ${args.purge ? "its data is removed" : `images kept in ${registryPaths(args.dir).data}`}.\n`
      : stale !== null
        ? `registry was not running: ${stale}. Removed the stale record.\n`
        : `no registry recorded in ${args.dir}; nothing to stop.\n`;
  output(
    args.json,
    {
      schema: RECORD_SCHEMA,
      dir: args.dir,
      stopped: stopped !== null,
      pid: stopped,
      stale,
      purged: args.purge,
    },
    text,
  );
  return 0;
}

/** Bytes under `path` (files' sizes, symlinks not followed); 0 when it does not exist. */
export async function diskUsage(path: string): Promise<number> {
  const info = await lstat(path).catch(() => undefined);
  if (info === undefined) return 0;
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(path).catch(() => []))
    total += await diskUsage(join(path, entry));
  return total;
}

/** Pure: 1536 -> "1.5 KiB". */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

async function runStatus(args: Extract<RegistryArgs, { action: "status" }>): Promise<number> {
  const read = await readRecord(args.dir);
  const dataBytes = await diskUsage(registryPaths(args.dir).data);
  const record = read.kind === "record" ? read.record : undefined;
  const live = record === undefined ? undefined : await liveProcess(record);
  if (record === undefined || live === undefined) {
    const why =
      read.kind === "unreadable"
        ? `${recordPath(args.dir)} is unreadable (${read.why})`
        : record !== undefined
          ? `stale record: pid ${record.pid} is gone (\`sandkube registry stop\` forgets it)`
          : null;
    output(
      args.json,
      { schema: RECORD_SCHEMA, dir: args.dir, running: false, stale: why, dataBytes },
      `registry: stopped (${args.dir}${dataBytes > 0 ? `, ${humanBytes(dataBytes)} of images kept` : ""})${why === null ? "" : `; ${why}`}\n`,
    );
    return 3;
  }
  const answering = await registryAnswers(record.url);
  output(
    args.json,
    { ...recordJson(record, args.dir), running: true, answering, dataBytes },
    `registry: running, ${record.url} (pid ${record.pid}, since ${record.started})\n` +
      `  /v2/ answers: ${answering ? "yes" : "no"}\n` +
      `  images: ${humanBytes(dataBytes)} in ${registryPaths(args.dir).data}; log ${record.log}\n` +
      `  tls: ${record.tls === null ? "no (plain HTTP)" : record.tls.cert}; login: ${record.auth === null ? "none" : `htpasswd ${record.auth.htpasswd}`}\n`,
  );
  return answering ? 0 : 1;
}

export const registry: Command = async (args) => {
  const parsed = parseRegistryArgs(args);
  switch (parsed.action) {
    case "help":
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case "start":
      return runStart(parsed);
    case "stop":
      return runStop(parsed);
    case "status":
      return runStatus(parsed);
  }
};
