/** mount(2) flags from linux/mount.h. */
export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  REMOUNT: 32,
  MANDLOCK: 64,
  DIRSYNC: 128,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  MOVE: 8192,
  REC: 16384,
  SILENT: 32768,
  UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  SHARED: 1 << 20,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
  LAZYTIME: 1 << 25,
} as const;

/** Option -> [flags to set, flags to clear], as runc's libcontainer/specconv mountFlags. */
const FLAG_OPTIONS: Readonly<Record<string, readonly [number, number]>> = {
  ro: [MS.RDONLY, 0],
  rw: [0, MS.RDONLY],
  nosuid: [MS.NOSUID, 0],
  suid: [0, MS.NOSUID],
  nodev: [MS.NODEV, 0],
  dev: [0, MS.NODEV],
  noexec: [MS.NOEXEC, 0],
  exec: [0, MS.NOEXEC],
  sync: [MS.SYNCHRONOUS, 0],
  async: [0, MS.SYNCHRONOUS],
  dirsync: [MS.DIRSYNC, 0],
  remount: [MS.REMOUNT, 0],
  mand: [MS.MANDLOCK, 0],
  nomand: [0, MS.MANDLOCK],
  atime: [0, MS.NOATIME],
  noatime: [MS.NOATIME, 0],
  diratime: [0, MS.NODIRATIME],
  nodiratime: [MS.NODIRATIME, 0],
  bind: [MS.BIND, 0],
  rbind: [MS.BIND | MS.REC, 0],
  relatime: [MS.RELATIME, 0],
  norelatime: [0, MS.RELATIME],
  strictatime: [MS.STRICTATIME, 0],
  nostrictatime: [0, MS.STRICTATIME],
  silent: [MS.SILENT, 0],
  loud: [0, MS.SILENT],
  lazytime: [MS.LAZYTIME, 0],
  nolazytime: [0, MS.LAZYTIME],
};

const PROPAGATION_OPTIONS: Readonly<Record<string, number>> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

export interface MountOptions {
  readonly flags: number;
  readonly propagation: readonly number[];
  /** Options the kernel reads as filesystem data (mode=755, size=65536k, newinstance...). */
  readonly data: string;
  /** "rro": read-only down the whole tree, submounts included (mount_setattr, Linux 5.12+). */
  readonly recursiveReadonly: boolean;
  /** "idmap" maps the top mount only, "ridmap" every submount too (runtime-spec config.md). */
  readonly idmap?: "idmap" | "ridmap";
  readonly warnings: readonly string[];
}

export function parseMountOptions(options: readonly string[] | undefined): MountOptions {
  let flags = 0;
  const propagation: number[] = [];
  const data: string[] = [];
  const warnings: string[] = [];
  let recursiveReadonly = false;
  let idmap: "idmap" | "ridmap" | undefined;
  for (const opt of options ?? []) {
    const flag = FLAG_OPTIONS[opt];
    if (flag !== undefined) {
      flags = (flags | flag[0]) & ~flag[1];
      continue;
    }
    const prop = PROPAGATION_OPTIONS[opt];
    if (prop !== undefined) {
      propagation.push(prop);
      continue;
    }
    if (opt === "rro") {
      // The top mount is made read-only by the remount too, so it holds even before mount_setattr.
      flags |= MS.RDONLY;
      recursiveReadonly = true;
      continue;
    }
    if (opt === "idmap" || opt === "ridmap") {
      idmap = opt;
      continue;
    }
    if (opt === "tmpcopyup" || opt.startsWith("x-")) {
      warnings.push(`mount option "${opt}" is not supported and was ignored`);
      continue;
    }
    data.push(opt);
  }
  return {
    flags,
    propagation,
    data: data.join(","),
    recursiveReadonly,
    ...(idmap === undefined ? {} : { idmap }),
    warnings,
  };
}

export function propagationFlags(name: string | undefined): number | undefined {
  if (name === undefined || name === "") return undefined;
  return PROPAGATION_OPTIONS[name];
}
