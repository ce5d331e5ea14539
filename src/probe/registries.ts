import { BlockList, isIP } from "node:net";
import type { ProbeIO } from "./io.js";

/**
 * Proxy choice for one URL, decided the way Go's `net/http` decides it
 * (golang.org/x/net/http/httpproxy, FromEnvironment and useProxy): containerd, kubelet and k3s
 * are Go programs, so this is the proxy an image pull will really use, whatever curl would pick.
 */
export type ProxyChoice =
  | {
      readonly proxy: string;
      /** The variable the proxy came from, e.g. `HTTPS_PROXY`. */
      readonly source: string;
    }
  | {
      readonly proxy: null;
      /** Why no proxy: no variable set, a loopback host, or the NO_PROXY entry that matched. */
      readonly reason: string;
    };

/** The first non-empty of `names`, as Go's getEnvAny reads them: upper case before lower case. */
function envAny(
  env: NodeJS.ProcessEnv,
  names: readonly string[],
): { name: string; value: string } | null {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value !== "") return { name, value };
  }
  return null;
}

/** A proxy value may be a bare `host:port`; Go assumes http:// then, and so must curl's argv. */
export function normaliseProxy(value: string): string {
  return /^(https?|socks5):\/\//i.test(value) ? value : `http://${value}`;
}

/** Splits `host`, `host:port`, `[v6]:port` the way net.SplitHostPort would, or null when no port. */
function splitHostPort(entry: string): { host: string; port: string } | null {
  const bracketed = /^\[([^\]]*)\]:(\d*)$/.exec(entry);
  if (bracketed) return { host: bracketed[1] ?? "", port: bracketed[2] ?? "" };
  const plain = /^([^:[\]]*):(\d*)$/.exec(entry);
  if (plain) return { host: plain[1] ?? "", port: plain[2] ?? "" };
  return null;
}

/** A NO_PROXY entry that is an IPv4 or IPv6 prefix in CIDR notation, as net.ParseCIDR accepts. */
function parseCidr(entry: string): { list: BlockList; family: 4 | 6 } | null {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(entry);
  if (!match) return null;
  const base = match[1] ?? "";
  const bits = Number(match[2]);
  const family = isIP(base);
  if (family === 0 || bits > (family === 4 ? 32 : 128)) return null;
  const list = new BlockList();
  list.addSubnet(base, bits, family === 4 ? "ipv4" : "ipv6");
  return { list, family: family === 4 ? 4 : 6 };
}

function isLoopback(ip: string): boolean {
  if (isIP(ip) === 4) return ip.startsWith("127.");
  return ip === "::1";
}

/**
 * The NO_PROXY entry that exempts `host:port` from proxying, or null if none does. Same rules as
 * Go's httpproxy: `*` matches everything, CIDRs and IPs match addresses, `foo.com` matches foo.com
 * and its subdomains, `.foo.com` and `*.foo.com` only its subdomains, and `:port` narrows any entry.
 */
export function noProxyMatch(noProxy: string, host: string, port: string): string | null {
  const target = host.toLowerCase().replace(/^\[|\]$/g, "");
  const targetIsIp = isIP(target) !== 0;
  for (const raw of noProxy.split(",")) {
    const entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return raw.trim();
    const cidr = parseCidr(entry);
    if (cidr !== null) {
      const family = isIP(target);
      if (family === cidr.family && cidr.list.check(target, family === 4 ? "ipv4" : "ipv6")) {
        return raw.trim();
      }
      continue;
    }
    const split = splitHostPort(entry);
    let entryHost = split ? split.host : entry;
    const entryPort = split ? split.port : "";
    if (entryHost === "") continue;
    entryHost = entryHost.replace(/^\[|\]$/g, "");
    const portMatches = entryPort === "" || entryPort === port;
    if (isIP(entryHost) !== 0) {
      if (targetIsIp && sameIp(entryHost, target) && portMatches) return raw.trim();
      continue;
    }
    if (entryHost.startsWith("*.")) entryHost = entryHost.slice(1);
    const matchesSelf = !entryHost.startsWith(".");
    const suffix = matchesSelf ? `.${entryHost}` : entryHost;
    if ((target.endsWith(suffix) || (matchesSelf && target === entryHost)) && portMatches) {
      return raw.trim();
    }
  }
  return null;
}

