import { createHash } from "node:crypto";
import type { Attachment, CniVersion, PluginConf } from "./conf.js";
import { formatIpv4 } from "./ipv4.js";

/**
 * What ADD and DEL do to links, addresses and routes, as `ip -batch` lines. Pure: the plugin runs
 * them (plugin.ts); the unit tests read them.
 *
 * The shape is routed, one veth pair per pod, without a bridge, because that is what gVisor's
 * netstack accepts (docs/cni.md): the bridge plugin's hairpin (IFLA_PROTINFO) gets EOPNOTSUPP and
 * promiscuous mode EINVAL there (docs/gvisor-blockers.md B9), and routes with a preferred source
 * (RTA_PREFSRC) get EOPNOTSUPP (probed by `sandkube doctor`, src/probe/network.ts routeWithSource).
 */

export interface LinkStep {
  /** Which part of the pod's link this is, named in an error when the kernel refuses it. */
  readonly what: string;
  /** One `ip -batch` line, split into words. */
  readonly words: readonly string[];
}

/** Link names for one attachment, derived from it alone so that DEL finds them without state. */
export interface LinkNames {
  /** The veth end that stays in the node's namespace. */
  readonly host: string;
  /** The pod's end before it is moved into the pod's namespace and renamed to CNI_IFNAME. */
  readonly peer: string;
  /** Names the attachment's pending IPAM record. */
  readonly key: string;
}

/** "sk" + 11 hex digits: 13 characters, under the kernel's 15, unlike any name CNI_IFNAME takes. */
export function linkNames(attachment: Attachment): LinkNames {
  const digest = createHash("sha256")
    .update(`${attachment.containerId}\0${attachment.ifname}`)
    .digest("hex");
  const short = digest.slice(0, 11);
  return { host: `sk${short}`, peer: `sp${short}`, key: digest.slice(0, 32) };
}

export interface AddPlan {
  readonly names: LinkNames;
  /** Run in the node's namespace: `ip -batch -`. */
  readonly node: readonly LinkStep[];
  /** Run in the pod's namespace: `nsenter --net=NETNS ip -batch -`. */
  readonly pod: readonly LinkStep[];
}

export interface AddInputs {
  readonly conf: PluginConf;
  readonly attachment: Attachment;
  readonly netns: string;
  readonly podAddress: number;
}

/**
 * The node side of every pod carries the gateway as a /32 and a /32 route to the pod; the pod
 * carries its address as a /32, an on-link route to the gateway and a default route through it.
 * Every packet between pods so crosses the node's forwarding (ip_forward, which the node turns on),
 * and no pod ever needs ARP answers for another pod, which gVisor could not give (no proxy_arp:
 * gVisor has no ipv4/conf/* sysctls, docs/gvisor-networking.md). Seen working by hand in runsc
 * (docs/gvisor-networking.md, "Seen in the lab"), asserted by test/gvisor/cni.test.ts.
 *
 * No route carries `src` (RTA_PREFSRC): gVisor refuses it with EOPNOTSUPP. Both veth ends get the
 * configured MTU, which must equal the sandbox uplink's: gVisor drops forwarded TCP segments larger
 * than the MTU with DF set (gVisor issue #14011).
 */
export function planAdd({ conf, attachment, netns, podAddress }: AddInputs): AddPlan {
  const names = linkNames(attachment);
  const mtu = String(conf.mtu);
  const gateway = formatIpv4(conf.gateway);
  const pod = formatIpv4(podAddress);
  const ifname = attachment.ifname;
  return {
    names,
    node: [
      {
        what: "create the veth pair",
        words: ["link", "add", names.host, "type", "veth", "peer", "name", names.peer],
      },
      { what: "set the MTU of the pod's end", words: ["link", "set", names.peer, "mtu", mtu] },
      { what: "set the MTU of the node's end", words: ["link", "set", names.host, "mtu", mtu] },
      {
        what: "move the pod's end into the pod's network namespace",
        words: ["link", "set", names.peer, "netns", netns],
      },
      {
        what: "give the node's end the gateway address",
        words: ["addr", "add", `${gateway}/32`, "dev", names.host],
      },
      { what: "bring the node's end up", words: ["link", "set", names.host, "up"] },
      {
        what: "route the pod's address to the node's end",
        words: ["route", "add", `${pod}/32`, "dev", names.host],
      },
      { what: "read the node's end", words: ["link", "show", "dev", names.host] },
    ],
    pod: [
      {
        what: `rename the pod's end to ${ifname}`,
        words: ["link", "set", names.peer, "name", ifname],
      },
      { what: "give the pod its address", words: ["addr", "add", `${pod}/32`, "dev", ifname] },
      { what: `bring ${ifname} up`, words: ["link", "set", ifname, "up"] },
      {
        what: "route the gateway on-link",
        words: ["route", "add", `${gateway}/32`, "dev", ifname],
      },
      {
        what: "route everything else through the gateway",
        words: ["route", "add", "default", "via", gateway, "dev", ifname],
      },
      { what: `read ${ifname}`, words: ["link", "show", "dev", ifname] },
    ],
  };
}

