import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isAbsolute, join } from "node:path";
import { stringify as stringifyYaml } from "yaml";
import { ensureSuccess, runCommand, type CommandRunner } from "../common/exec.js";

/** Debian's docker-registry package (distribution 2.8.2). */
export const DEBIAN_DOCKER_REGISTRY = "/usr/bin/docker-registry";

export interface LocalRegistryOptions {
  /** Holds config.yml, registry.log and the blobs (data/). */
  readonly dir: string;
  /** host:port to listen on, e.g. 127.0.0.1:5000. */
  readonly address: string;
  /** PEM files of the registry's serving certificate and key; plain HTTP without. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** An htpasswd file of bcrypt entries (htpasswdEntry); no authentication without. */
  readonly htpasswd?: string;
}

/** Pure: docker-registry's config.yml for these options (docs: distribution's configuration.md). */
export function renderLocalRegistryConfig(options: LocalRegistryOptions): string {
  return stringifyYaml({
    version: 0.1,
    log: { level: "info", accesslog: { disabled: false } },
    storage: {
      filesystem: { rootdirectory: join(options.dir, "data") },
      delete: { enabled: true },
    },
    http: {
      addr: options.address,
      headers: { "X-Content-Type-Options": ["nosniff"] },
      ...(options.tls === undefined
        ? {}
        : { tls: { certificate: options.tls.cert, key: options.tls.key } }),
    },
    ...(options.htpasswd === undefined
      ? {}
      : { auth: { htpasswd: { realm: "sandkube", path: options.htpasswd } } }),
  });
}

const BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** Pure: 16 random bytes as bcrypt's 22-character salt (its own base64 alphabet, no padding). */
export function bcryptSalt(random: Buffer): string {
  if (random.length !== 16) throw new Error("bcryptSalt: needs 16 bytes");
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of random) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += BCRYPT_ALPHABET[(value >> bits) & 63];
    }
  }
  // 128 bits leave 2; bcrypt's 22nd character carries them in its high bits.
  out += BCRYPT_ALPHABET[(value << (6 - bits)) & 63];
  return out;
}

/** How many times bcrypt doubles its work: apache's htpasswd -B default is 5; 10 is Go's default. */
const BCRYPT_COST = 10;

/**
 * One htpasswd line, `user:$2b$10$...`. docker-registry accepts bcrypt only
 * (registry/auth/htpasswd/htpasswd.go compares with bcrypt.CompareHashAndPassword). apache2-utils'
 * `htpasswd` is not installed here and Node has no bcrypt, so this uses crypt(3) through Perl:
 * Debian's libcrypt1 is libxcrypt, which implements $2b$. The password goes to Perl on stdin,
 * never on its command line.
 */
export async function htpasswdEntry(
  user: string,
  password: string,
  run: CommandRunner = runCommand,
): Promise<string> {
  if (user === "" || user.includes(":")) throw new Error("htpasswd user must be non-empty, no ':'");
  if (password.includes("\n")) throw new Error("htpasswd password cannot hold a newline");
  const setting = `$2b$${BCRYPT_COST}$${bcryptSalt(randomBytes(16))}`;
  const result = ensureSuccess(
    await run(
      [
        "perl",
        "-e",
        'my $p = <STDIN>; chomp $p; my $h = crypt($p, $ARGV[0]); die "crypt refused bcrypt\\n" unless defined $h && $h =~ /^\\$2b\\$/; print $h',
        setting,
      ],
      { input: `${password}\n`, timeoutMs: 30_000 },
    ),
  );
  return `${user}:${result.stdout.trim()}`;
}

/** Writes an htpasswd file (mode 0600) with one bcrypt entry per login. */
export async function writeHtpasswd(
  path: string,
  logins: readonly { readonly username: string; readonly password: string }[],
  run: CommandRunner = runCommand,
): Promise<void> {
  const lines: string[] = [];
  for (const login of logins) lines.push(await htpasswdEntry(login.username, login.password, run));
  await writeFile(path, `${lines.join("\n")}\n`, { mode: 0o600 });
}

export interface LocalRegistry {
  readonly address: string;
  /** https://ADDRESS or http://ADDRESS. */
  readonly url: string;
  readonly pid: number;
  readonly logFile: string;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
  stop(): Promise<void>;
}

export class LocalRegistryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LocalRegistryError";
  }
}

/** Any HTTP answer from /v2/ (200 open, 401 with htpasswd) means the registry serves. */
export function registryAnswers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const target = new URL("/v2/", url);
    // Only "is something serving HTTP here" is asked, no data is trusted: the certificate is the
    // pull's business (containerd checks it against the configured CA).
    const request = (target.protocol === "https:" ? httpsRequest : httpRequest)(
      target,
      { method: "GET", timeout: 2000, rejectUnauthorized: false },
      (response) => {
        response.resume();
        resolve(response.statusCode !== undefined);
      },
    );
    request.on("error", () => resolve(false));
    request.on("timeout", () => request.destroy());
    request.end();
  });
}

/** Where docker-registry's config, log and blobs live inside a registry's dir. */
export function registryPaths(dir: string): { config: string; logFile: string; data: string } {
  return {
    config: join(dir, "config.yml"),
    logFile: join(dir, "registry.log"),
    data: join(dir, "data"),
  };
}