function sameIp(a: string, b: string): boolean {
  if (a === b) return true;
  const family = isIP(a);
  if (family !== isIP(b)) return false;
  const list = new BlockList();
  list.addAddress(a, family === 4 ? "ipv4" : "ipv6");
  return list.check(b, family === 4 ? "ipv4" : "ipv6");
}

/** Which proxy a Go program with environment `env` uses for `url`. */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv): ProxyChoice {
  const scheme = url.protocol.replace(/:$/, "");
  const variable =
    scheme === "https"
      ? envAny(env, ["HTTPS_PROXY", "https_proxy"])
      : scheme === "http"
        ? envAny(env, ["HTTP_PROXY", "http_proxy"])
        : null;
  if (variable === null) {
    return { proxy: null, reason: `no ${scheme.toUpperCase()}_PROXY or ${scheme}_proxy set` };
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (host === "localhost" || (isIP(host) !== 0 && isLoopback(host))) {
    return { proxy: null, reason: `${host} is loopback, which Go never proxies` };
  }
  const port = url.port !== "" ? url.port : scheme === "https" ? "443" : "80";
  const noProxy = envAny(env, ["NO_PROXY", "no_proxy"]);
  const exemptBy = noProxy === null ? null : noProxyMatch(noProxy.value, host, port);
  if (noProxy !== null && exemptBy !== null) {
    return { proxy: null, reason: `${noProxy.name} entry "${exemptBy}"` };
  }
  return { proxy: normaliseProxy(variable.value), source: variable.name };
}

/** Registries image pulls reach by default; docker.io's API answers at registry-1.docker.io. */
export const DEFAULT_REGISTRIES: readonly RegistryTarget[] = [
  { name: "registry.k8s.io", url: "https://registry.k8s.io/v2/" },
  { name: "docker.io", url: "https://registry-1.docker.io/v2/" },
  { name: "ghcr.io", url: "https://ghcr.io/v2/" },
  { name: "quay.io", url: "https://quay.io/v2/" },
];

export interface RegistryTarget {
  readonly name: string;
  readonly url: string;
}

/** Why a registry did not answer, sorted by what a user would do about it. */
export type RegistryErrorKind =
  | "dns"
  | "proxy-dns"
  | "proxy"
  | "refused"
  /** curl 7.88 says only "Couldn't connect to server" for both refused and unreachable. */
  | "connect"
  | "timeout"
  | "tls"
  | "http-status"
  | "other";

export type Reachability =
  | { readonly reachable: true; readonly httpStatus: number }
  | {
      readonly reachable: false;
      readonly kind: RegistryErrorKind;
      readonly error: string;
      /** Set when the registry answered, but not as a registry (e.g. 403 Forbidden). */
      readonly httpStatus?: number;
    };

export interface RegistryFact {
  readonly name: string;
  readonly url: string;
  readonly mirror: boolean;
  readonly proxy: ProxyChoice;
  readonly result: Reachability;
}

export interface RegistryFacts {
  readonly registries: readonly RegistryFact[];
}

/** Each registry gets a few seconds; doctor must answer quickly on a machine with no egress. */
export const REGISTRY_TIMEOUT_SECONDS = 3;

/**
 * Mirrors named in SANDKUBE_REGISTRY_MIRRORS (comma separated URLs or host[:port] names). A
 * mirror is probed like a registry, at its /v2/ endpoint.
 */
export function configuredMirrors(env: NodeJS.ProcessEnv): RegistryTarget[] {
  const raw = env["SANDKUBE_REGISTRY_MIRRORS"] ?? "";
  return raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "")
    .map((entry) => {
      const withScheme = /^https?:\/\//i.test(entry) ? entry : `https://${entry}`;
      let url: URL;
      try {
        url = new URL(withScheme);
      } catch {
        throw new Error(
          `SANDKUBE_REGISTRY_MIRRORS: "${entry}" is not a URL or host[:port]; ` +
            `write e.g. https://mirror.example.com or mirror.example.com:5000`,
        );
      }
      const base = url.pathname.replace(/\/+$/, "");
      return { name: url.host, url: `${url.origin}${base.endsWith("/v2") ? base : `${base}/v2`}/` };
    });
}

