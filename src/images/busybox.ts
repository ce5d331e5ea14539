import { chmod, copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ensureSuccess, runCommand } from "../common/exec.js";
import { isStaticElf } from "./elf.js";

/** Debian's busybox-static installs here; the plain `busybox` package's binary is dynamic. */
export const DEBIAN_BUSYBOX = "/usr/bin/busybox";

/** uids a pod's securityContext commonly asks for: root, a plain user, and nobody. */
export const BUSYBOX_USERS = [
  // A home under /tmp: the layer is owned by root unless built with --preserve-owner, so a
  // /home/user made here would not be the user's to write.
  { name: "root", uid: 0, gid: 0, home: "/root", shell: "/bin/sh" },
  { name: "user", uid: 1000, gid: 1000, home: "/tmp", shell: "/bin/sh" },
  { name: "nobody", uid: 65534, gid: 65534, home: "/nonexistent", shell: "/bin/false" },
] as const;

/** Pure: /etc/passwd for BUSYBOX_USERS. */
export function passwdFile(): string {
  return BUSYBOX_USERS.map(
    (u) => `${u.name}:x:${u.uid}:${u.gid}:${u.name}:${u.home}:${u.shell}\n`,
  ).join("");
}

/** Pure: /etc/group; 65534 is Debian's `nogroup`. */
export function groupFile(): string {
  return "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n";
}

/** Pure: `busybox --list` output -> applet names to link, never "busybox" itself or a path. */
export function appletNames(listing: string): string[] {
  return [
    ...new Set(
      listing
        .split("\n")
        .map((line) => line.trim())
        .filter((name) => name !== "" && name !== "busybox" && !name.includes("/")),
    ),
  ].sort();
}

export class BusyboxMissingError extends Error {
  constructor(path: string, why: string) {
    super(`${path} ${why}; install Debian's busybox-static (apt-get install busybox-static)`);
    this.name = "BusyboxMissingError";
  }
}

/**
 * Fills `dir` with a busybox root filesystem: /bin/busybox and a link per applet it lists,
 * /etc/passwd and /etc/group, /tmp (1777), /root, and empty /proc, /sys and /dev for the runtime
 * to mount over. Returns the applets linked.
 */
export async function busyboxRootfs(dir: string, busybox = DEBIAN_BUSYBOX): Promise<string[]> {
  const isStatic = await isStaticElf(busybox).catch((error: NodeJS.ErrnoException) => {
    throw new BusyboxMissingError(busybox, `cannot be read (${error.code ?? error.message})`);
  });
  if (!isStatic) throw new BusyboxMissingError(busybox, "is dynamically linked");
  const applets = appletNames(ensureSuccess(await runCommand([busybox, "--list"])).stdout);

  for (const sub of ["bin", "etc", "proc", "sys", "dev", "tmp", "root"]) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  // mkdir's mode goes through the umask; the sticky, world-writable /tmp must not.
  await chmod(join(dir, "tmp"), 0o1777);
  await chmod(join(dir, "root"), 0o700);
  await copyFile(busybox, join(dir, "bin/busybox"));
  await chmod(join(dir, "bin/busybox"), 0o755);
  for (const applet of applets) await symlink("busybox", join(dir, "bin", applet));
  await writeFile(join(dir, "etc/passwd"), passwdFile(), { mode: 0o644 });
  await writeFile(join(dir, "etc/group"), groupFile(), { mode: 0o644 });
  return applets;
}