/** DEL: deleting the node's end deletes its peer, the gateway address and the pod's route. */
export function planDel(attachment: Attachment): LinkStep {
  const names = linkNames(attachment);
  return { what: "delete the veth pair", words: ["link", "del", names.host] };
}

export function batchInput(steps: readonly LinkStep[]): string {
  return steps.map((step) => `${step.words.join(" ")}\n`).join("");
}

export const NODE_BATCH_ARGV: readonly string[] = ["ip", "-batch", "-"];

/**
 * nsenter joins the namespace at any path with setns(2), which runsc new supports; `ip -n` and
 * `ip netns exec` take only names under /var/run/netns, and CNI_NETNS may be any path.
 */
export function podBatchArgv(netns: string): readonly string[] {
  return ["nsenter", `--net=${netns}`, "ip", "-batch", "-"];
}

/** The step `ip -batch` stopped at ("Command failed -:N" names the 1-based line), if it says. */
export function failedStep(
  steps: readonly LinkStep[],
  stderr: string,
): { index: number; step: LinkStep } | undefined {
  const match = /Command failed -:(\d+)/.exec(stderr);
  if (match === null) return undefined;
  const index = Number(match[1]) - 1;
  const step = steps[index];
  return step === undefined ? undefined : { index, step };
}

/** The kernel's words, without iproute2's batch bookkeeping line. */
export function kernelMessage(stderr: string): string {
  return stderr
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("Command failed"))
    .join("; ");
}

/** The MAC address `ip link show dev NAME` printed for that link. */
export function parseMac(stdout: string, name: string): string | undefined {
  const blocks = stdout.split(/\n(?=\d+: )/);
  const block = blocks.find((text) => new RegExp(`^\\d+: ${name}[@:]`).test(text));
  return /link\/ether ([0-9a-f]{2}(?::[0-9a-f]{2}){5})/.exec(block ?? "")?.[1];
}

export interface CniInterface {
  readonly name: string;
  readonly mac?: string;
  readonly mtu?: number;
  readonly sandbox?: string;
}

export interface CniIpConfig {
  readonly address: string;
  readonly gateway?: string;
  readonly interface?: number;
}

export interface CniRoute {
  readonly dst: string;
  readonly gw?: string;
}

export interface CniResult {
  readonly cniVersion: CniVersion;
  readonly interfaces: readonly CniInterface[];
  readonly ips: readonly CniIpConfig[];
  readonly routes: readonly CniRoute[];
  readonly dns: Record<string, never>;
}

/** The ADD result (SPEC.md "ADD Success"); `mtu` on interfaces exists from spec 1.1.0 on. */
export function addResult(
  { conf, attachment, netns, podAddress }: AddInputs,
  macs: { readonly host?: string; readonly pod?: string },
): CniResult {
  const names = linkNames(attachment);
  const withMtu = conf.cniVersion === "1.1.0" ? { mtu: conf.mtu } : {};
  const gateway = formatIpv4(conf.gateway);
  return {
    cniVersion: conf.cniVersion,
    interfaces: [
      { name: names.host, ...(macs.host === undefined ? {} : { mac: macs.host }), ...withMtu },
      {
        name: attachment.ifname,
        ...(macs.pod === undefined ? {} : { mac: macs.pod }),
        ...withMtu,
        sandbox: netns,
      },
    ],
    ips: [{ address: `${formatIpv4(podAddress)}/32`, gateway, interface: 1 }],
    routes: [{ dst: "0.0.0.0/0", gw: gateway }],
    dns: {},
  };
}
