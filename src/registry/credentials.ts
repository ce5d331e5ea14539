import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { UsageError } from "../cli/usage-error.js";
import { renderHostsFiles } from "./hosts.js";
import type { RegistryOptions } from "./options.js";

/** A registry login. Never put on a command line, never logged. */
export interface RegistryLogin {
  readonly host: string;
  readonly username: string;
  readonly password: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * docker config.json keys are host[:port] or a URL; `docker login` writes Docker Hub as
 * https://index.docker.io/v1/, which image references call docker.io.
 */
export function authKeyHost(key: string): string {
  const host = key
    .replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//, "")
    .replace(/\/.*$/, "")
    .toLowerCase();
  return host === "index.docker.io" || host === "registry-1.docker.io" ? "docker.io" : host;
}

function loginOf(
  path: string,
  host: string,
  entry: Record<string, unknown>,
): { username: string; password: string } {
  const { username, password, auth } = entry;
  if (typeof username === "string" && username !== "" && typeof password === "string") {
    return { username, password };
  }
  if (typeof auth === "string" && auth !== "") {
    const decoded = Buffer.from(auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    // Node's base64 decoder skips what is not base64 instead of failing; re-encoding tells.
    const roundTrips =
      Buffer.from(decoded, "utf8").toString("base64").replace(/=+$/, "") ===
      auth.replace(/=+$/, "");
    if (colon > 0 && roundTrips) {
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    throw new UsageError(
      `${path}: the login for ${host} has an auth that is not base64 of user:password.`,
    );
  }
  throw new UsageError(
    `${path}: the login for ${host} has neither auth (base64 of user:password) nor username and password.`,
  );
}

/**
 * Pure: the login for `host` in a credentials file: a docker config.json
 * ({"auths": {"HOST": {"auth": base64(user:password)}}} or {"username", "password"} in the entry),
 * or a file of one login, {"username": ..., "password": ...}, meant for the registry that names it.
 * Errors name the file and never echo a secret.
 */
export function parseCredentialsFile(text: string, path: string, host: string): RegistryLogin {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new UsageError(
      `${path}: not JSON; write a docker config.json, {"auths": {"${host}": {"auth": "BASE64(user:password)"}}}.`,
    );
  }
  if (!isRecord(document)) {
    throw new UsageError(`${path}: expected a JSON object like {"auths": {"${host}": {...}}}.`);
  }
  const auths = document["auths"];
  if (auths === undefined && ("username" in document || "auth" in document)) {
    return { host, ...loginOf(path, host, document) };
  }
  if (!isRecord(auths)) {
    throw new UsageError(`${path}: no "auths" object; expected {"auths": {"${host}": {...}}}.`);
  }
  const key = Object.keys(auths).find((k) => authKeyHost(k) === host);
  const entry = key === undefined ? undefined : auths[key];
  if (!isRecord(entry)) {
    const known = Object.keys(auths).map(authKeyHost);
    throw new UsageError(
      `${path}: no login for ${host} (it has ${known.length > 0 ? known.join(", ") : "none"}).`,
    );
  }
  if (typeof entry["identitytoken"] === "string" && entry["auth"] === undefined) {
    throw new UsageError(
      `${path}: the login for ${host} is an identity token; sandkube needs a user and password (auth).`,
    );
  }
  return { host, ...loginOf(path, host, entry) };
}

/**
 * Pure: kubelet's node-wide credentials, a docker config.json. kubelet 1.34 reads config.json in
 * its --root-dir first (credentialprovider.SetPreferredDockercfgPath(kubeServer.RootDirectory),
 * cmd/kubelet/app/server.go; DefaultDockerConfigJSONPaths, pkg/credentialprovider/config.go) and
 * sends the matching login with every CRI PullImage, exactly as it sends a pull secret's.
 */
export function renderKubeletDockerConfig(logins: readonly RegistryLogin[]): string {
  const auths = Object.fromEntries(
    logins.map((login) => [
      login.host,
      { auth: Buffer.from(`${login.username}:${login.password}`).toString("base64") },
    ]),
  );
  return `${JSON.stringify({ auths }, null, 2)}\n`;
}

/** Pure: whether a file's text holds at least one PEM certificate. */
export function holdsPemCertificate(text: string): boolean {
  return /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(text);
}

export type FileReader = (path: string) => Promise<string>;

const readText: FileReader = (path) => readFile(path, "utf8");

async function readNamed(path: string, what: string, reader: FileReader): Promise<string> {
  try {
    return await reader(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unreadable";
    throw new UsageError(
      code === "ENOENT"
        ? `${what} ${path} does not exist; give the path of an existing file.`
        : `${what} ${path} cannot be read (${code}).`,
    );
  }
}

/**
 * Reads what the options name: checks each CA file holds a PEM certificate, and reads each
 * registry's login from its credentials file. UsageError for a missing or malformed file.
 */
export async function readRegistryLogins(
  options: RegistryOptions,
  reader: FileReader = readText,
): Promise<RegistryLogin[]> {
  const logins: RegistryLogin[] = [];
  for (const registry of options.registries) {
    if (registry.ca !== undefined) {
      const text = await readNamed(registry.ca, `registry ${registry.host}: ca`, reader);
      if (!holdsPemCertificate(text)) {
        throw new UsageError(
          `registry ${registry.host}: ca ${registry.ca} holds no PEM certificate (-----BEGIN CERTIFICATE-----).`,
        );
      }
    }
    if (registry.credentialsFile !== undefined) {
      const path = registry.credentialsFile;
      const text = await readNamed(path, `registry ${registry.host}: credentialsFile`, reader);
      logins.push(parseCredentialsFile(text, path, registry.host));
    }
  }
  return logins;
}

/** Where a node's registry files go; the lead's `up` passes its NodeLayout's paths. */
export interface RegistryFileTargets {
  /** containerd's certs.d folder: registryHostsDir(layout) in src/plan/containerd-config.ts. */
  readonly hostsDir: string;
  /** kubelet's --root-dir (NodeLayout.kubeletRoot); its config.json holds the logins. */
  readonly kubeletRoot: string;
}

/**
 * Writes the node's registry configuration: one hosts.toml per registry in a fresh certs.d (so a
 * registry dropped from the options is gone), and kubelet's config.json (mode 0600) with the
 * logins, or none when there are none. Validates the named files first: nothing is written for
 * options that would fail.
 */
export async function writeRegistryFiles(
  targets: RegistryFileTargets,
  options: RegistryOptions,
  reader: FileReader = readText,
): Promise<{ hostsFiles: string[]; kubeletDockerConfig: string | null }> {
  const logins = await readRegistryLogins(options, reader);
  await rm(targets.hostsDir, { recursive: true, force: true });
  await mkdir(targets.hostsDir, { recursive: true, mode: 0o755 });
  const hostsFiles: string[] = [];
  for (const [relative, text] of Object.entries(renderHostsFiles(options))) {
    const path = join(targets.hostsDir, relative);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text, { mode: 0o644 });
    hostsFiles.push(path);
  }
  const dockerConfig = join(targets.kubeletRoot, "config.json");
  if (logins.length === 0) {
    await rm(dockerConfig, { force: true });
    return { hostsFiles, kubeletDockerConfig: null };
  }
  await mkdir(targets.kubeletRoot, { recursive: true });
  await rm(dockerConfig, { force: true });
  await writeFile(dockerConfig, renderKubeletDockerConfig(logins), { mode: 0o600 });
  return { hostsFiles, kubeletDockerConfig: dockerConfig };
}
