/** IPv4 arithmetic on unsigned 32-bit integers: the pod range and its addresses. Pure. */

export interface Ipv4Subnet {
  /** The network address, host bits zero. */
  readonly network: number;
  readonly prefix: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function parseIpv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((part) => OCTET.test(part))) return undefined;
  return parts.reduce((value, part) => value * 256 + Number(part), 0);
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "10.244.0.0/24" -> its subnet; undefined when malformed or when host bits are set. */
export function parseSubnet(text: string): Ipv4Subnet | undefined {
  const [address, prefixText, ...rest] = text.split("/");
  if (address === undefined || prefixText === undefined || rest.length > 0) return undefined;
  if (!/^\d{1,2}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const network = parseIpv4(address);
  if (network === undefined || prefix > 32) return undefined;
  if ((network & maskOf(prefix)) >>> 0 !== network) return undefined;
  return { network, prefix };
}

export function formatSubnet(subnet: Ipv4Subnet): string {
  return `${formatIpv4(subnet.network)}/${subnet.prefix}`;
}

export function broadcastOf(subnet: Ipv4Subnet): number {
  return (subnet.network | ~maskOf(subnet.prefix)) >>> 0;
}

export function subnetContains(subnet: Ipv4Subnet, address: number): boolean {
  return (address & maskOf(subnet.prefix)) >>> 0 === subnet.network;
}

/**
 * Every address a pod may get, starting after `after` and wrapping round, as host-local does so
 * that a just-released address is the last to be handed out again. The network, broadcast and
 * gateway addresses are never candidates.
 */
export function* podAddressCandidates(
  subnet: Ipv4Subnet,
  gateway: number,
  after?: number,
): Generator<number> {
  const first = subnet.network + 1;
  const last = broadcastOf(subnet) - 1;
  if (last < first) return;
  const start = after !== undefined && after >= first && after < last ? after + 1 : first;
  for (let offset = 0; offset <= last - first; offset++) {
    const address = first + ((start - first + offset) % (last - first + 1));
    if (address !== gateway) yield address;
  }
}
