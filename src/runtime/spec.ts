import { RuntimeError } from "./errors.js";

/** The parts of the OCI runtime spec (config.json) that sandkube-runtime reads. */
export interface OciUser {
  readonly uid: number;
  readonly gid: number;
  readonly umask?: number;
  readonly additionalGids?: readonly number[];
}

export interface OciCapabilities {
  readonly bounding?: readonly string[];
  readonly effective?: readonly string[];
  readonly inheritable?: readonly string[];
  readonly permitted?: readonly string[];
  readonly ambient?: readonly string[];
}

export interface OciRlimit {
  readonly type: string;
  readonly soft: number;
  readonly hard: number;
}

export interface OciProcess {
  readonly terminal?: boolean;
  readonly user: OciUser;
  readonly args: readonly string[];
  readonly env?: readonly string[];
  readonly cwd: string;
  readonly capabilities?: OciCapabilities;
  readonly rlimits?: readonly OciRlimit[];
  readonly noNewPrivileges?: boolean;
  readonly oomScoreAdj?: number;
  readonly apparmorProfile?: string;
  readonly selinuxLabel?: string;
}

export interface OciMount {
  readonly destination: string;
  readonly type?: string;
  readonly source?: string;
  readonly options?: readonly string[];
  /** An idmapped mount's maps (validated by userns.ts parseIdMappings). */
  readonly uidMappings?: readonly unknown[];
  readonly gidMappings?: readonly unknown[];
}

export const NAMESPACE_TYPES = [
  "pid",
  "network",
  "mount",
  "ipc",
  "uts",
  "user",
  "cgroup",
  "time",
] as const;
export type NamespaceType = (typeof NAMESPACE_TYPES)[number];

export interface OciNamespace {
  readonly type: NamespaceType;
  readonly path?: string;
}