export function registryUrl(options: Pick<LocalRegistryOptions, "address" | "tls">): string {
  return `${options.tls === undefined ? "http" : "https"}://${options.address}`;
}

async function prepareRegistryDir(
  options: LocalRegistryOptions,
): Promise<{ config: string; logFile: string }> {
  const paths = registryPaths(options.dir);
  await mkdir(paths.data, { recursive: true });
  await writeFile(paths.config, renderLocalRegistryConfig(options), { mode: 0o600 });
  return paths;
}

async function logTail(path: string): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text.trim().split("\n").slice(-3).join(" | ");
}

interface LaunchedRegistry {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly config: string;
  readonly logFile: string;
  /** SIGTERM, then SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * Spawns docker-registry with a config.yml written into `dir` and returns once /v2/ answers. If it
 * exits early or does not answer within timeoutMs, it is stopped and a LocalRegistryError carries
 * its log's last lines, so a failed start leaves no process behind. `waiting` is called about once
 * a second while nothing answers yet, for progress.
 */
async function launchRegistry(
  options: LocalRegistryOptions,
  binary: string,
  timeoutMs: number,
  spawnOptions: { readonly detached: boolean; readonly cwd?: string },
  waiting: (elapsedMs: number) => void = () => undefined,
): Promise<LaunchedRegistry> {
  const { config, logFile } = await prepareRegistryDir(options);
  const log = await open(logFile, "a");
  const child = spawn(binary, ["serve", config], {
    ...spawnOptions,
    stdio: ["ignore", log.fd, log.fd],
  });
  await log.close();
  let exit: string | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exit = signal ?? `exit status ${code ?? "?"}`;
      resolve();
    });
    child.once("error", (error) => {
      exit = error.message;
      resolve();
    });
  });
  const url = registryUrl(options);
  const stop = async (): Promise<void> => {
    if (exit !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  const started = Date.now();
  let lastReport = started;
  try {
    for (;;) {
      if (exit !== null) {
        throw new LocalRegistryError(
          `docker-registry exited (${String(exit)}) before answering on ${url}/v2/: ${await logTail(logFile)}`,
        );
      }
      if (await registryAnswers(url)) break;
      if (Date.now() - started > timeoutMs) {
        throw new LocalRegistryError(
          `docker-registry did not answer on ${url}/v2/ within ${timeoutMs / 1000} s: ${await logTail(logFile)}`,
        );
      }
      if (Date.now() - lastReport >= 1000) {
        lastReport = Date.now();
        waiting(lastReport - started);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (child.pid === undefined) throw new LocalRegistryError("docker-registry has no pid");
  } catch (error) {
    await stop();
    throw error;
  }
  return { child, pid: child.pid, url, config, logFile, stop };
}

/**
 * Starts docker-registry with a config.yml written into `dir`, and returns once /v2/ answers.
 * The registry is this process's child; stop() ends it.
 */
export async function startLocalRegistry(
  options: LocalRegistryOptions,
  binary: string = DEBIAN_DOCKER_REGISTRY,
  timeoutMs = 30_000,
): Promise<LocalRegistry> {
  const launched = await launchRegistry(options, binary, timeoutMs, { detached: false });
  const { url, pid, logFile, stop } = launched;
  return { address: options.address, url, pid, logFile, stop };
}

/** A docker-registry that outlives the process that started it. */
export interface DetachedRegistry {
  readonly address: string;
  readonly url: string;
  readonly pid: number;
  readonly config: string;
  readonly logFile: string;
}

/**
 * Pure: whether a /proc/PID/cmdline (NUL-separated) is docker-registry serving `config`. A pid
 * alone may have been reused by another process since it was recorded; the config path names
 * this registry's dir.
 */
export function isRegistryCmdline(cmdline: string, config: string): boolean {
  const argv = cmdline.split("\0").filter((arg) => arg !== "");
  return (argv[0] ?? "").endsWith("docker-registry") && argv.includes(config);
}

/** Whether `pid` is, right now, docker-registry serving `config`. */
export async function isRegistryProcess(pid: number, config: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return isRegistryCmdline(cmdline, config);
}

/**
 * Starts docker-registry in its own session (setsid), output appended to registry.log, and returns
 * once /v2/ answers; the caller may then exit and the registry runs on. If it exits early or does
 * not answer within timeoutMs, it is killed and a LocalRegistryError carries its log's last lines,
 * so a failed start leaves no process behind. `waiting` is called about once a second while
 * nothing answers yet, for progress.
 */
export async function startDetachedRegistry(
  options: LocalRegistryOptions,
  binary: string = DEBIAN_DOCKER_REGISTRY,
  timeoutMs = 30_000,
  waiting: (elapsedMs: number) => void = () => undefined,
): Promise<DetachedRegistry> {
  // It outlives this process, so it holds no working directory and its config path, which stop
  // looks for in /proc/PID/cmdline, is absolute.
  if (!isAbsolute(options.dir)) throw new LocalRegistryError(`${options.dir} is not absolute`);
  const launched = await launchRegistry(
    options,
    binary,
    timeoutMs,
    { detached: true, cwd: "/" },
    waiting,
  );
  launched.child.unref();
  const { url, pid, config, logFile } = launched;
  return { address: options.address, url, pid, config, logFile };
}
