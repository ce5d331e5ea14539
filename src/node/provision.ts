import { constants } from "node:fs";
import { access, mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { ensureSuccess, runCommand } from "../common/exec.js";
import type { ProvisionStep } from "./provision-plan.js";

/**
 * What one applied step left in the sandbox, as data: `down` (or the next `up` after a crash)
 * undoes the records in reverse order without knowing how they were made.
 */
export type ProvisionRecord =
  | { readonly kind: "link"; readonly name: string; readonly because: string }
  | {
      readonly kind: "address";
      readonly link: string;
      /** With its prefix length, as `ip addr` takes it. */
      readonly address: string;
      readonly because: string;
    }
  | {
      readonly kind: "proc-file";
      readonly path: string;
      readonly previous: string;
      readonly because: string;
    }
  | {
      readonly kind: "mount";
      readonly target: string;
      /** A file or folder created only to be the mount point, removed after the unmount. */
      readonly created: "file" | "dir" | null;
      readonly because: string;
    }
  | { readonly kind: "dir"; readonly path: string; readonly because: string }
  | {
      readonly kind: "iptables-chain";
      readonly iptables: string;
      readonly table: "nat";
      /** Jumped to from this built-in chain. */
      readonly hook: "POSTROUTING";
      readonly chain: string;
      readonly because: string;
    };

export type RecordSink = (record: ProvisionRecord) => Promise<void>;

async function run(argv: readonly string[]): Promise<void> {
  ensureSuccess(await runCommand(argv, { timeoutMs: 30_000 }));
}

async function exists(path: string): Promise<boolean> {
  return access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
}

async function isMountPoint(path: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info.split("\n").some((line) => line.split(" ")[4] === path);
}

async function whichBinary(name: string): Promise<string | undefined> {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter), "/usr/sbin", "/sbin"];
  for (const dir of dirs.filter(Boolean)) {
    const candidate = join(dir, name);
    const ok = await access(candidate, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (ok) return candidate;
  }
  return undefined;
}

/** Copies what can be read of /proc/sys; entries gVisor refuses to read are left out. */
async function copyTree(from: string, to: string): Promise<void> {
  const entries = await readdir(from, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory()) {
      await mkdir(target, { recursive: true });
      await copyTree(source, target);
    } else if (entry.isFile()) {
      const value = await readFile(source).catch(() => undefined);
      if (value !== undefined) await writeFile(target, value);
    }
  }
}

async function mountRecorded(
  argv: readonly string[],
  target: string,
  because: string,
  sink: RecordSink,
  created: "file" | "dir" | null = null,
): Promise<void> {
  await run(argv);
  await sink({ kind: "mount", target, created, because });
}

