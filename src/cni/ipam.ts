import { link, mkdir, readFile, readdir, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CNI_ERROR, CniError } from "./errors.js";
import type { Attachment } from "./conf.js";
import {
  formatIpv4,
  formatSubnet,
  parseIpv4,
  podAddressCandidates,
  subnetContains,
  type Ipv4Subnet,
} from "./ipv4.js";

/**
 * Address allocation in one directory: a file named after each address in use, holding the owner's
 * container ID and interface name. The file system is the lock: an address is taken by whoever
 * creates its file first (link(2) fails with EEXIST for everyone else), so concurrent ADDs for
 * different pods need no daemon and no flock.
 */

/** Where the next search starts, as host-local's last_reserved_ip: a hint, racing is harmless. */
const LAST_RESERVED = "last-reserved";

export function ownerRecord(owner: Attachment): string {
  return `${owner.containerId}\n${owner.ifname}\n`;
}

export function parseOwnerRecord(text: string): Attachment | undefined {
  const [containerId, ifname] = text.split("\n");
  if (containerId === undefined || ifname === undefined || containerId === "") return undefined;
  return { containerId, ifname };
}

function sameOwner(a: Attachment, b: Attachment): boolean {
  return a.containerId === b.containerId && a.ifname === b.ifname;
}

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

export interface Allocation {
  readonly address: number;
  readonly owner: Attachment;
}

export class FileIpam {
  constructor(
    readonly dir: string,
    readonly subnet: Ipv4Subnet,
    readonly gateway: number,
  ) {}

  /** Every address file in the directory that belongs to this subnet, with its owner. */
  async allocations(): Promise<Allocation[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if (errnoOf(error) === "ENOENT") return [];
      throw error;
    }
    const found: Allocation[] = [];
    for (const name of names) {
      const address = parseIpv4(name);
      if (address === undefined || !subnetContains(this.subnet, address)) continue;
      const text = await readFile(join(this.dir, name), "utf8").catch(() => "");
      const owner = parseOwnerRecord(text);
      if (owner !== undefined) found.push({ address, owner });
    }
    return found;
  }

  /**
   * The owner's address: the one it already holds (an ADD retried after a crash keeps its address)
   * or a free one taken atomically. The record is complete before it becomes visible: it is
   * written to a file of the owner's own, then hard-linked under the address's name, so a crash
   * never leaves an address file without an owner that DEL could match.
   */
  async allocate(owner: Attachment, pendingName: string): Promise<number> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const existing = await this.allocations();
    const held = existing.find((allocation) => sameOwner(allocation.owner, owner));
    if (held !== undefined) return held.address;
    const taken = new Set(existing.map((allocation) => allocation.address));
    const pending = join(this.dir, pendingName);
    await writeFile(pending, ownerRecord(owner), { mode: 0o600 });
    try {
      const hint = parseIpv4(
        (await readFile(join(this.dir, LAST_RESERVED), "utf8").catch(() => "")).trim(),
      );
      for (const address of podAddressCandidates(this.subnet, this.gateway, hint)) {
        if (taken.has(address)) continue;
        try {
          await link(pending, join(this.dir, formatIpv4(address)));
        } catch (error) {
          if (errnoOf(error) === "EEXIST") continue;
          throw error;
        }
        await writeFile(join(this.dir, LAST_RESERVED), `${formatIpv4(address)}\n`).catch(
          () => undefined,
        );
        return address;
      }
    } finally {
      await unlink(pending).catch(() => undefined);
    }
    throw new CniError(
      CNI_ERROR.addressesExhausted,
      `no free address left in ${formatSubnet(this.subnet)} (${this.dir} holds one file per address in use)`,
    );
  }

  /** Removes every address file of `owner`; returns the addresses released (none is fine). */
  async release(owner: Attachment): Promise<number[]> {
    const released: number[] = [];
    for (const allocation of await this.allocations()) {
      if (!sameOwner(allocation.owner, owner)) continue;
      await unlink(join(this.dir, formatIpv4(allocation.address))).catch((error: unknown) => {
        if (errnoOf(error) !== "ENOENT") throw error;
      });
      released.push(allocation.address);
    }
    return released;
  }

  /** Whether at least one address is free, for STATUS. */
  async hasFreeAddress(): Promise<boolean> {
    const taken = new Set((await this.allocations()).map((allocation) => allocation.address));
    for (const address of podAddressCandidates(this.subnet, this.gateway)) {
      if (!taken.has(address)) return true;
    }
    return false;
  }
}
