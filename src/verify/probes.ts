/**
 * The pure half of the Service, DNS, egress and storage checks: the busybox shell snippets they
 * run in the client pod and the readers of what comes back. Everything here is unit-tested, and
 * the snippets were run with Debian's busybox-static 1.35 on this project's host (docs/verify.md).
 *
 * Facts about that busybox the snippets rest on (seen on the host, 1.35.0-4+deb12u1):
 * - `wget` has no `-T`, and the lab saw `wget -T` die with SIGSEGV inside gVisor, so each request
 *   is bounded by `timeout SECS wget ...`, which exits 143 when it had to kill wget.
 * - `wget` without `-q` prints "Connecting to HOST:PORT (IP:PORT)" before it connects: the libc
 *   resolver's answer (search list and ndots:5, as applications get it).
 * - `nslookup` speaks UDP to the first nameserver, prints each answer as "Name:" then
 *   "Address: IP" lines, exits 1 when any search-list candidate was NXDOMAIN even if another
 *   answered, and applies the search list only to names without a dot: it asks for
 *   `kubernetes.default` as it is. Its exit status is therefore ignored, its answers are read.
 * - `nc` has no UDP mode; `printenv` does not exist.
 */
import { parseIpv4, parseSubnet, subnetContains } from "../cni/ipv4.js";

// ---------------------------------------------------------------------------------------------
// The request loop

/** Each request line: `sk-req INDEX PHASE EXIT BODY...`, BODY whitespace-collapsed. */
export const REQUEST_TAG = "sk-req";

export interface LoopPhases {
  /** Files in the client's writable scratch dir that the check creates to steer the loop. */
  readonly afterFile: string;
  readonly stopFile: string;
  /** Created by the loop once `runningAfter` requests are done: the loop is under way. */
  readonly runningFile: string;
  readonly runningAfter: number;
  /** The loop ends once this many requests started after afterFile appeared. */
  readonly afterCount: number;
}

export interface LoopOptions {
  readonly url: string;
  /** The most requests the loop makes. */
  readonly count: number;
  readonly perRequestSeconds: number;
  /** Stop after this many failures in a row: a dead path should not cost count x timeout. */
  readonly giveUpAfter: number;
  /** Present for the endpoint-change check; every request is phase "-" without it. */
  readonly phases?: LoopPhases;
}

/** Things the shell sees literally: the URL and paths are ours, but never trust a quote. */
function shellWord(text: string): string {
  if (!/^[A-Za-z0-9_./:@%+=,-]+$/.test(text)) {
    throw new Error(`verify: ${JSON.stringify(text)} cannot go into the request loop unquoted`);
  }
  return text;
}

/** One shell word, whatever the text: single quotes, with each ' closed, escaped and reopened. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function positive(name: string, n: number): string {
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`verify: ${name} must be a positive integer, not ${n}`);
  return String(n);
}

/**
 * One `sh -c` script that makes the requests and prints one line each, so hundreds of requests
 * cost one `kubectl exec`. `set -f` keeps a body from being globbed when `$out` is word-split,
 * which also folds wget's multi-line messages into one line.
 */
export function requestLoopScript(options: LoopOptions): string {
  const url = shellWord(options.url);
  const count = positive("count", options.count);
  const seconds = positive("perRequestSeconds", options.perRequestSeconds);
  const giveUp = positive("giveUpAfter", options.giveUpAfter);
  const p = options.phases;
  const lines = ["set -f", "i=0; after=0; streak=0"];
  if (p !== undefined) {
    lines.push(
      `rm -f ${shellWord(p.afterFile)} ${shellWord(p.stopFile)} ${shellWord(p.runningFile)}`,
    );
  }
  lines.push(`while [ "$i" -lt ${count} ]; do`);
  if (p !== undefined) {
    lines.push(
      `  [ -e ${p.stopFile} ] && { echo sk-stopped; break; }`,
      `  phase=before; [ -e ${p.afterFile} ] && phase=after`,
    );
  } else lines.push("  phase=-");
  lines.push(
    `  out=$(timeout ${seconds} wget -q -O - ${url} 2>&1); rc=$?`,
    `  echo ${REQUEST_TAG} $i $phase $rc $out`,
    "  i=$((i+1))",
    '  if [ "$rc" -eq 0 ]; then streak=0; else streak=$((streak+1)); fi',
    `  [ "$streak" -ge ${giveUp} ] && { echo sk-gave-up $streak; break; }`,
  );
  if (p !== undefined) {
    lines.push(
      `  [ "$i" -eq ${positive("runningAfter", p.runningAfter)} ] && : > ${p.runningFile}`,
      `  [ "$phase" = after ] && { after=$((after+1)); [ "$after" -ge ${positive("afterCount", p.afterCount)} ] && break; }`,
    );
  }
  lines.push("done", "echo sk-end $i");
  return lines.join("\n");
}

