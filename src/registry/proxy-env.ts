import type { ClusterConfig } from "../plan/cluster-config.js";

/** The addresses a node's own traffic goes to, which must never take the proxy. */
export type ClusterRanges = Pick<
  ClusterConfig,
  "nodeIP" | "clusterCIDR" | "serviceCIDR" | "clusterDomain"
>;

const PAIRS = [
  ["HTTPS_PROXY", "https_proxy"],
  ["HTTP_PROXY", "http_proxy"],
] as const;

/** The first non-empty of the two spellings, upper case first, as Go's getEnvAny reads them. */
function either(env: NodeJS.ProcessEnv, upper: string, lower: string): string | undefined {
  for (const name of [upper, lower]) {
    const value = env[name]?.trim();
    if (value !== undefined && value !== "") return value;
  }
  return undefined;
}

/**
 * Pure: the proxy variables for containerd's environment, from the user's (either spelling). Empty
 * when no proxy is set. NO_PROXY is the user's plus the node's own destinations: loopback, the
 * node address, the pod and Service ranges and the cluster's names, since Go's net/http
 * (golang.org/x/net/http/httpproxy) otherwise sends anything not loopback through the proxy.
 * Go reads CIDR entries and `.suffix` domain entries there. Both spellings are set to the same
 * value, so neither a lower-case variable the supervisor inherits nor a tool that reads only one
 * spelling sees something else.
 */
export function containerdProxyEnv(
  userEnv: NodeJS.ProcessEnv,
  cluster: ClusterRanges,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [upper, lower] of PAIRS) {
    const value = either(userEnv, upper, lower);
    if (value !== undefined) {
      out[upper] = value;
      out[lower] = value;
    }
  }
  if (Object.keys(out).length === 0) return {};
  const entries = [
    ...(either(userEnv, "NO_PROXY", "no_proxy") ?? "").split(","),
    "localhost",
    "127.0.0.1",
    "::1",
    cluster.nodeIP,
    cluster.clusterCIDR,
    cluster.serviceCIDR,
    ".svc",
    `.${cluster.clusterDomain}`,
  ]
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  const noProxy = [...new Set(entries)].join(",");
  out["NO_PROXY"] = noProxy;
  out["no_proxy"] = noProxy;
  return out;
}
