/**
 * What sandkube-proxy should be doing, computed from Services and EndpointSlices, and how that
 * differs from what it does now. Pure: no sockets, no `ip`, no clock.
 */
import type { V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import { formatIpv4, parseIpv4, subnetContains, type Ipv4Subnet } from "../cni/ipv4.js";

export type ProxyProtocol = "TCP" | "UDP";

export interface Backend {
  readonly ip: string;
  readonly port: number;
}

/** One port of one Service, with the ready endpoints that serve it. */
export interface ServiceRule {
  readonly namespace: string;
  readonly name: string;
  /** "" for a Service's single unnamed port. */
  readonly portName: string;
  readonly protocol: ProxyProtocol;
  /** IPv4 only, in the Service's order. */
  readonly clusterIPs: readonly string[];
  readonly port: number;
  readonly nodePort?: number;
  /** Ready endpoints, de-duplicated and sorted so that equal sets compare equal. */
  readonly backends: readonly Backend[];
}

/** A Service port this proxy will not serve, and why: never dropped without a word. */
export interface UnsupportedPort {
  readonly namespace: string;
  readonly name: string;
  readonly portName: string;
  readonly reason: string;
}

export interface DesiredRules {
  readonly rules: readonly ServiceRule[];
  readonly unsupported: readonly UnsupportedPort[];
}

/** KEP-2447: a Service carrying this label belongs to another proxy, which kube-proxy skips too. */
export const SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name";
/** The label the EndpointSlice controller puts on each slice it makes for a Service. */
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

export function serviceKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** "default/web:http", or "default/web" for an unnamed port: how the logs name a rule. */
export function ruleName(rule: { namespace: string; name: string; portName: string }): string {
  const service = serviceKey(rule.namespace, rule.name);
  return rule.portName === "" ? service : `${service}:${rule.portName}`;
}

function compareBackends(a: Backend, b: Backend): number {
  const ipA = parseIpv4(a.ip) ?? 0;
  const ipB = parseIpv4(b.ip) ?? 0;
  return ipA - ipB || a.port - b.port;
}

function isIpv4(text: string): boolean {
  return parseIpv4(text) !== undefined;
}

/**
 * An endpoint is used when `ready` is not false. A terminating endpoint is never used even if it
 * still serves: kube-proxy falls back to serving-terminating endpoints only when none is ready
 * (KEP-1669), which this proxy does not implement (docs/service-proxy.md, limits).
 */
function isUsable(conditions: { ready?: boolean; terminating?: boolean } | undefined): boolean {
  if (conditions === undefined) return true;
  return conditions.ready !== false && conditions.terminating !== true;
}

/** The ready backends of each (service, port name, protocol), gathered over every slice. */
function backendsByPort(slices: readonly V1EndpointSlice[]): Map<string, Backend[]> {
  const found = new Map<string, Backend[]>();
  for (const slice of slices) {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    const namespace = slice.metadata?.namespace;
    if (service === undefined || namespace === undefined) continue;
    if (slice.addressType !== "IPv4") continue;
    for (const port of slice.ports ?? []) {
      if (port.port === undefined) continue;
      const key = `${serviceKey(namespace, service)}|${port.name ?? ""}|${port.protocol ?? "TCP"}`;
      const backends = found.get(key) ?? [];
      found.set(key, backends);
      for (const endpoint of slice.endpoints ?? []) {
        // The API says consumers use the first address: the others are the same pod.
        const ip = endpoint.addresses?.[0];
        if (ip === undefined || !isIpv4(ip) || !isUsable(endpoint.conditions)) continue;
        backends.push({ ip, port: port.port });
      }
    }
  }
  return found;
}

function dedupe(backends: readonly Backend[]): Backend[] {
  const seen = new Map<string, Backend>();
  for (const backend of backends) seen.set(`${backend.ip}:${backend.port}`, backend);
  return [...seen.values()].sort(compareBackends);
}

export function desiredRules(
  services: readonly V1Service[],
  slices: readonly V1EndpointSlice[],
): DesiredRules {
  const backends = backendsByPort(slices);
  const rules: ServiceRule[] = [];
  const unsupported: UnsupportedPort[] = [];
  const sorted = [...services].sort((a, b) =>
    serviceKey(a.metadata?.namespace ?? "", a.metadata?.name ?? "").localeCompare(
      serviceKey(b.metadata?.namespace ?? "", b.metadata?.name ?? ""),
    ),
  );
  for (const service of sorted) {
    const namespace = service.metadata?.namespace;
    const name = service.metadata?.name;
    const spec = service.spec;
    if (namespace === undefined || name === undefined || spec === undefined) continue;
    if (service.metadata?.labels?.[SERVICE_PROXY_NAME_LABEL] !== undefined) continue;
    if (spec.type === "ExternalName") continue;
    const allIPs = spec.clusterIPs ?? (spec.clusterIP === undefined ? [] : [spec.clusterIP]);
    if (allIPs.length === 0 || allIPs.includes("None")) continue;
    const clusterIPs = allIPs.filter(isIpv4);
    for (const port of spec.ports ?? []) {
      const portName = port.name ?? "";
      const protocol = port.protocol ?? "TCP";
      if (protocol !== "TCP" && protocol !== "UDP") {
        unsupported.push({ namespace, name, portName, reason: `protocol ${protocol}` });
        continue;
      }
      if (clusterIPs.length === 0) {
        unsupported.push({ namespace, name, portName, reason: "no IPv4 cluster IP (IPv4 only)" });
        continue;
      }
      const usesNodePort =
        port.nodePort !== undefined && (spec.type === "NodePort" || spec.type === "LoadBalancer");
      rules.push({
        namespace,
        name,
        portName,
        protocol,
        clusterIPs,
        port: port.port,
        ...(usesNodePort ? { nodePort: port.nodePort } : {}),
        backends: dedupe(
          backends.get(`${serviceKey(namespace, name)}|${portName}|${protocol}`) ?? [],
        ),
      });
    }
  }
  return { rules, unsupported };
}

/** One socket the proxy holds: a cluster IP's port, or a NodePort on every address. */
export interface ListenerSpec {
  /** `${protocol} ${host}:${port}`: unique per socket the kernel would allow. */
  readonly key: string;
  readonly protocol: ProxyProtocol;
  readonly host: string;
  readonly port: number;
  /** Which rule this socket serves, for the logs. */
  readonly rule: string;
  readonly backends: readonly Backend[];
}

export const NODE_PORT_HOST = "0.0.0.0";

export function listenerKey(protocol: ProxyProtocol, host: string, port: number): string {
  return `${protocol} ${host}:${port}`;
}

export interface DesiredListeners {
  readonly listeners: readonly ListenerSpec[];
  /** A second rule asking for a socket another rule already has: the first one keeps it. */
  readonly conflicts: readonly string[];
}

export function desiredListeners(rules: readonly ServiceRule[]): DesiredListeners {
  const byKey = new Map<string, ListenerSpec>();
  const conflicts: string[] = [];
  const want = (rule: ServiceRule, host: string, port: number) => {
    const key = listenerKey(rule.protocol, host, port);
    const owner = byKey.get(key);
    if (owner !== undefined) {
      conflicts.push(`${key} is wanted by ${ruleName(rule)} and by ${owner.rule}`);
      return;
    }
    byKey.set(key, {
      key,
      protocol: rule.protocol,
      host,
      port,
      rule: ruleName(rule),
      backends: rule.backends,
    });
  };
  for (const rule of rules) {
    for (const ip of rule.clusterIPs) want(rule, ip, rule.port);
    if (rule.nodePort !== undefined) want(rule, NODE_PORT_HOST, rule.nodePort);
  }
  return { listeners: [...byKey.values()], conflicts };
}

export function sameBackends(a: readonly Backend[], b: readonly Backend[]): boolean {
  return a.length === b.length && a.every((x, i) => x.ip === b[i]?.ip && x.port === b[i]?.port);
}

export interface ListenerDiff {
  readonly open: readonly ListenerSpec[];
  /** Keys of sockets to close. */
  readonly close: readonly string[];
  /** Sockets that stay, with a new backend list swapped in place. */
  readonly update: readonly ListenerSpec[];
}

/** `current`: each open socket's key and the backends it uses now. */
export function diffListeners(
  current: ReadonlyMap<string, readonly Backend[]>,
  desired: readonly ListenerSpec[],
): ListenerDiff {
  const wanted = new Set(desired.map((listener) => listener.key));
  const open: ListenerSpec[] = [];
  const update: ListenerSpec[] = [];
  for (const listener of desired) {
    const backends = current.get(listener.key);
    if (backends === undefined) open.push(listener);
    else if (!sameBackends(backends, listener.backends)) update.push(listener);
  }
  const close = [...current.keys()].filter((key) => !wanted.has(key));
  return { open, close, update };
}

export interface AddressDiff {
  readonly add: readonly string[];
  readonly remove: readonly string[];
}

/**
 * The /32 addresses to add to and remove from the link. Only addresses inside the service range
 * are ever considered, so the node's own address and anything else on the link stay untouched.
 */
export function diffAddresses(
  current: readonly string[],
  rules: readonly ServiceRule[],
  serviceRange: Ipv4Subnet,
): AddressDiff {
  const inRange = (ip: string) => {
    const value = parseIpv4(ip);
    return value !== undefined && subnetContains(serviceRange, value);
  };
  const normalize = (ip: string) => formatIpv4(parseIpv4(ip) ?? 0);
  const have = new Set(current.filter(inRange).map(normalize));
  const want = new Set(
    rules
      .flatMap((rule) => rule.clusterIPs)
      .filter(inRange)
      .map(normalize),
  );
  return {
    add: [...want].filter((ip) => !have.has(ip)).sort(),
    remove: [...have].filter((ip) => !want.has(ip)).sort(),
  };
}

/** What changed between two rule sets, one line per rule, as the proxy logs it. */
export function describeRuleChanges(
  before: readonly ServiceRule[],
  after: readonly ServiceRule[],
): string[] {
  const id = (rule: ServiceRule) => `${ruleName(rule)}/${rule.protocol}`;
  const old = new Map(before.map((rule) => [id(rule), rule]));
  const lines: string[] = [];
  const where = (rule: ServiceRule) =>
    `${rule.clusterIPs.map((ip) => `${ip}:${rule.port}`).join(",")}/${rule.protocol}` +
    (rule.nodePort === undefined ? "" : ` nodePort ${rule.nodePort}`);
  for (const rule of after) {
    const previous = old.get(id(rule));
    old.delete(id(rule));
    const unchanged =
      previous !== undefined &&
      where(previous) === where(rule) &&
      sameBackends(previous.backends, rule.backends);
    if (unchanged) continue;
    const count = rule.backends.length;
    lines.push(
      `service ${ruleName(rule)} ${where(rule)} -> ${count} endpoint${count === 1 ? "" : "s"}`,
    );
  }
  for (const rule of old.values()) lines.push(`service ${ruleName(rule)} ${where(rule)} removed`);
  return lines;
}