/** Waits in the client pod until the loop says it is under way, for at most `seconds`. */
export function waitForFileScript(path: string, seconds: number): string {
  const tries = positive("tries", Math.ceil(seconds * 5));
  return `i=0; while [ ! -e ${shellWord(path)} ] && [ "$i" -lt ${tries} ]; do sleep 0.2; i=$((i+1)); done; [ -e ${path} ]`;
}

export type Phase = "before" | "after" | "-";

export interface RequestLine {
  readonly index: number;
  readonly phase: Phase;
  readonly exitCode: number;
  /** The page (a hostname) when exitCode is 0, wget's message otherwise. */
  readonly body: string;
}

export interface LoopOutput {
  readonly requests: readonly RequestLine[];
  /** The loop stopped on its own after giveUpAfter failures in a row. */
  readonly gaveUp: boolean;
  /** The check told it to stop (stopFile). */
  readonly stopped: boolean;
  /** The loop printed its last line; false when kubectl exec ended (or was killed) first. */
  readonly ended: boolean;
}

export function parseLoopOutput(stdout: string): LoopOutput {
  const requests: RequestLine[] = [];
  let gaveUp = false;
  let stopped = false;
  let ended = false;
  for (const line of stdout.split("\n")) {
    const words = line.trim().split(/\s+/);
    if (words[0] === REQUEST_TAG && words.length >= 4) {
      const [, index, phase, exitCode, ...body] = words;
      if (phase !== "before" && phase !== "after" && phase !== "-") continue;
      requests.push({
        index: Number(index),
        phase,
        exitCode: Number(exitCode),
        body: body.join(" "),
      });
    } else if (words[0] === "sk-gave-up") gaveUp = true;
    else if (words[0] === "sk-stopped") stopped = true;
    else if (words[0] === "sk-end") ended = true;
  }
  return { requests, gaveUp, stopped, ended };
}

/** What a failed request's line says, in words. */
export function requestFailure(line: RequestLine, perRequestSeconds: number): string {
  if (line.exitCode === 143) return `no answer within ${String(perRequestSeconds)} s`;
  const message = line.body.replace(/^wget:\s*/, "");
  return message === "" ? `wget exit status ${String(line.exitCode)}` : message;
}

export interface Tally {
  readonly total: number;
  readonly answered: number;
  readonly failed: number;
  /** Every expected replica with its count, zeros included, in the given order. */
  readonly perReplica: readonly (readonly [string, number])[];
  /** Answers from a body that is no expected replica's hostname. */
  readonly strangers: readonly (readonly [string, number])[];
  /** Each distinct failure with its count, most frequent first. */
  readonly failures: readonly (readonly [string, number])[];
}

function counted(items: readonly string[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1]);
}

/** Counts answers per replica: a request answered means exit 0 and a body. */
export function tally(
  requests: readonly RequestLine[],
  replicas: readonly string[],
  perRequestSeconds: number,
): Tally {
  const ok = requests.filter((r) => r.exitCode === 0 && r.body !== "");
  const bad = requests.filter((r) => !(r.exitCode === 0 && r.body !== ""));
  const known = new Set(replicas);
  const bodies = counted(ok.map((r) => r.body));
  return {
    total: requests.length,
    answered: ok.length,
    failed: bad.length,
    perReplica: replicas.map((name) => [name, bodies.find(([b]) => b === name)?.[1] ?? 0] as const),
    strangers: bodies.filter(([b]) => !known.has(b)),
    failures: counted(
      bad.map((r) => (r.exitCode === 0 ? "empty answer" : requestFailure(r, perRequestSeconds))),
    ),
  };
}

export function formatTally(t: Tally): string {
  const per = t.perReplica.map(([name, n]) => `${name} ${String(n)}`).join(", ");
  const strangers =
    t.strangers.length === 0
      ? ""
      : `; answers from no Ready replica: ${t.strangers.map(([b, n]) => `${JSON.stringify(b)} x${String(n)}`).join(", ")}`;
  const failures =
    t.failures.length === 0
      ? ""
      : `; failures: ${t.failures
          .slice(0, 3)
          .map(([m, n]) => `${String(n)}x ${m}`)
          .join("; ")}`;
  return `${String(t.answered)} of ${String(t.total)} requests answered (${per})${strangers}${failures}`;
}

