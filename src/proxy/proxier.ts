/**
 * Makes the node match the desired rules: addresses on the link, one socket per Service port,
 * backend lists swapped in place. One sync at a time; the caller decides when to sync.
 */
import type { V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import { LinkAddresses } from "./addresses.js";
import {
  describeRuleChanges,
  desiredListeners,
  desiredRules,
  diffAddresses,
  diffListeners,
  type Backend,
  type ListenerSpec,
  type ServiceRule,
  type UnsupportedPort,
} from "./desired.js";
import { openTcpListener, type ServiceListener } from "./tcp.js";
import { openUdpListener } from "./udp.js";

export interface ServiceProxyOptions {
  readonly addresses: LinkAddresses;
  readonly log: (line: string) => void;
  readonly tcpConnectTimeoutMs?: number;
  readonly udpIdleTimeoutMs?: number;
}

export interface SyncResult {
  readonly rules: readonly ServiceRule[];
  /** Listener keys that could not be opened this time (tried again at the next sync). */
  readonly failed: readonly string[];
}

export class ServiceProxy {
  private rules: readonly ServiceRule[] = [];
  private unsupported = new Set<string>();
  private conflicts = new Set<string>();
  private readonly listeners = new Map<string, ServiceListener>();
  /** Service addresses on the link as last read; undefined until the first sync reads it. */
  private addresses: string[] | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ServiceProxyOptions) {}

  /** The rules in force after the last sync. */
  currentRules(): readonly ServiceRule[] {
    return this.rules;
  }

  /** Every open socket's key ("TCP 10.96.0.10:53") and the backends it uses now. */
  currentListeners(): ReadonlyMap<string, readonly Backend[]> {
    return new Map([...this.listeners].map(([key, listener]) => [key, listener.backends()]));
  }

  /** Open connections (TCP) and sessions (UDP) over every listener. */
  activeCount(): number {
    return [...this.listeners.values()].reduce((sum, l) => sum + l.activeCount(), 0);
  }

  sync(services: readonly V1Service[], slices: readonly V1EndpointSlice[]): Promise<SyncResult> {
    const run = this.queue.then(() => this.syncNow(services, slices));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Closes every socket, open connections included, and removes every address it manages. */
  shutdown(): Promise<void> {
    const run = this.queue.then(async () => {
      for (const [key, listener] of this.listeners) {
        await listener.close(true);
        this.listeners.delete(key);
      }
      const present = this.addresses ?? (await this.options.addresses.current());
      this.addresses = await this.options.addresses.apply({ add: [], remove: present });
      this.rules = [];
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async syncNow(
    services: readonly V1Service[],
    slices: readonly V1EndpointSlice[],
  ): Promise<SyncResult> {
    const { log } = this.options;
    const desired = desiredRules(services, slices);
    this.reportUnsupported(desired.unsupported);
    const { listeners, conflicts } = desiredListeners(desired.rules);
    this.reportConflicts(conflicts);

    // Addresses first, so a new socket can bind its cluster IP; stale ones last, after their
    // sockets are closed.
    const link = this.options.addresses;
    this.addresses ??= await link.current();
    const addresses = diffAddresses(this.addresses, desired.rules, link.serviceRange);
    if (addresses.add.length > 0) {
      this.addresses = await link.apply({ add: addresses.add, remove: [] });
      const missing = addresses.add.filter((ip) => !this.addresses?.includes(ip));
      if (missing.length > 0) log(`could not add ${missing.join(", ")} to ${link.link}`);
    }

    const diff = diffListeners(this.currentListeners(), listeners);
    for (const key of diff.close) {
      await this.listeners.get(key)?.close(false);
      this.listeners.delete(key);
    }
    for (const spec of diff.update) this.listeners.get(spec.key)?.setBackends(spec.backends);
    const failed: string[] = [];
    for (const spec of diff.open) {
      try {
        this.listeners.set(spec.key, await this.open(spec));
      } catch (error) {
        failed.push(spec.key);
        log(`cannot listen on ${spec.key} for ${spec.rule}: ${(error as Error).message}`);
      }
    }

    if (addresses.remove.length > 0) {
      this.addresses = await link.apply({ add: [], remove: addresses.remove });
    }

    for (const line of describeRuleChanges(this.rules, desired.rules)) log(line);
    this.rules = desired.rules;
    return { rules: desired.rules, failed };
  }

  private open(spec: ListenerSpec): Promise<ServiceListener> {
    const log = (line: string) => this.options.log(`${spec.rule}: ${line}`);
    return spec.protocol === "TCP"
      ? openTcpListener(spec.host, spec.port, spec.backends, {
          log,
          connectTimeoutMs: this.options.tcpConnectTimeoutMs,
        })
      : openUdpListener(spec.host, spec.port, spec.backends, {
          log,
          idleTimeoutMs: this.options.udpIdleTimeoutMs,
        });
  }

  private reportUnsupported(ports: readonly UnsupportedPort[]): void {
    const now = new Set<string>();
    for (const port of ports) {
      const line = `service ${port.namespace}/${port.name}${port.portName === "" ? "" : `:${port.portName}`} not served: ${port.reason} is not supported by sandkube-proxy`;
      now.add(line);
      if (!this.unsupported.has(line)) this.options.log(line);
    }
    this.unsupported = now;
  }

  private reportConflicts(conflicts: readonly string[]): void {
    const now = new Set(conflicts);
    for (const line of now) if (!this.conflicts.has(line)) this.options.log(`conflict: ${line}`);
    this.conflicts = now;
  }
}
