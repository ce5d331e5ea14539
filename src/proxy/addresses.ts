/**
 * The cluster IPs as /32 addresses on the node's link, so that the kernel delivers a packet for
 * a cluster IP to the proxy's socket. Seen in the gVisor lab (docs/service-proxy.md): a /32 on
 * `sandkube0` in the sandbox's root netns, with a server bound to it, is reached from a pod netns
 * (via its veth and default route) and from the root netns itself.
 */
import { ensureSuccess, runCommand, type CommandRunner } from "../common/exec.js";
import { parseIpv4, subnetContains, type Ipv4Subnet } from "../cni/ipv4.js";
import type { AddressDiff } from "./desired.js";

interface IpAddrJson {
  readonly addr_info?: readonly { family?: string; local?: string; prefixlen?: number }[];
}

/**
 * The /32 IPv4 addresses inside `serviceRange` that `ip -j -4 addr show dev LINK` lists: the only
 * ones this proxy adds, and so the only ones it may remove.
 */
export function parseServiceAddresses(json: string, serviceRange: Ipv4Subnet): string[] {
  const links = JSON.parse(json === "" ? "[]" : json) as readonly IpAddrJson[];
  const found: string[] = [];
  for (const link of links) {
    for (const info of link.addr_info ?? []) {
      if (info.family !== "inet" || info.prefixlen !== 32 || info.local === undefined) continue;
      const value = parseIpv4(info.local);
      if (value !== undefined && subnetContains(serviceRange, value)) found.push(info.local);
    }
  }
  return found.sort();
}

/** `ip -batch` lines for a diff: additions first, so a Service moving addresses never goes dark. */
export function addressBatch(link: string, diff: AddressDiff): string {
  return [
    ...diff.add.map((ip) => `address add ${ip}/32 dev ${link}`),
    ...diff.remove.map((ip) => `address del ${ip}/32 dev ${link}`),
  ]
    .map((line) => `${line}\n`)
    .join("");
}

export class LinkAddresses {
  constructor(
    readonly link: string,
    readonly serviceRange: Ipv4Subnet,
    private readonly run: CommandRunner = runCommand,
  ) {}

  /** Fails with the `ip` error when the link does not exist here. */
  async current(): Promise<string[]> {
    const result = ensureSuccess(
      await this.run(["ip", "-j", "-4", "address", "show", "dev", this.link]),
    );
    return parseServiceAddresses(result.stdout.trim(), this.serviceRange);
  }

  /**
   * One `ip` process per change set, because each exec costs milliseconds on the host and more
   * under gVisor. `-force` goes on past "File exists" / "Cannot assign requested address" (an
   * address already there, or already gone); the link is read again to see what took.
   */
  async apply(diff: AddressDiff): Promise<string[]> {
    if (diff.add.length === 0 && diff.remove.length === 0) return this.current();
    await this.run(["ip", "-force", "-batch", "-"], { input: addressBatch(this.link, diff) });
    return this.current();
  }
}