// ---------------------------------------------------------------------------------------------
// DNS

export interface LookupAnswer {
  /** IPv4 addresses answered for the name (AAAA answers are left out). */
  readonly addresses: readonly string[];
  /** "server can't find X: NXDOMAIN", "connection timed out; no servers could be reached"... */
  readonly errors: readonly string[];
}

/** Reads busybox nslookup's output; the server's own "Address:" line comes before any "Name:". */
export function parseNslookup(output: string): LookupAnswer {
  const addresses: string[] = [];
  const errors: string[] = [];
  let inAnswer = false;
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("Name:")) inAnswer = true;
    else if (line === "") inAnswer = false;
    else if (inAnswer && line.startsWith("Address:")) {
      const value = line.slice("Address:".length).trim();
      if (parseIpv4(value) !== undefined && !addresses.includes(value)) addresses.push(value);
    } else if (line.startsWith("** ") || line.startsWith(";;") || line.startsWith("nslookup:")) {
      const error = line.replace(/^\*\*\s*|^;;\s*/, "");
      if (!errors.includes(error)) errors.push(error);
    }
  }
  return { addresses, errors };
}

/** The address in busybox wget's "Connecting to HOST:PORT (IP:PORT)", i.e. what libc resolved. */
export function parseConnectingTo(output: string): string | undefined {
  const m = /Connecting to \S+ \((\d+\.\d+\.\d+\.\d+):\d+\)/.exec(output);
  return m?.[1];
}

export interface ResolvConf {
  readonly nameservers: readonly string[];
  readonly search: readonly string[];
  readonly options: readonly string[];
}

export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = [];
  let search: string[] = [];
  const options: string[] = [];
  for (const line of text.split("\n")) {
    const [key, ...values] = line.trim().split(/\s+/);
    if (key === "nameserver" && values[0] !== undefined) nameservers.push(values[0]);
    else if (key === "search" || key === "domain") search = values;
    else if (key === "options") options.push(...values);
  }
  return { nameservers, search, options };
}

/** A lookup the DNS check makes and how: busybox nslookup, or libc through wget's banner. */
export interface DnsQuery {
  readonly name: string;
  readonly via: "nslookup" | "libc";
  /** For libc: the port wget connects to once resolved (a port the Service really has). */
  readonly port?: number;
  /** For nslookup: ask this server ("IP" or "IP:PORT") instead of resolv.conf's. */
  readonly server?: string;
}

export const SECTION_TAG = "sk-section";
/** After each lookup: its exit status, 143 when `timeout` had to kill it. */
export const EXIT_TAG = "sk-exit";

/** The exit status a section ends with, if it printed one. */
export function sectionExit(section: string): number | undefined {
  const m = new RegExp(`^${EXIT_TAG} (\\d+)$`, "m").exec(section);
  return m === null ? undefined : Number(m[1]);
}

/**
 * Every lookup in one exec, each output under its own `sk-section N` line, then the pod's
 * resolv.conf. wget's connection is bounded by `timeout`; only its banner is read.
 */
export function dnsScript(queries: readonly DnsQuery[], seconds: number): string {
  const s = positive("seconds", seconds);
  const parts = queries.map((q, i) => {
    const name = shellWord(q.name);
    const command =
      q.via === "nslookup"
        ? `timeout ${s} nslookup ${name}${q.server === undefined ? "" : ` ${shellWord(q.server)}`} 2>&1`
        : `timeout ${s} wget -O /dev/null http://${name}:${positive("port", q.port ?? 80)}/ 2>&1`;
    return `echo ${SECTION_TAG} ${String(i)}; ${command}; echo ${EXIT_TAG} $?`;
  });
  return [...parts, `echo ${SECTION_TAG} resolv; cat /etc/resolv.conf`].join("; ");
}

/** Splits dnsScript's output into its sections: index (or "resolv") -> text. */
export function parseSections(stdout: string): Map<string, string> {
  const sections = new Map<string, string>();
  let current: string | undefined;
  let lines: string[] = [];
  const flush = (): void => {
    if (current !== undefined) sections.set(current, lines.join("\n"));
  };
  for (const line of stdout.split("\n")) {
    const m = new RegExp(`^${SECTION_TAG} (\\S+)$`).exec(line.trim());
    if (m !== null) {
      flush();
      current = m[1];
      lines = [];
    } else lines.push(line);
  }
  flush();
  return sections;
}

// ---------------------------------------------------------------------------------------------
// Services, EndpointSlices, StorageClasses