/**
 * curl exit codes (curl's libcurl-errors, `man curl` EXIT CODES) mapped to what went wrong.
 * A 200 or 401 from /v2/ means a registry is there: 401 is the token challenge of an anonymous call.
 */
export function classifyCurl(
  exitCode: number,
  stdout: string,
  stderr: string,
  failure: string | undefined,
  viaProxy: boolean,
): Reachability {
  // curl's first line is the error; the rest is advice (e.g. the certificate help after exit 60).
  const firstLine = stderr.trim().split("\n")[0] ?? "";
  const error = firstLine.replace(/^curl: \(\d+\) /, "") || `curl exit status ${exitCode}`;
  if (failure === "TIMEOUT") return { reachable: false, kind: "timeout", error: "curl timed out" };
  if (failure !== undefined) return { reachable: false, kind: "other", error: `curl: ${failure}` };
  const status = Number(stdout.trim());
  if (exitCode === 0) {
    if (status === 200 || status === 401) return { reachable: true, httpStatus: status };
    return {
      reachable: false,
      kind: "http-status",
      error: `HTTP ${status} from /v2/`,
      httpStatus: status,
    };
  }
  const kinds: Record<number, RegistryErrorKind> = {
    5: "proxy-dns",
    6: "dns",
    28: "timeout",
    35: "tls",
    51: "tls",
    53: "tls",
    54: "tls",
    58: "tls",
    59: "tls",
    60: "tls",
    66: "tls",
    77: "tls",
    80: "tls",
    83: "tls",
    90: "tls",
    91: "tls",
    97: "proxy",
  };
  let kind: RegistryErrorKind = kinds[exitCode] ?? "other";
  // Through a proxy, curl connects only to the proxy: failing to connect is the proxy's fault.
  if (exitCode === 7) kind = viaProxy ? "proxy" : /refused/i.test(stderr) ? "refused" : "connect";
  // A CONNECT the proxy rejects ends in 56 with the proxy's status in the message.
  if (exitCode === 56 && /proxy|CONNECT/i.test(stderr)) kind = "proxy";
  return { reachable: false, kind, error };
}

/** The curl argv for one registry; the proxy goes in argv, so what was used is on record. */
export function curlArgv(url: string, proxy: ProxyChoice): string[] {
  return [
    "curl",
    "-sS",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "--connect-timeout",
    String(REGISTRY_TIMEOUT_SECONDS),
    "--max-time",
    String(REGISTRY_TIMEOUT_SECONDS),
    // An explicit choice overrides curl's own reading of the environment, which differs from Go's.
    ...(proxy.proxy === null ? ["--noproxy", "*"] : ["--proxy", proxy.proxy]),
    url,
  ];
}

/**
 * curl reads these itself, with rules that differ from Go's (lower case first, ALL_PROXY, its own
 * NO_PROXY syntax). Emptied, curl follows only the decision written into its argv.
 */
const CURL_PROXY_ENV_CLEARED: Readonly<Record<string, string>> = Object.fromEntries(
  ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    .concat(["no_proxy", "NO_PROXY"])
    .map((name) => [name, ""]),
);

/** Asks every registry's /v2/ endpoint at once, each through the proxy Go would use for it. */
export async function probeRegistries(io: ProbeIO, env: NodeJS.ProcessEnv): Promise<RegistryFacts> {
  const targets = [
    ...DEFAULT_REGISTRIES.map((target) => ({ ...target, mirror: false })),
    ...configuredMirrors(env).map((target) => ({ ...target, mirror: true })),
  ];
  const registries = await Promise.all(
    targets.map(async (target): Promise<RegistryFact> => {
      const proxy = proxyFor(new URL(target.url), env);
      const result = await io.run(curlArgv(target.url, proxy), {
        timeoutMs: (REGISTRY_TIMEOUT_SECONDS + 2) * 1000,
        env: CURL_PROXY_ENV_CLEARED,
      });
      return {
        ...target,
        proxy,
        result: classifyCurl(
          result.exitCode,
          result.stdout,
          result.stderr,
          result.failure,
          proxy.proxy !== null,
        ),
      };
    }),
  );
  return { registries };
}