/** Applies one step, reporting every change to `sink` as soon as it exists. */
export async function applyStep(step: ProvisionStep, sink: RecordSink): Promise<void> {
  switch (step.kind) {
    case "node-link": {
      if (step.peer === null) {
        // An existing link (lo) keeps everything but the node address, which is all `down` removes.
        const address = `${step.address}/32`;
        await runCommand(["ip", "addr", "del", address, "dev", step.link]);
        await run(["ip", "addr", "add", address, "dev", step.link]);
        await sink({ kind: "address", link: step.link, address, because: step.because });
        await run(["ip", "link", "set", step.link, "up"]);
        return;
      }
      // A link left by a crashed `up` is replaced, not reused: its address or MTU may be stale.
      await runCommand(["ip", "link", "del", step.link]);
      const mtu = String(step.mtu);
      await run([
        "ip",
        "link",
        "add",
        step.link,
        "mtu",
        mtu,
        "type",
        "veth",
        "peer",
        "name",
        step.peer,
        "mtu",
        mtu,
      ]);
      await sink({ kind: "link", name: step.link, because: step.because });
      await run(["ip", "addr", "add", `${step.address}/32`, "dev", step.link]);
      await run(["ip", "link", "set", step.peer, "up"]);
      await run(["ip", "link", "set", step.link, "up"]);
      return;
    }
    case "ip-forward": {
      const path = "/proc/sys/net/ipv4/ip_forward";
      const previous = (await readFile(path, "utf8")).trim();
      await writeFile(path, "1\n");
      await sink({ kind: "proc-file", path, previous, because: step.because });
      return;
    }
    case "dev-kmsg": {
      const created = (await exists("/dev/kmsg")) ? null : "file";
      if (created !== null) await writeFile("/dev/kmsg", "");
      await mountRecorded(
        ["mount", "--bind", "/dev/null", "/dev/kmsg"],
        "/dev/kmsg",
        step.because,
        sink,
        created,
      );
      return;
    }
    case "cgroup-v1": {
      const root = "/sys/fs/cgroup";
      if (step.mountRoot && !(await isMountPoint(root))) {
        await mkdir(root, { recursive: true });
        await mountRecorded(
          ["mount", "-t", "tmpfs", "-o", "mode=755", "cgroup", root],
          root,
          step.because,
          sink,
        );
      }
      for (const controllers of step.hierarchies) {
        const target = join(root, controllers.join(","));
        if (await isMountPoint(target)) continue;
        const created = (await exists(target)) ? null : "dir";
        await mkdir(target, { recursive: true });
        await mountRecorded(
          ["mount", "-t", "cgroup", "-o", controllers.join(","), "cgroup", target],
          target,
          step.because,
          sink,
          created,
        );
      }
      return;
    }
    case "proc-sys-copy": {
      // gVisor's procfs cannot grow new files, so a tmpfs copy of /proc/sys with the missing
      // entries added is laid over it (docs/gvisor-blockers.md B2).
      await mkdir(step.scratch, { recursive: true });
      await mountRecorded(
        ["mount", "-t", "tmpfs", "-o", "mode=755", "sandkube-proc-sys", step.scratch],
        step.scratch,
        step.because,
        sink,
        "dir",
      );
      await copyTree("/proc/sys", step.scratch);
      const missing = Object.entries(step.fallbackEntries);
      const absent: [string, string][] = [];
      for (const [name, value] of missing)
        if (!(await exists(join(step.scratch, name)))) absent.push([name, value]);
      for (const [name, value] of [...Object.entries(step.entries), ...absent]) {
        const file = join(step.scratch, name);
        await mkdir(dirname(file), { recursive: true });
        await writeFile(file, `${value}\n`);
      }
      await mountRecorded(
        ["mount", "--bind", step.scratch, "/proc/sys"],
        "/proc/sys",
        step.because,
        sink,
      );
      return;
    }
    case "shared-dir": {
      await mkdir(step.path, { recursive: true });
      if (await isMountPoint(step.path)) return;
      await mountRecorded(["mount", "--bind", step.path, step.path], step.path, step.because, sink);
      await run(["mount", "--make-shared", step.path]);
      return;
    }
    case "iptables-legacy-path": {
      await rm(step.dir, { recursive: true, force: true });
      await mkdir(step.dir, { recursive: true });
      await sink({ kind: "dir", path: step.dir, because: step.because });
      for (const [name, binary] of Object.entries(step.links)) {
        const resolved = binary.startsWith("/") ? binary : await whichBinary(binary);
        if (resolved !== undefined) await symlink(resolved, join(step.dir, name));
      }
      return;
    }
    case "egress-nat": {
      const record: ProvisionRecord = {
        kind: "iptables-chain",
        iptables: step.iptables,
        table: "nat",
        hook: "POSTROUTING",
        chain: step.chain,
        because: step.because,
      };
      // A chain left by a crashed `up` is rebuilt: its uplink addresses may be stale.
      await removeChain(record);
      await run([step.iptables, "-t", "nat", "-N", step.chain]);
      await sink(record);
      for (const rule of step.rules) {
        await run([step.iptables, "-t", "nat", "-A", step.chain, ...rule]);
      }
      await run([step.iptables, "-t", "nat", "-A", "POSTROUTING", "-j", step.chain]);
      return;
    }
  }
}

/** Every jump to the chain, then the chain; what is already gone is fine. */
async function removeChain(
  record: Extract<ProvisionRecord, { kind: "iptables-chain" }>,
): Promise<string | undefined> {
  const { iptables, table, hook, chain } = record;
  for (let i = 0; i < 10; i++) {
    const jump = await runCommand([iptables, "-t", table, "-D", hook, "-j", chain]);
    if (jump.exitCode !== 0) break;
  }
  await runCommand([iptables, "-t", table, "-F", chain]);
  const removed = await runCommand([iptables, "-t", table, "-X", chain]);
  const gone = removed.exitCode === 0 || /No chain|does not exist/i.test(removed.stderr);
  return gone ? undefined : `${iptables} -t ${table} -X ${chain}: ${removed.stderr.trim()}`;
}

/** Undoes one record; what is already gone is not an error, so a second `down` is harmless. */
export async function undoRecord(record: ProvisionRecord): Promise<string | undefined> {
  switch (record.kind) {
    case "link": {
      const result = await runCommand(["ip", "link", "del", record.name]);
      const gone = result.exitCode === 0 || /Cannot find device|does not exist/.test(result.stderr);
      return gone ? undefined : `ip link del ${record.name}: ${result.stderr.trim()}`;
    }
    case "address": {
      const result = await runCommand(["ip", "addr", "del", record.address, "dev", record.link]);
      const gone =
        result.exitCode === 0 ||
        /Cannot assign|Cannot find device|does not exist/.test(result.stderr);
      return gone
        ? undefined
        : `ip addr del ${record.address} dev ${record.link}: ${result.stderr.trim()}`;
    }
    case "proc-file":
      return writeFile(record.path, `${record.previous}\n`).then(
        () => undefined,
        (error: unknown) => `restoring ${record.path}: ${String(error)}`,
      );
    case "mount": {
      let problem: string | undefined;
      if (await isMountPoint(record.target)) {
        const result = await runCommand(["umount", record.target]);
        if (result.exitCode !== 0) {
          // A busy mount is detached now and freed once its last user goes.
          const lazy = await runCommand(["umount", "-l", record.target]);
          if (lazy.exitCode !== 0) problem = `umount ${record.target}: ${lazy.stderr.trim()}`;
        }
      }
      if (
        problem === undefined &&
        record.created !== null &&
        !(await isMountPoint(record.target))
      ) {
        await rm(record.target, { recursive: record.created === "dir", force: true }).catch(
          () => undefined,
        );
      }
      return problem;
    }
    case "dir":
      await rm(record.path, { recursive: true, force: true });
      return undefined;
    case "iptables-chain":
      return removeChain(record);
  }
}
