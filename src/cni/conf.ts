import type { SandkubeCniNetConf } from "../plan/cni-config.js";
import { CNI_ERROR, CniError } from "./errors.js";
import { parseIpv4, parseSubnet, broadcastOf, subnetContains, type Ipv4Subnet } from "./ipv4.js";

/** The spec versions whose result shape this plugin writes (SPEC.md 1.0.0 and 1.1.0). */
export const SUPPORTED_VERSIONS = ["1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = "1.1.0";

/**
 * The plugin's own fields, named as src/plan/cni-config.ts renders them: renaming one there stops
 * this file from compiling.
 */
const FIELD: { readonly [K in keyof SandkubeCniNetConf]: K } = {
  type: "type",
  subnet: "subnet",
  gateway: "gateway",
  mtu: "mtu",
  ipamDir: "ipamDir",
};

/** The configuration as the plugin uses it: validated, addresses parsed. */
export interface PluginConf {
  readonly cniVersion: CniVersion;
  readonly name: string;
  readonly subnet: Ipv4Subnet;
  readonly gateway: number;
  readonly mtu: number;
  readonly ipamDir: string;
  /** CHECK and DEL: the result of the ADD before, when the runtime cached it. */
  readonly prevResult?: unknown;
  /** GC (spec 1.1): the attachments the runtime still knows; all others are stale. */
  readonly validAttachments?: readonly Attachment[];
}

export interface Attachment {
  readonly containerId: string;
  readonly ifname: string;
}

// Below 68 IPv4 itself breaks (RFC 791); 65535 is the largest an IPv4 packet can be.
const MTU_MIN = 68;
const MTU_MAX = 65535;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function invalid(message: string): CniError {
  return new CniError(CNI_ERROR.invalidConfig, `network configuration: ${message}`);
}

export function decodeJson(stdin: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdin);
  } catch (error) {
    throw new CniError(
      CNI_ERROR.decodeFailure,
      "the network configuration on stdin is not JSON",
      (error as Error).message,
    );
  }
  if (!isObject(parsed)) {
    throw new CniError(CNI_ERROR.decodeFailure, "the network configuration is not a JSON object");
  }
  return parsed;
}