export interface OciDevice {
  readonly type: string;
  readonly path: string;
  readonly major?: number;
  readonly minor?: number;
  readonly fileMode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

export interface OciDeviceRule {
  readonly allow: boolean;
  readonly type?: string;
  readonly major?: number;
  readonly minor?: number;
  readonly access?: string;
}

export interface OciBlockIODeviceWeight {
  readonly major: number;
  readonly minor: number;
  readonly weight?: number;
  readonly leafWeight?: number;
}

export interface OciBlockIODeviceRate {
  readonly major: number;
  readonly minor: number;
  readonly rate: number;
}

export interface OciResources {
  readonly devices?: readonly OciDeviceRule[];
  readonly memory?: {
    readonly limit?: number;
    readonly reservation?: number;
    readonly swap?: number;
    readonly kernel?: number;
    readonly kernelTCP?: number;
    readonly swappiness?: number;
    readonly disableOOMKiller?: boolean;
  };
  readonly blockIO?: {
    readonly weight?: number;
    readonly leafWeight?: number;
    readonly weightDevice?: readonly OciBlockIODeviceWeight[];
    readonly throttleReadBpsDevice?: readonly OciBlockIODeviceRate[];
    readonly throttleWriteBpsDevice?: readonly OciBlockIODeviceRate[];
    readonly throttleReadIOPSDevice?: readonly OciBlockIODeviceRate[];
    readonly throttleWriteIOPSDevice?: readonly OciBlockIODeviceRate[];
  };
  readonly network?: {
    readonly classID?: number;
    readonly priorities?: readonly { readonly name: string; readonly priority: number }[];
  };
  readonly hugepageLimits?: readonly { readonly pageSize: string; readonly limit: number }[];
  readonly rdma?: Readonly<Record<string, unknown>>;
  readonly cpu?: {
    readonly shares?: number;
    readonly quota?: number;
    readonly period?: number;
    readonly cpus?: string;
    readonly mems?: string;
  };
  readonly pids?: { readonly limit?: number };
  readonly unified?: Readonly<Record<string, string>>;
}

export interface OciLinux {
  readonly namespaces?: readonly OciNamespace[];
  readonly uidMappings?: readonly unknown[];
  readonly gidMappings?: readonly unknown[];
  readonly devices?: readonly OciDevice[];
  readonly cgroupsPath?: string;
  readonly resources?: OciResources;
  readonly rootfsPropagation?: string;
  readonly maskedPaths?: readonly string[];
  readonly readonlyPaths?: readonly string[];
  readonly sysctl?: Readonly<Record<string, string>>;
  readonly seccomp?: unknown;
  readonly mountLabel?: string;
  readonly intelRdt?: unknown;
  readonly personality?: unknown;
}

export interface OciSpec {
  readonly ociVersion: string;
  readonly process?: OciProcess;
  readonly root: { readonly path: string; readonly readonly?: boolean };
  readonly hostname?: string;
  readonly domainname?: string;
  readonly mounts?: readonly OciMount[];
  readonly hooks?: Readonly<Record<string, unknown>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly linux?: OciLinux;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fail(where: string, what: string): never {
  throw new RuntimeError(`config.json: ${where} ${what}`);
}

function checkStringArray(v: unknown, where: string): void {
  if (v === undefined) return;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string"))
    fail(where, "must be an array of strings");
}

/** Validates the shape of a process object (config.json's `process`, or exec's --process file). */
export function parseProcess(raw: unknown, where: string): OciProcess {
  if (!isObject(raw)) fail(where, "must be an object");
  const user = raw["user"];
  if (!isObject(user) || typeof user["uid"] !== "number" || typeof user["gid"] !== "number")
    fail(`${where}.user`, "must have numeric uid and gid");
  const args = raw["args"];
  if (!Array.isArray(args) || args.length === 0 || args.some((a) => typeof a !== "string"))
    fail(`${where}.args`, "must be a non-empty array of strings (the command to run)");
  if (typeof raw["cwd"] !== "string" || !raw["cwd"].startsWith("/"))
    fail(`${where}.cwd`, "must be an absolute path");
  checkStringArray(raw["env"], `${where}.env`);
  const caps = raw["capabilities"];
  if (caps !== undefined) {
    if (!isObject(caps)) fail(`${where}.capabilities`, "must be an object");
    for (const set of ["bounding", "effective", "inheritable", "permitted", "ambient"])
      checkStringArray(caps[set], `${where}.capabilities.${set}`);
  }
  return raw as unknown as OciProcess;
}

/**
 * Parses config.json text. Checks what later steps rely on, so a bad bundle fails here with a
 * message naming the field instead of half-way through container setup.
 */
export function parseSpec(text: string, source = "config.json"): OciSpec {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new RuntimeError(`${source} is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(raw)) fail("top level", "must be a JSON object");
  if (typeof raw["ociVersion"] !== "string") fail("ociVersion", "is missing");
  const root = raw["root"];
  if (!isObject(root) || typeof root["path"] !== "string" || root["path"] === "")
    fail("root.path", "is missing (the bundle's root filesystem directory)");
  if (raw["process"] === undefined) fail("process", "is missing (create needs the command to run)");
  parseProcess(raw["process"], "process");
  const mounts = raw["mounts"];
  if (mounts !== undefined) {
    if (!Array.isArray(mounts)) fail("mounts", "must be an array");
    mounts.forEach((m: unknown, i) => {
      if (!isObject(m) || typeof m["destination"] !== "string" || !m["destination"].startsWith("/"))
        fail(`mounts[${i}].destination`, "must be an absolute path");
      checkStringArray(m["options"], `mounts[${i}].options`);
    });
  }
  const linux = raw["linux"];
  if (linux !== undefined) {
    if (!isObject(linux)) fail("linux", "must be an object");
    const namespaces = linux["namespaces"];
    if (namespaces !== undefined) {
      if (!Array.isArray(namespaces)) fail("linux.namespaces", "must be an array");
      const seen = new Set<string>();
      namespaces.forEach((ns: unknown, i) => {
        if (!isObject(ns) || typeof ns["type"] !== "string")
          fail(`linux.namespaces[${i}]`, "needs a type");
        const type = ns["type"];
        if (!(NAMESPACE_TYPES as readonly string[]).includes(type))
          fail(
            `linux.namespaces[${i}].type`,
            `"${type}" is not a namespace type (one of: ${NAMESPACE_TYPES.join(", ")})`,
          );
        if (seen.has(type)) fail(`linux.namespaces[${i}]`, `repeats namespace type "${type}"`);
        seen.add(type);
        if (
          ns["path"] !== undefined &&
          (typeof ns["path"] !== "string" || !ns["path"].startsWith("/"))
        )
          fail(`linux.namespaces[${i}].path`, "must be an absolute path");
      });
    }
    checkStringArray(linux["maskedPaths"], "linux.maskedPaths");
    checkStringArray(linux["readonlyPaths"], "linux.readonlyPaths");
  }
  return raw as unknown as OciSpec;
}

/** The spec's namespace of a type, if listed. */
export function namespaceOf(spec: OciSpec, type: NamespaceType): OciNamespace | undefined {
  return spec.linux?.namespaces?.find((n) => n.type === type);
}
