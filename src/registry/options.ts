import { isAbsolute } from "node:path";
import { parse as parseYaml } from "yaml";
import { UsageError } from "../cli/usage-error.js";

/** One registry the node pulls from, as the user describes it. */
export interface RegistryConfig {
  /** host[:port] as image references spell it: registry.example:5000, docker.io, 127.0.0.1:5000. */
  readonly host: string;
  /** URLs tried in order before the registry itself, e.g. https://mirror.example or http://127.0.0.1:5000. */
  readonly mirrors: readonly string[];
  /** Absolute path of a PEM file of CA certificates trusted for this registry and its mirrors. */
  readonly ca?: string;
  /** Skip certificate verification: only when the user asks for it. */
  readonly insecureSkipVerify: boolean;
  /** Absolute path of a docker config.json holding this registry's login. */
  readonly credentialsFile?: string;
}

export interface RegistryOptions {
  readonly registries: readonly RegistryConfig[];
}

const KEYS = ["host", "mirrors", "ca", "insecureSkipVerify", "credentialsFile"] as const;

/** A DNS name or IPv4 address, an optional port; or a bracketed IPv6 address with one. */
const HOST_PATTERN =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Pure: a registry host as containerd names its certs.d folder, or a UsageError saying why not. */
export function checkRegistryHost(where: string, host: unknown): string {
  if (typeof host !== "string" || host === "") {
    throw new UsageError(`${where}: host is required, e.g. host: registry.example:5000`);
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(host);
  if (scheme) {
    throw new UsageError(
      `${where}: host ${host} has a scheme; write it as an image reference does, host: ${host.slice(scheme[0].length).replace(/\/.*$/, "")}`,
    );
  }
  if (host.includes("/")) {
    throw new UsageError(
      `${where}: host ${host} has a path; give only host[:port] (a mirror's URL may have one: mirrors: [https://mirror.example/path])`,
    );
  }
  const match = HOST_PATTERN.exec(host);
  const port = match?.[1];
  if (!match || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) {
    throw new UsageError(
      `${where}: host ${host} is not host[:port], e.g. registry.example:5000 or 127.0.0.1:5000`,
    );
  }
  return host.toLowerCase();
}

function checkMirror(where: string, mirror: unknown): string {
  let url: URL | undefined;
  try {
    url = typeof mirror === "string" ? new URL(mirror) : undefined;
  } catch {
    url = undefined;
  }
  if (
    url === undefined ||
    (url.protocol !== "https:" && url.protocol !== "http:") ||
    url.search !== "" ||
    url.hash !== "" ||
    url.username !== "" ||
    url.password !== ""
  ) {
    throw new UsageError(
      `${where}: mirror ${JSON.stringify(mirror)} is not an http(s) URL without login, query or fragment, e.g. https://mirror.example:5000`,
    );
  }
  // containerd's hosts.toml keys are URLs as written; keep the user's path, drop a trailing slash.
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
}

function checkPath(where: string, key: string, value: unknown): string {
  if (typeof value !== "string" || !isAbsolute(value)) {
    throw new UsageError(
      `${where}: ${key} must be an absolute path (got ${JSON.stringify(value)}), e.g. ${key}: /etc/sandkube/${key === "ca" ? "registry-ca.pem" : "registry-auth.json"}`,
    );
  }
  return value;
}

/**
 * Pure: checks the shape of sandkube's registry options (from a YAML or JSON file) and returns
 * them normalized, or throws a UsageError naming the entry and the fix. Files named in them are
 * checked by readRegistryFiles (credentials.ts), which needs I/O.
 */
export function parseRegistryOptions(input: unknown, source = "registries"): RegistryOptions {
  if (!isRecord(input) || !Array.isArray(input["registries"])) {
    throw new UsageError(
      `${source}: expected { registries: [ { host: registry.example:5000, ... } ] }`,
    );
  }
  const unknownTop = Object.keys(input).filter((key) => key !== "registries");
  if (unknownTop.length > 0) {
    throw new UsageError(`${source}: unknown key ${unknownTop[0]}; only "registries" is read.`);
  }
  const seen = new Set<string>();
  const registries = input["registries"].map((entry: unknown, i): RegistryConfig => {
    const where = `${source}: registries[${i}]`;
    if (!isRecord(entry)) throw new UsageError(`${where}: expected an object with a host.`);
    const unknown = Object.keys(entry).find((key) => !(KEYS as readonly string[]).includes(key));
    if (unknown !== undefined) {
      throw new UsageError(`${where}: unknown key ${unknown}; the keys are ${KEYS.join(", ")}.`);
    }
    const host = checkRegistryHost(where, entry["host"]);
    if (seen.has(host)) throw new UsageError(`${where}: host ${host} is listed twice.`);
    seen.add(host);
    const rawMirrors = entry["mirrors"] ?? [];
    if (!Array.isArray(rawMirrors)) {
      throw new UsageError(`${where}: mirrors must be a list of URLs.`);
    }
    const skip = entry["insecureSkipVerify"] ?? false;
    if (typeof skip !== "boolean") {
      throw new UsageError(`${where}: insecureSkipVerify must be true or false.`);
    }
    if (skip && entry["ca"] !== undefined) {
      throw new UsageError(
        `${where}: give ca or insecureSkipVerify, not both (with skip-verify the CA is never checked).`,
      );
    }
    return {
      host,
      mirrors: rawMirrors.map((mirror: unknown) => checkMirror(where, mirror)),
      ...(entry["ca"] === undefined ? {} : { ca: checkPath(where, "ca", entry["ca"]) }),
      insecureSkipVerify: skip,
      ...(entry["credentialsFile"] === undefined
        ? {}
        : { credentialsFile: checkPath(where, "credentialsFile", entry["credentialsFile"]) }),
    };
  });
  return { registries };
}

/** Pure: the text of a registry options file (YAML, so JSON too) -> options, or a UsageError. */
export function parseRegistryOptionsText(text: string, path: string): RegistryOptions {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new UsageError(
      `${path}: not YAML or JSON (${error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error)}).`,
    );
  }
  return parseRegistryOptions(document, path);
}
