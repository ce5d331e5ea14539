/**
 * Services, DNS and egress (issue 9): each check runs its traffic from the client pod through one
 * `kubectl exec` (or, for NodePort, from this process on the node), reads the answers with the
 * pure readers of probes.ts, and on failure names the blocker it can see from the cluster's side:
 * the pods, the EndpointSlice, CoreDNS, the node's Service proxy.
 */
import { createServer, get, type IncomingMessage } from "node:http";
import { readFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { randomBytes } from "node:crypto";
import type { CommandResult } from "../common/exec.js";
import { DEFAULT_NETWORK } from "../plan/cluster-config.js";
import {
  dataPathBlocker,
  describeCommand,
  formatPods,
  kubectl,
  kubectlSeconds,
  podBlocker,
  proxyRemedy,
  sleep,
  succeeded,
  summarisePods,
  timed,
  webPods,
  type CheckResult,
  type ClusterTarget,
  type Outcome,
  type PodSummary,
  type ServiceProxyHint,
} from "./cluster.js";
import {
  defaultRouteInterface,
  dnsScript,
  formatTally,
  parseConnectingTo,
  parseEndpointSlices,
  parseLoopOutput,
  parseNslookup,
  parseResolvConf,
  parseSections,
  parseService,
  pickEgressAddress,
  readyEndpointPods,
  requestLoopScript,
  sectionExit,
  shellQuote,
  tally,
  waitForFileScript,
  type DnsQuery,
  type Endpoint,
  type InterfaceAddress,
  type LookupAnswer,
  type ResolvConf,
} from "./probes.js";
import {
  CLIENT_POD,
  CLIENT_SCRATCH,
  DNS_PROBE,
  DNS_PROBE_ADDRESS,
  DNS_PROBE_NAME,
  DNS_PROBE_PORT,
  HOSTNAME_PATH,
  NODEPORT_SERVICE,
  SERVICE_PORT,
  WEB_DEPLOYMENT,
  WEB_SERVICE,
} from "./workload.js";

export const DEFAULT_REQUESTS = 30;
/** Each request's bound; a request through a working Service takes milliseconds. */
export const PER_REQUEST_SECONDS = 5;
const LOOKUP_SECONDS = 15;

// ---------------------------------------------------------------------------------------------
// Shared steps

function clientExec(
  target: ClusterTarget,
  script: string,
  timeoutMs: number,
): Promise<CommandResult> {
  return kubectl(target, ["exec", `pod/${CLIENT_POD}`, "--", "sh", "-c", script], { timeoutMs });
}

/** undefined when the client pod is Ready, else the failure to report. */
async function clientNotReady(target: ClusterTarget): Promise<Outcome | undefined> {
  const wait = await kubectl(
    target,
    [
      "wait",
      "--for=condition=Ready",
      `pod/${CLIENT_POD}`,
      `--timeout=${kubectlSeconds(target.timeoutMs)}`,
    ],
    { timeoutMs: target.timeoutMs + 15_000 },
  );
  if (succeeded(wait)) return undefined;
  const pods = await kubectl(target, ["get", "pods", "--selector", "app=client", "-o", "json"]);
  const summary = succeeded(pods) ? summarisePods(pods.stdout) : [];
  return {
    ok: false,
    detail: `client pod not Ready: ${describeCommand(wait)}; ${formatPods(summary)}`,
    ...podBlocker(summary, target.namespace),
  };
}

/** The web pods, or the failure when fewer than `replicas` are Ready. */
async function readyReplicas(
  target: ClusterTarget,
  replicas: number,
): Promise<PodSummary[] | Outcome> {
  const pods = await webPods(target);
  if (typeof pods === "string") return { ok: false, detail: pods };
  const ready = pods.filter((p) => p.ready);
  if (ready.length >= replicas) return ready;
  return {
    ok: false,
    detail: `${String(ready.length)} of ${String(replicas)} web pods Ready: ${formatPods(pods)}`,
    ...podBlocker(pods, target.namespace),
  };
}

async function serviceInfo(
  target: ClusterTarget,
  name: string,
  namespace = target.namespace,
): Promise<ReturnType<typeof parseService> | string> {
  const got = await kubectl(target, ["get", "service", name, "-o", "json"], { namespace });
  if (!succeeded(got)) return describeCommand(got);
  return parseService(got.stdout);
}

async function endpointsOf(target: ClusterTarget, service: string): Promise<Endpoint[] | string> {
  const got = await kubectl(target, [
    "get",
    "endpointslices",
    "--selector",
    `kubernetes.io/service-name=${service}`,
    "-o",
    "json",
  ]);
  return succeeded(got) ? parseEndpointSlices(got.stdout) : describeCommand(got);
}

/** Polls the Service's EndpointSlices until `done` holds, at most timeoutMs. */
async function waitForEndpoints(
  target: ClusterTarget,
  service: string,
  done: (endpoints: Endpoint[]) => boolean,
  timeoutMs: number,
): Promise<{ ok: boolean; endpoints: Endpoint[] | string; waitedMs: number }> {
  const t0 = Date.now();
  for (;;) {
    const endpoints = await endpointsOf(target, service);
    if (typeof endpoints !== "string" && done(endpoints)) {
      return { ok: true, endpoints, waitedMs: Date.now() - t0 };
    }
    if (Date.now() - t0 >= timeoutMs) return { ok: false, endpoints, waitedMs: Date.now() - t0 };
    await sleep(200);
  }
}

function describeEndpoints(endpoints: Endpoint[] | string): string {
  if (typeof endpoints === "string") return endpoints;
  if (endpoints.length === 0) return "no endpoints";
  return endpoints
    .map(
      (e) =>
        `${e.pod ?? "?"} ${e.addresses.join(",")}${e.ready ? " ready" : " not ready"}${e.terminating ? " terminating" : ""}`,
    )
    .join("; ");
}

/** The ready endpoints must be the Ready web pods: else the EndpointSlice controller lags. */
async function endpointsForPods(
  target: ClusterTarget,
  pods: readonly PodSummary[],
): Promise<Outcome | undefined> {
  const names = pods.map((p) => p.name);
  const waited = await waitForEndpoints(
    target,
    WEB_SERVICE,
    (eps) => names.every((n) => readyEndpointPods(eps).includes(n)),
    target.timeoutMs,
  );
  if (waited.ok) return undefined;
  return {
    ok: false,
    detail: `Service ${WEB_SERVICE}'s EndpointSlices: ${describeEndpoints(waited.endpoints)}; Ready web pods: ${names.join(", ")}`,
    blocker: `the EndpointSlice of Service ${WEB_SERVICE} does not list its ${String(names.length)} Ready pods as ready endpoints`,
    remedy: "`sandkube logs kube-controller-manager` (the EndpointSlice controller)",
  };
}

function webUrl(namespace: string): string {
  return `http://${WEB_SERVICE}.${namespace}.svc.${DEFAULT_NETWORK.clusterDomain}:${String(SERVICE_PORT)}${HOSTNAME_PATH}`;
}

/** Why requests through the Service failed, as far as their messages tell. */
export function requestBlocker(
  failures: readonly (readonly [string, number])[],
  host: string,
  proxy: ServiceProxyHint | undefined,
): { blocker: string; remedy: string } {
  if (failures.some(([m]) => m.includes("bad address"))) {
    return {
      blocker: `cluster DNS does not resolve ${host} (see the dns check)`,
      remedy:
        "`sandkube kubectl -n kube-system get pods -l k8s-app=kube-dns` and `sandkube kubectl -n kube-system logs deploy/coredns`",
    };
  }
  return { blocker: dataPathBlocker(proxy), remedy: proxyRemedy(proxy) };
}

// ---------------------------------------------------------------------------------------------
// service

export interface ServiceCheckOptions {
  readonly replicas: number;
  readonly requests: number;
}

/** `requests` requests to the ClusterIP Service by its DNS name; every replica must answer. */
export function service(target: ClusterTarget, options: ServiceCheckOptions): Promise<CheckResult> {
  return timed("service", async () => {
    const client = await clientNotReady(target);
    if (client !== undefined) return client;
    const pods = await readyReplicas(target, options.replicas);
    if (!Array.isArray(pods)) return pods;
    const lagging = await endpointsForPods(target, pods);
    if (lagging !== undefined) return lagging;
    const url = webUrl(target.namespace);
    const giveUpAfter = 10;
    const result = await clientExec(
      target,
      requestLoopScript({
        url,
        count: options.requests,
        perRequestSeconds: PER_REQUEST_SECONDS,
        giveUpAfter,
      }),
      target.timeoutMs + options.requests * 500,
    );
    const loop = parseLoopOutput(result.stdout);
    if (loop.requests.length === 0) {
      return {
        ok: false,
        detail: `no request ran: ${describeCommand(result)}`,
        blocker: "kubectl exec into the client pod failed (see the exec check)",
        remedy: "`sandkube logs kubelet`",
      };
    }
    const t = tally(
      loop.requests,
      pods.map((p) => p.name),
      PER_REQUEST_SECONDS,
    );
    const stopped = loop.gaveUp
      ? `; gave up after ${String(giveUpAfter)} failures in a row (${String(options.requests)} planned)`
      : loop.ended
        ? ""
        : `; the loop did not finish: ${describeCommand(result)}`;
    const detail = `${formatTally(t)} from ${CLIENT_POD} to ${url}${stopped}`;
    if (t.answered === options.requests && t.strangers.length === 0) {
      const silent = t.perReplica.filter(([, n]) => n === 0).map(([name]) => name);
      if (silent.length === 0) return { ok: true, detail };
      return {
        ok: false,
        detail,
        blocker: `the Service proxy does not spread connections over the ready endpoints: ${silent.join(", ")} never answered`,
        remedy: proxyRemedy(target.serviceProxy),
      };
    }
    if (t.strangers.length > 0 && t.failed === 0) {
      return {
        ok: false,
        detail,
        blocker: "answers came from something that is not a Ready web pod",
        remedy: proxyRemedy(target.serviceProxy),
      };
    }
    return {
      ok: false,
      detail,
      ...requestBlocker(t.failures, new URL(url).hostname, target.serviceProxy),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// endpointChange

const AFTER_FILE = `${CLIENT_SCRATCH}/sk-after`;
const STOP_FILE = `${CLIENT_SCRATCH}/sk-stop`;
const RUNNING_FILE = `${CLIENT_SCRATCH}/sk-running`;

/**
 * A loop of requests to the Service; one web pod is deleted while it runs; once the EndpointSlice
 * no longer lists that pod as ready, the loop is told (a file in the client's scratch dir) and
 * every request it starts from then on must succeed. Failures before the update are reported
 * but do not fail the check.
 */
export function endpointChange(
  target: ClusterTarget,
  options: ServiceCheckOptions,
): Promise<CheckResult> {
  return timed("endpointChange", async () => {
    const client = await clientNotReady(target);
    if (client !== undefined) return client;
    const pods = await readyReplicas(target, Math.max(2, options.replicas));
    if (!Array.isArray(pods)) return pods;
    const lagging = await endpointsForPods(target, pods);
    if (lagging !== undefined) return lagging;
    const url = webUrl(target.namespace);
    const giveUpAfter = 50;
    const loopTimeoutMs = 2 * target.timeoutMs + options.requests * 500;
    const loopDone = clientExec(
      target,
      requestLoopScript({
        url,
        count: 1_000_000,
        perRequestSeconds: PER_REQUEST_SECONDS,
        giveUpAfter,
        phases: {
          afterFile: AFTER_FILE,
          stopFile: STOP_FILE,
          runningFile: RUNNING_FILE,
          runningAfter: 5,
          afterCount: options.requests,
        },
      }),
      loopTimeoutMs,
    );
    const loopEnded = loopDone.then((r) => ({ kind: "ended" as const, result: r }));
    const first = await Promise.race([
      clientExec(
        target,
        waitForFileScript(RUNNING_FILE, target.timeoutMs / 1000),
        target.timeoutMs + 15_000,
      ).then((r) => ({ kind: "running" as const, result: r })),
      loopEnded,
    ]);
    if (first.kind === "ended" || !succeeded(first.result)) {
      const stop = await clientExec(target, `: > ${STOP_FILE}`, 30_000);
      const loop = await loopDone;
      return {
        ok: false,
        detail: `the request loop never got under way: ${describeCommand(loop)}; ${formatTally(
          tally(
            parseLoopOutput(loop.stdout).requests,
            pods.map((p) => p.name),
            PER_REQUEST_SECONDS,
          ),
        )}${succeeded(stop) ? "" : `; ${describeCommand(stop)}`}`,
        blocker: "requests to the Service fail before any endpoint changes (see the service check)",
        remedy: proxyRemedy(target.serviceProxy),
      };
    }
    const victim = (pods[0] as PodSummary).name;
    const del = await kubectl(target, ["delete", "pod", victim, "--wait=false"]);
    const dropped = succeeded(del)
      ? await waitForEndpoints(
          target,
          WEB_SERVICE,
          (eps) => !readyEndpointPods(eps).includes(victim),
          target.timeoutMs,
        )
      : undefined;
    const marker = await clientExec(
      target,
      `: > ${dropped?.ok === true ? AFTER_FILE : STOP_FILE}`,
      30_000,
    );
    if (!succeeded(marker)) await clientExec(target, `: > ${STOP_FILE}`, 30_000);
    const result = await loopDone;
    const loop = parseLoopOutput(result.stdout);
    const after = await webPods(target);
    const names = [
      ...new Set([
        ...pods.map((p) => p.name),
        ...(typeof after === "string" ? [] : after.map((p) => p.name)),
      ]),
    ];
    const before = tally(
      loop.requests.filter((r) => r.phase === "before"),
      names,
      PER_REQUEST_SECONDS,
    );
    const afterTally = tally(
      loop.requests.filter((r) => r.phase === "after"),
      names.filter((n) => n !== victim),
      PER_REQUEST_SECONDS,
    );
    if (dropped === undefined) {
      return {
        ok: false,
        detail: `could not delete ${victim}: ${describeCommand(del)}`,
        blocker: `kubectl delete pod ${victim} failed`,
        remedy: "`sandkube logs kube-apiserver`",
      };
    }
    if (!dropped.ok) {
      return {
        ok: false,
        detail: `${victim} deleted, but after ${String(Math.round(dropped.waitedMs / 1000))} s the EndpointSlice still lists it as ready: ${describeEndpoints(dropped.endpoints)}`,
        blocker: `the EndpointSlice of Service ${WEB_SERVICE} does not follow the deletion of ${victim}`,
        remedy: "`sandkube logs kube-controller-manager` (the EndpointSlice controller)",
      };
    }
    const story = `${victim} deleted; the EndpointSlice dropped it after ${String(dropped.waitedMs)} ms; before the update: ${formatTally(before)}; after it: ${formatTally(afterTally)}`;
    const incomplete =
      afterTally.total < options.requests
        ? `; only ${String(afterTally.total)} of ${String(options.requests)} requests after the update ran (${
            loop.gaveUp
              ? `gave up after ${String(giveUpAfter)} failures in a row`
              : describeCommand(result)
          })`
        : "";
    if (afterTally.failed === 0 && incomplete === "") return { ok: true, detail: story };
    return {
      ok: false,
      detail: `${story}${incomplete}${succeeded(marker) ? "" : `; telling the loop failed: ${describeCommand(marker)}`}`,
      blocker:
        afterTally.failed > 0
          ? `${String(afterTally.failed)} requests failed after the EndpointSlice update: the Service proxy does not follow endpoint changes within the ${WEB_DEPLOYMENT} pods' 2 s grace period`
          : "the request loop did not finish",
      remedy: proxyRemedy(target.serviceProxy),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// dns

export interface LookupVerdict {
  readonly name: string;
  readonly via: DnsQuery["via"];
  /** What the name must resolve to; undefined: any address (an outside name). */
  readonly expected: string | undefined;
  readonly answer: LookupAnswer;
  readonly ok: boolean;
}

export function judgeLookup(
  query: DnsQuery,
  expected: string | undefined,
  output: string,
): LookupVerdict {
  let answer: LookupAnswer =
    query.via === "nslookup"
      ? parseNslookup(output)
      : (() => {
          const ip = parseConnectingTo(output);
          const errors = output
            .split("\n")
            .map((l) => l.trim())
            .filter((l) => l.startsWith("wget:"));
          return { addresses: ip === undefined ? [] : [ip], errors };
        })();
  if (sectionExit(output) === 143 && answer.addresses.length === 0) {
    answer = {
      addresses: [],
      errors: [
        ...answer.errors,
        `connection timed out: no answer within ${String(LOOKUP_SECONDS)} s`,
      ],
    };
  }
  const ok =
    expected === undefined ? answer.addresses.length > 0 : answer.addresses.includes(expected);
  return { name: query.name, via: query.via, expected, answer, ok };
}

export function formatLookup(v: LookupVerdict): string {
  const got =
    v.answer.addresses.length > 0
      ? v.answer.addresses.join(",")
      : (v.answer.errors[0] ?? "no answer");
  return `${v.name} (${v.via}) -> ${got}${v.ok ? "" : v.expected === undefined ? " [no address]" : ` [want ${v.expected}]`}`;
}

export interface DnsDiagnosis {
  readonly namespace: string;
  readonly lookups: readonly LookupVerdict[];
  /** The lookups of cluster names, outside ones left out. */
  readonly clusterLookups: readonly LookupVerdict[];
  readonly resolv: ResolvConf;
  /** kube-dns's ClusterIP, when the Service exists. */
  readonly dnsServiceIP: string | undefined;
  /** kube-system's CoreDNS pods (k8s-app=kube-dns), or why they could not be listed. */
  readonly coredns: readonly PodSummary[] | string;
  readonly proxy: ServiceProxyHint | undefined;
}

const COREDNS_LOGS = "`sandkube kubectl -n kube-system logs deploy/coredns`";

/** The one thing most likely behind failed lookups, and what to run. Pure. */
export function dnsBlocker(d: DnsDiagnosis): { blocker: string; remedy: string } {
  const searchDomain = `${d.namespace}.svc.${DEFAULT_NETWORK.clusterDomain}`;
  if (d.dnsServiceIP === undefined) {
    return {
      blocker: "there is no kube-dns Service in kube-system",
      remedy:
        "`sandkube kubectl -n kube-system get services,deployments` (sandkube up deploys CoreDNS)",
    };
  }
  if (!d.resolv.nameservers.includes(d.dnsServiceIP) || !d.resolv.search.includes(searchDomain)) {
    return {
      blocker: `pods do not get cluster DNS: the client's resolv.conf has nameserver ${d.resolv.nameservers.join(",") || "none"} and search ${d.resolv.search.join(" ") || "none"}, not ${d.dnsServiceIP} and ${searchDomain} (kubelet's clusterDNS)`,
      remedy: "`sandkube logs kubelet` and kubelet's clusterDNS in its configuration",
    };
  }
  const failed = d.clusterLookups.filter((l) => !l.ok);
  const unreachable = (l: LookupVerdict): boolean =>
    l.answer.addresses.length === 0 &&
    l.answer.errors.some((e) =>
      /timed out|no servers could be reached|refused|unreachable/i.test(e),
    );
  if (failed.length > 0 && failed.every(unreachable)) {
    if (typeof d.coredns === "string" || d.coredns.length === 0) {
      return {
        blocker: `nothing answers at ${d.dnsServiceIP}: there is no CoreDNS pod in kube-system${typeof d.coredns === "string" ? ` (${d.coredns})` : ""}`,
        remedy: "`sandkube kubectl -n kube-system get deployments,pods`",
      };
    }
    const notReady = d.coredns.find((p) => !p.ready);
    if (notReady !== undefined) {
      return {
        blocker: `CoreDNS not Ready: ${notReady.name} ${notReady.phase}${notReady.problems.length > 0 ? ` (${notReady.problems.join("; ")})` : ""}`,
        remedy: COREDNS_LOGS,
      };
    }
    return {
      blocker: `CoreDNS is Ready but its Service ${d.dnsServiceIP} does not answer over UDP: ${dataPathBlocker(d.proxy)}`,
      remedy: proxyRemedy(d.proxy),
    };
  }
  const first = failed[0];
  if (first !== undefined) {
    return {
      blocker:
        first.answer.addresses.length > 0
          ? `${first.name} resolves to ${first.answer.addresses.join(",")}, not ${first.expected ?? "?"}`
          : `CoreDNS answers but does not resolve ${first.name}: ${first.answer.errors[0] ?? "no address"}`,
      remedy: `${COREDNS_LOGS} (its kubernetes plugin watches Services through the API server)`,
    };
  }
  return {
    blocker:
      "CoreDNS resolves cluster names but not outside ones: it does not reach the sandbox's resolver",
    remedy: `${COREDNS_LOGS}, and /etc/resolv.conf on the node (CoreDNS forwards there)`,
  };
}

export interface DnsCheckOptions {
  /** An outside name pods must resolve; that lookup is skipped without it. */
  readonly outsideName?: string;
}

/**
 * From the client pod: `web` (the search path), web's full name and an outside name with busybox
 * nslookup over UDP, and `kubernetes.default` with the libc resolver, because busybox nslookup
 * applies no search list to a name with a dot (probes.ts).
 */
export function dns(target: ClusterTarget, options: DnsCheckOptions = {}): Promise<CheckResult> {
  return timed("dns", async () => {
    const client = await clientNotReady(target);
    if (client !== undefined) return client;
    const web = await serviceInfo(target, WEB_SERVICE);
    const kubernetes = await serviceInfo(target, "kubernetes", "default");
    if (typeof web === "string" || web.clusterIP === undefined) {
      return { ok: false, detail: `no ClusterIP for Service ${WEB_SERVICE}: ${String(web)}` };
    }
    if (typeof kubernetes === "string" || kubernetes.clusterIP === undefined) {
      return {
        ok: false,
        detail: `no ClusterIP for Service default/kubernetes: ${String(kubernetes)}`,
      };
    }
    const fqdn = `${WEB_SERVICE}.${target.namespace}.svc.${DEFAULT_NETWORK.clusterDomain}`;
    const planned: { query: DnsQuery; expected: string | undefined }[] = [
      { query: { name: WEB_SERVICE, via: "nslookup" }, expected: web.clusterIP },
      { query: { name: fqdn, via: "nslookup" }, expected: web.clusterIP },
      {
        query: { name: "kubernetes.default", via: "libc", port: kubernetes.ports[0]?.port ?? 443 },
        expected: kubernetes.clusterIP,
      },
      ...(options.outsideName === undefined
        ? []
        : [
            { query: { name: options.outsideName, via: "nslookup" as const }, expected: undefined },
          ]),
    ];
    const result = await clientExec(
      target,
      dnsScript(
        planned.map((p) => p.query),
        LOOKUP_SECONDS,
      ),
      target.timeoutMs + planned.length * LOOKUP_SECONDS * 1000,
    );
    const sections = parseSections(result.stdout);
    if (sections.size === 0) {
      return {
        ok: false,
        detail: `no lookup ran: ${describeCommand(result)}`,
        blocker: "kubectl exec into the client pod failed (see the exec check)",
        remedy: "`sandkube logs kubelet`",
      };
    }
    const lookups = planned.map((p, i) =>
      judgeLookup(p.query, p.expected, sections.get(String(i)) ?? ""),
    );
    const resolv = parseResolvConf(sections.get("resolv") ?? "");
    const outsideText =
      options.outsideName === undefined
        ? "outside name skipped: no --outside-name given"
        : undefined;
    const detail = [
      ...lookups.map(formatLookup),
      ...(outsideText === undefined ? [] : [outsideText]),
    ].join("; ");
    if (lookups.every((l) => l.ok)) return { ok: true, detail };
    const dnsService = await serviceInfo(target, "kube-dns", "kube-system");
    const corednsPods = await kubectl(
      target,
      ["get", "pods", "--selector", "k8s-app=kube-dns", "-o", "json"],
      { namespace: "kube-system" },
    );
    const coredns = succeeded(corednsPods)
      ? summarisePods(corednsPods.stdout)
      : describeCommand(corednsPods);
    return {
      ok: false,
      detail: `${detail}\n  resolv.conf: nameserver ${resolv.nameservers.join(",")}, search ${resolv.search.join(" ")}\n  CoreDNS: ${typeof coredns === "string" ? coredns : formatPods(coredns)}`,
      ...dnsBlocker({
        namespace: target.namespace,
        lookups,
        clusterLookups: lookups.filter((l) => l.expected !== undefined),
        resolv,
        dnsServiceIP: typeof dnsService === "string" ? undefined : dnsService.clusterIP,
        coredns,
        proxy: target.serviceProxy,
      }),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// udpService

/** `nslookup probe.verify. <ClusterIP>` answered by the probe CoreDNS behind a UDP Service. */
export function udpService(target: ClusterTarget): Promise<CheckResult> {
  return timed("udpService", async () => {
    const client = await clientNotReady(target);
    if (client !== undefined) return client;
    const rollout = await kubectl(
      target,
      [
        "rollout",
        "status",
        `deployment/${DNS_PROBE}`,
        `--timeout=${kubectlSeconds(target.timeoutMs)}`,
      ],
      { timeoutMs: target.timeoutMs + 15_000 },
    );
    const listed = await kubectl(target, [
      "get",
      "pods",
      "--selector",
      `app=${DNS_PROBE}`,
      "-o",
      "json",
    ]);
    const pods = succeeded(listed) ? summarisePods(listed.stdout) : [];
    const pod = pods.find((p) => p.ready && p.ip !== undefined);
    if (!succeeded(rollout) || pod?.ip === undefined) {
      const blocked = podBlocker(pods, target.namespace);
      return {
        ok: false,
        detail: `the CoreDNS probe is not Ready: ${describeCommand(rollout)}; ${formatPods(pods)}`,
        ...blocked,
        ...(blocked.remedy?.includes("sandkube images") === true
          ? { remedy: `${blocked.remedy} (the CoreDNS image; --dns-image names another)` }
          : {}),
      };
    }
    const svc = await serviceInfo(target, DNS_PROBE);
    if (typeof svc === "string" || svc.clusterIP === undefined) {
      return { ok: false, detail: `no ClusterIP for Service ${DNS_PROBE}: ${String(svc)}` };
    }
    const name = `${DNS_PROBE_NAME}.`;
    const queries: DnsQuery[] = [
      { name, via: "nslookup", server: svc.clusterIP },
      { name, via: "nslookup", server: `${pod.ip}:${String(DNS_PROBE_PORT)}` },
    ];
    const result = await clientExec(
      target,
      dnsScript(queries, LOOKUP_SECONDS),
      target.timeoutMs + 2 * LOOKUP_SECONDS * 1000,
    );
    const sections = parseSections(result.stdout);
    const [viaService, direct] = queries.map((q, i) =>
      judgeLookup(q, DNS_PROBE_ADDRESS, sections.get(String(i)) ?? ""),
    ) as [LookupVerdict, LookupVerdict];
    const detail = `${name} via UDP Service ${svc.clusterIP}:53 -> ${viaService.answer.addresses.join(",") || (viaService.answer.errors[0] ?? "no answer")}; from the pod ${pod.ip}:${String(DNS_PROBE_PORT)} directly -> ${direct.answer.addresses.join(",") || (direct.answer.errors[0] ?? "no answer")}`;
    if (viaService.ok) return { ok: true, detail };
    if (sections.size === 0) {
      return {
        ok: false,
        detail: `no lookup ran: ${describeCommand(result)}`,
        blocker: "kubectl exec into the client pod failed (see the exec check)",
        remedy: "`sandkube logs kubelet`",
      };
    }
    if (!direct.ok) {
      return {
        ok: false,
        detail,
        blocker: `the CoreDNS probe pod does not answer ${name} itself at ${pod.ip}:${String(DNS_PROBE_PORT)}`,
        remedy: `\`sandkube kubectl -n ${target.namespace} logs deploy/${DNS_PROBE}\``,
      };
    }
    return {
      ok: false,
      detail,
      blocker: `${dataPathBlocker(target.serviceProxy)} for UDP (the pod answers directly)`,
      remedy: proxyRemedy(target.serviceProxy),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// nodePort

/** One GET with node:http, never throwing: the status and body, or what went wrong. */
export function httpGet(
  url: string,
  timeoutMs: number,
): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const request = get(url, { timeout: timeoutMs }, (response: IncomingMessage) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      response.on("error", (e: Error) => resolve({ error: e.message }));
    });
    request.on("timeout", () =>
      request.destroy(new Error(`no answer within ${String(timeoutMs)} ms`)),
    );
    request.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
  });
}

/** GET http://127.0.0.1:NODEPORT/ from this process, on the node: a web pod must answer. */
export function nodePort(target: ClusterTarget): Promise<CheckResult> {
  return timed("nodePort", async () => {
    const svc = await serviceInfo(target, NODEPORT_SERVICE);
    if (typeof svc === "string")
      return { ok: false, detail: `no Service ${NODEPORT_SERVICE}: ${svc}` };
    const port = svc.ports[0]?.nodePort;
    if (port === undefined) {
      return {
        ok: false,
        detail: `Service ${NODEPORT_SERVICE} got no nodePort: ${JSON.stringify(svc)}`,
      };
    }
    const pods = await webPods(target);
    const names = typeof pods === "string" ? [] : pods.filter((p) => p.ready).map((p) => p.name);
    if (names.length === 0) {
      return {
        ok: false,
        detail: `no Ready web pod: ${typeof pods === "string" ? pods : formatPods(pods)}`,
        ...(typeof pods === "string" ? {} : podBlocker(pods, target.namespace)),
      };
    }
    const url = `http://127.0.0.1:${String(port)}${HOSTNAME_PATH}`;
    // A Service proxy programs a NodePort a moment after the Service exists: retry for a while.
    const deadline = Date.now() + Math.min(target.timeoutMs, 20_000);
    let last = "";
    for (;;) {
      const got = await httpGet(url, 5000);
      if ("error" in got) last = got.error;
      else if (got.status === 200 && names.includes(got.body.trim())) {
        return { ok: true, detail: `${url} answered by ${got.body.trim()}` };
      } else
        last = `HTTP ${String(got.status)} ${JSON.stringify(got.body.slice(0, 100))}, not a web pod's hostname`;
      if (Date.now() >= deadline) break;
      await sleep(500);
    }
    return {
      ok: false,
      detail: `${url}: ${last} (Ready web pods: ${names.join(", ")})`,
      blocker: `${dataPathBlocker(target.serviceProxy)} for NodePort ${String(port)} on 127.0.0.1`,
      remedy: proxyRemedy(target.serviceProxy),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// egress

export interface EgressCheckOptions {
  readonly url?: string;
  /** Text the body fetched from url must contain. */
  readonly expect?: string;
  readonly clusterRanges?: readonly string[];
}

/** This machine's addresses (os.networkInterfaces) with the default route's interface. */
async function hostAddresses(): Promise<{
  addresses: InterfaceAddress[];
  defaultIf: string | undefined;
}> {
  const addresses: InterfaceAddress[] = [];
  for (const [name, list] of Object.entries(networkInterfaces())) {
    for (const a of list ?? []) {
      addresses.push({
        interface: name,
        address: a.address,
        family: a.family === "IPv4" ? "IPv4" : "IPv6",
        internal: a.internal,
      });
    }
  }
  const routes = await readFile("/proc/net/route", "utf8").catch(() => "");
  return { addresses, defaultIf: defaultRouteInterface(routes) };
}

async function fetchFromClient(
  target: ClusterTarget,
  url: string,
): Promise<{ exitCode: number; body: string; result: CommandResult }> {
  const seconds = 15;
  const result = await clientExec(
    target,
    `out=$(timeout ${String(seconds)} wget -q -O - ${shellQuote(url)} 2>&1); echo "sk-rc $?"; echo "$out"`,
    target.timeoutMs + seconds * 1000,
  );
  const [first, ...rest] = result.stdout.split("\n");
  const m = /^sk-rc (\d+)$/.exec(first ?? "");
  const body = rest.join("\n").replace(/\n$/, "");
  return { exitCode: m === null ? -1 : Number(m[1]), body, result };
}

function egressFailure(
  url: string,
  fetched: { exitCode: number; body: string; result: CommandResult },
): string {
  if (fetched.exitCode === -1) return describeCommand(fetched.result);
  if (fetched.exitCode === 143) return "no answer within 15 s";
  return (
    fetched.body.trim().replace(/^wget:\s*/, "") ||
    `wget exit status ${String(fetched.exitCode)} for ${url}`
  );
}

const EGRESS_REMEDY =
  "`sandkube doctor` (egress), /proc/sys/net/ipv4/ip_forward on the node, and the node's filter and NAT rules (`iptables-legacy -S`, `iptables-legacy -t nat -S`)";

/**
 * A pod fetches a URL outside the cluster's ranges: --egress-url, or a server this process starts
 * on the node's own outside address (the default route's). Without either, skipped, and says so.
 */
export function egress(
  target: ClusterTarget,
  options: EgressCheckOptions = {},
): Promise<CheckResult> {
  return timed("egress", async () => {
    const client = await clientNotReady(target);
    if (client !== undefined) return client;
    if (options.url !== undefined) {
      const url = options.url;
      const fetched = await fetchFromClient(target, url);
      const detail = `${CLIENT_POD} fetched ${url}: ${fetched.exitCode === 0 ? `${String(fetched.body.length)} bytes, ${JSON.stringify(fetched.body.slice(0, 80))}` : egressFailure(url, fetched)}`;
      if (
        fetched.exitCode === 0 &&
        (options.expect === undefined || fetched.body.includes(options.expect))
      ) {
        return { ok: true, detail };
      }
      return {
        ok: false,
        detail,
        blocker:
          fetched.exitCode === 0
            ? `the body from ${url} lacks ${JSON.stringify(options.expect)}`
            : `pods do not reach ${new URL(url).host}: ${egressFailure(url, fetched)}`,
        remedy: EGRESS_REMEDY,
      };
    }
    const ranges = options.clusterRanges ?? [
      DEFAULT_NETWORK.clusterCIDR,
      DEFAULT_NETWORK.serviceCIDR,
    ];
    const { addresses, defaultIf } = await hostAddresses();
    const picked = pickEgressAddress(addresses, defaultIf, ranges);
    if (picked === undefined) {
      return {
        ok: false,
        skipped: true,
        detail: `this sandbox has no address outside the cluster's ranges (${ranges.join(", ")}); pass --egress-url`,
      };
    }
    const token = `sandkube-verify-${randomBytes(8).toString("hex")}`;
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(`${req.socket.remoteAddress ?? "?"} ${req.method ?? "?"} ${req.url ?? "?"}`);
      res.end(req.url === `/${token}` ? token : "not the verify token\n");
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, picked.address, () => resolve());
    });
    try {
      const address = server.address();
      const port = address !== null && typeof address === "object" ? address.port : 0;
      const url = `http://${picked.address}:${String(port)}/${token}`;
      const fetched = await fetchFromClient(target, url);
      const where = `the node's ${picked.interface} address ${picked.address}`;
      if (fetched.exitCode === 0 && fetched.body === token && seen.length > 0) {
        return {
          ok: true,
          detail: `${CLIENT_POD} fetched ${url} from a server verify started on ${where}; it saw the request from ${seen[0] ?? "?"}`,
        };
      }
      return {
        ok: false,
        detail: `${CLIENT_POD} fetching ${url} (${where}): ${fetched.exitCode === 0 ? `body ${JSON.stringify(fetched.body.slice(0, 80))}` : egressFailure(url, fetched)}; the server saw ${seen.length === 0 ? "no request" : seen.join(", ")}`,
        blocker: `pods do not reach ${picked.address}, outside the cluster's ranges`,
        remedy: EGRESS_REMEDY,
      };
    } finally {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
  });
}