export interface ServiceInfo {
  readonly clusterIP: string | undefined;
  readonly ports: readonly {
    readonly name?: string;
    readonly port: number;
    readonly protocol: string;
    readonly nodePort?: number;
  }[];
}

export function parseService(serviceJson: string): ServiceInfo {
  const svc = JSON.parse(serviceJson) as {
    spec?: {
      clusterIP?: string;
      ports?: { name?: string; port?: number; protocol?: string; nodePort?: number }[];
    };
  };
  const clusterIP = svc.spec?.clusterIP;
  return {
    clusterIP: clusterIP === undefined || clusterIP === "None" ? undefined : clusterIP,
    ports: (svc.spec?.ports ?? []).map((p) => ({
      ...(p.name === undefined ? {} : { name: p.name }),
      port: p.port ?? 0,
      protocol: p.protocol ?? "TCP",
      ...(p.nodePort === undefined ? {} : { nodePort: p.nodePort }),
    })),
  };
}

export interface Endpoint {
  readonly pod: string | undefined;
  readonly addresses: readonly string[];
  /** conditions.ready; absent means ready (discovery.k8s.io/v1: "nil should be interpreted as true"). */
  readonly ready: boolean;
  readonly terminating: boolean;
}

/** Every endpoint of every slice in `kubectl get endpointslices -o json`. */
export function parseEndpointSlices(sliceListJson: string): Endpoint[] {
  const list = JSON.parse(sliceListJson) as {
    items?: {
      endpoints?: {
        addresses?: string[];
        conditions?: { ready?: boolean; terminating?: boolean };
        targetRef?: { kind?: string; name?: string };
      }[];
    }[];
  };
  return (list.items ?? []).flatMap((slice) =>
    (slice.endpoints ?? []).map((e) => ({
      pod: e.targetRef?.kind === "Pod" ? e.targetRef.name : undefined,
      addresses: e.addresses ?? [],
      ready: e.conditions?.ready !== false,
      terminating: e.conditions?.terminating === true,
    })),
  );
}

export function readyEndpointPods(endpoints: readonly Endpoint[]): string[] {
  return endpoints.filter((e) => e.ready).map((e) => e.pod ?? e.addresses.join(","));
}

/** Names of the StorageClasses annotated as the default. */
export function defaultStorageClasses(classListJson: string): string[] {
  const list = JSON.parse(classListJson) as {
    items?: { metadata?: { name?: string; annotations?: Record<string, string> } }[];
  };
  return (list.items ?? [])
    .filter(
      (c) =>
        c.metadata?.annotations?.["storageclass.kubernetes.io/is-default-class"] === "true" ||
        c.metadata?.annotations?.["storageclass.beta.kubernetes.io/is-default-class"] === "true",
    )
    .map((c) => c.metadata?.name ?? "?");
}

// ---------------------------------------------------------------------------------------------
// Egress

export interface InterfaceAddress {
  readonly interface: string;
  readonly address: string;
  readonly family: "IPv4" | "IPv6";
  readonly internal: boolean;
}

/** The interface of the default route in /proc/net/route (destination 00000000, mask 00000000). */
export function defaultRouteInterface(procNetRoute: string): string | undefined {
  for (const line of procNetRoute.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[1] === "00000000" && f[7] === "00000000") return f[0];
  }
  return undefined;
}

/** sandkube's node link and the node ends of pod veths (src/cni/plan.ts linkNames: "sk" + 11 hex). */
export function isClusterLink(name: string): boolean {
  return name.startsWith("sandkube0") || /^sk[0-9a-f]{11}$/.test(name);
}

/**
 * An address of this machine a pod can reach only by leaving the cluster's ranges: IPv4, not
 * loopback, not on sandkube's links, outside every cluster range; the default route's first.
 */
export function pickEgressAddress(
  addresses: readonly InterfaceAddress[],
  defaultInterface: string | undefined,
  clusterRanges: readonly string[],
): InterfaceAddress | undefined {
  const ranges = clusterRanges.map((r) => {
    const subnet = parseSubnet(r);
    if (subnet === undefined) throw new Error(`verify: cluster range "${r}" is not an IPv4 CIDR`);
    return subnet;
  });
  const candidates = addresses.filter((a) => {
    const value = parseIpv4(a.address);
    return (
      a.family === "IPv4" &&
      !a.internal &&
      value !== undefined &&
      !a.address.startsWith("127.") &&
      !isClusterLink(a.interface) &&
      !ranges.some((r) => subnetContains(r, value))
    );
  });
  return candidates.find((a) => a.interface === defaultInterface) ?? candidates[0];
}