export function parseVersion(json: Json): CniVersion {
  const version = json["cniVersion"];
  if (typeof version !== "string") throw invalid('"cniVersion" is missing');
  const supported = SUPPORTED_VERSIONS.find((candidate) => candidate === version);
  if (supported === undefined) {
    throw new CniError(
      CNI_ERROR.incompatibleVersion,
      `cniVersion ${version} is not supported by sandkube-cni; use one of ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  return supported;
}

function parseAttachments(value: unknown): readonly Attachment[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw invalid('"cni.dev/valid-attachments" is not a list');
  return value.map((entry: unknown) => {
    if (
      !isObject(entry) ||
      typeof entry["containerID"] !== "string" ||
      typeof entry["ifname"] !== "string"
    ) {
      throw invalid('each of "cni.dev/valid-attachments" needs "containerID" and "ifname"');
    }
    return { containerId: entry["containerID"], ifname: entry["ifname"] };
  });
}

/** Validates the plugin's configuration; every problem names the field and what it must be. */
export function parsePluginConf(json: Json): PluginConf {
  const cniVersion = parseVersion(json);
  if (json[FIELD.type] !== "sandkube-cni") {
    throw invalid(`"type" is ${JSON.stringify(json[FIELD.type])}, this plugin is "sandkube-cni"`);
  }
  const name = json["name"];
  if (typeof name !== "string" || name === "") throw invalid('"name" is missing');
  const subnetText = json[FIELD.subnet];
  const subnet = typeof subnetText === "string" ? parseSubnet(subnetText) : undefined;
  // A /31 or /32 has no address left once network, broadcast and gateway are taken.
  if (subnet === undefined || subnet.prefix > 30) {
    throw invalid(
      `"subnet" is ${JSON.stringify(subnetText)}; it must be an IPv4 range like 10.244.0.0/24 (at most /30)`,
    );
  }
  const gatewayText = json[FIELD.gateway];
  const gateway = typeof gatewayText === "string" ? parseIpv4(gatewayText) : undefined;
  if (
    gateway === undefined ||
    !subnetContains(subnet, gateway) ||
    gateway === subnet.network ||
    gateway === broadcastOf(subnet)
  ) {
    throw invalid(
      `"gateway" is ${JSON.stringify(gatewayText)}; it must be a host address inside "subnet" ${String(subnetText)}`,
    );
  }
  const mtu = json[FIELD.mtu];
  if (typeof mtu !== "number" || !Number.isInteger(mtu) || mtu < MTU_MIN || mtu > MTU_MAX) {
    throw invalid(
      `"mtu" is ${JSON.stringify(mtu)}; it must be an integer from ${MTU_MIN} to ${MTU_MAX} (the sandbox uplink's MTU)`,
    );
  }
  const ipamDir = json[FIELD.ipamDir];
  if (typeof ipamDir !== "string" || !ipamDir.startsWith("/")) {
    throw invalid(`"ipamDir" is ${JSON.stringify(ipamDir)}; it must be an absolute path`);
  }
  const validAttachments = parseAttachments(json["cni.dev/valid-attachments"]);
  return {
    cniVersion,
    name,
    subnet,
    gateway,
    mtu,
    ipamDir,
    ...(json["prevResult"] === undefined ? {} : { prevResult: json["prevResult"] }),
    ...(validAttachments === undefined ? {} : { validAttachments }),
  };
}

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION" | "STATUS" | "GC";
const COMMANDS: readonly CniCommand[] = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"];

/** What the runtime passed in the environment (SPEC.md, "Parameters"). */
export interface CniArgs {
  readonly command: CniCommand;
  readonly containerId: string;
  /** Empty on DEL when the namespace is already gone. */
  readonly netns: string;
  readonly ifname: string;
}

function badEnvironment(message: string): CniError {
  return new CniError(CNI_ERROR.invalidEnvironment, message);
}

export function parseCommand(env: Readonly<Record<string, string | undefined>>): CniCommand {
  const command = env["CNI_COMMAND"];
  const known = COMMANDS.find((candidate) => candidate === command);
  if (known === undefined) {
    throw badEnvironment(
      `CNI_COMMAND is ${JSON.stringify(command ?? "")}; it must be one of ${COMMANDS.join(", ")}`,
    );
  }
  return known;
}

// SPEC.md: a container ID starts with an alphanumeric character, then alphanumerics, _ . -
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
// SPEC.md: an interface name is under 16 characters, not "." or "..", without / : or whitespace.
const IFNAME = /^[^/:\s]{1,15}$/;
// The netns path goes into an `ip -batch` line, whose tokenizer gives quotes and backslashes meaning.
const NETNS_PATH = /^\/[^\s"'\\]*$/;

/** The attachment parameters of ADD, DEL and CHECK; `netns` may be empty only on DEL. */
export function parseAttachmentArgs(
  command: CniCommand,
  env: Readonly<Record<string, string | undefined>>,
): CniArgs {
  const containerId = env["CNI_CONTAINERID"] ?? "";
  if (!CONTAINER_ID.test(containerId)) {
    throw badEnvironment(
      `CNI_CONTAINERID ${JSON.stringify(containerId)} is not a container ID (alphanumeric first, then alphanumerics, "_", "." or "-")`,
    );
  }
  const ifname = env["CNI_IFNAME"] ?? "";
  if (!IFNAME.test(ifname) || ifname === "." || ifname === "..") {
    throw badEnvironment(
      `CNI_IFNAME ${JSON.stringify(ifname)} is not an interface name (1-15 characters, no "/", ":" or spaces)`,
    );
  }
  const netns = env["CNI_NETNS"] ?? "";
  if (!(command === "DEL" && netns === "") && !NETNS_PATH.test(netns)) {
    throw badEnvironment(
      `CNI_NETNS ${JSON.stringify(netns)} is not an absolute path without spaces or quotes`,
    );
  }
  return { command, containerId, netns, ifname };
}
