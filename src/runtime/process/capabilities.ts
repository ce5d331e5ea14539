/** Capability numbers from linux/capability.h, in order, so the index is the bit. */
const CAPABILITY_NAMES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
] as const;

export const KNOWN_CAPABILITIES: readonly string[] = CAPABILITY_NAMES;

export interface CapabilityMask {
  readonly mask: bigint;
  /** Names this runtime does not know; runc warns about them and goes on, so do we. */
  readonly unknown: readonly string[];
}

/** Turns capability names (with or without the CAP_ prefix) into a 64-bit mask. */
export function capabilityMask(names: readonly string[] | undefined): CapabilityMask {
  let mask = 0n;
  const unknown: string[] = [];
  for (const raw of names ?? []) {
    const name = raw.toUpperCase().startsWith("CAP_")
      ? raw.toUpperCase()
      : `CAP_${raw.toUpperCase()}`;
    const bit = KNOWN_CAPABILITIES.indexOf(name);
    if (bit < 0) unknown.push(raw);
    else mask |= 1n << BigInt(bit);
  }
  return { mask, unknown };
}

/** Parses CapEff/CapPrm/... hex from /proc/<pid>/status into names, for tests and diagnostics. */
export function capabilityNames(hexMask: string): string[] {
  const mask = BigInt(`0x${hexMask}`);
  return KNOWN_CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}
