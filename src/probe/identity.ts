import type { ProbeIO } from "./io.js";

/** Who the probes ran as: most probes and every adaptation need root. */
export interface IdentityFacts {
  /** Effective uid from /proc/self/status, or null when it could not be read. */
  readonly uid: number | null;
  readonly isRoot: boolean;
  /** CapEff from /proc/self/status, as hex; null when unreadable. */
  readonly effectiveCapabilities: string | null;
  /** CAP_SYS_ADMIN (bit 21) is what mounts, namespaces and cgroup writes need. */
  readonly hasCapSysAdmin: boolean;
}

const CAP_SYS_ADMIN = 21n;

export function parseStatusField(status: string, field: string): string | undefined {
  for (const line of status.split("\n")) {
    if (line.startsWith(`${field}:`)) return line.slice(field.length + 1).trim();
  }
  return undefined;
}

export async function probeIdentity(io: ProbeIO): Promise<IdentityFacts> {
  const status = await io.read("/proc/self/status");
  if (!status.ok) {
    return { uid: null, isRoot: false, effectiveCapabilities: null, hasCapSysAdmin: false };
  }
  // Uid: real effective saved filesystem
  const effective = parseStatusField(status.value, "Uid")?.split(/\s+/)[1];
  const uid = effective === undefined ? null : Number.parseInt(effective, 10);
  const capEff = parseStatusField(status.value, "CapEff") ?? null;
  const hasCapSysAdmin = capEff !== null && ((BigInt(`0x${capEff}`) >> CAP_SYS_ADMIN) & 1n) === 1n;
  return { uid, isRoot: uid === 0, effectiveCapabilities: capEff, hasCapSysAdmin };
}
