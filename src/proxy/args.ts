/** sandkube-proxy's command line. Pure: checks shape only; main.ts checks the files and link. */
import { resolve } from "node:path";
import { UsageError } from "../cli/usage-error.js";
import { parseIpv4, parseSubnet, type Ipv4Subnet } from "../cni/ipv4.js";
import { DEFAULT_NETWORK } from "../plan/cluster-config.js";

export const PROXY_USAGE =
  "usage: node dist/src/proxy/main.js --kubeconfig FILE [--link sandkube0] [--service-cidr 10.96.0.0/16] [--healthz 127.0.0.1:10256]";

/** kube-proxy's own healthz port, so a readiness check written for kube-proxy fits. */
export const DEFAULT_HEALTHZ = { host: "127.0.0.1", port: 10256 } as const;
export const DEFAULT_LINK = "sandkube0";

export interface ProxyArgs {
  readonly kubeconfig: string;
  readonly link: string;
  readonly serviceCIDR: string;
  readonly serviceRange: Ipv4Subnet;
  readonly healthz: { readonly host: string; readonly port: number };
}

/** Interface names the kernel accepts: 1-15 bytes, no slash, no whitespace (IFNAMSIZ). */
const LINK_NAME = /^[^\s/:]{1,15}$/;

export function parseProxyArgs(argv: readonly string[]): ProxyArgs {
  let kubeconfig: string | undefined;
  let link: string = DEFAULT_LINK;
  let serviceCIDR: string = DEFAULT_NETWORK.serviceCIDR;
  let healthz: { host: string; port: number } = { ...DEFAULT_HEALTHZ };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const value = (): string => {
      const v = eq === -1 ? argv[++i] : arg.slice(eq + 1);
      if (v === undefined || v === "") {
        throw new UsageError(`sandkube-proxy: ${flag} needs a value. ${PROXY_USAGE}`);
      }
      return v;
    };
    if (flag === "--kubeconfig") kubeconfig = resolve(value());
    else if (flag === "--link") {
      link = value();
      if (!LINK_NAME.test(link)) {
        throw new UsageError(
          `sandkube-proxy: --link "${link}" is not a network interface name (1-15 characters, no "/", ":" or spaces).`,
        );
      }
    } else if (flag === "--service-cidr") serviceCIDR = value();
    else if (flag === "--healthz") healthz = parseHostPort(value());
    else throw new UsageError(`sandkube-proxy: unknown option "${arg}". ${PROXY_USAGE}`);
  }
  if (kubeconfig === undefined) {
    throw new UsageError(`sandkube-proxy: --kubeconfig FILE is required. ${PROXY_USAGE}`);
  }
  const serviceRange = parseSubnet(serviceCIDR);
  if (serviceRange === undefined) {
    throw new UsageError(
      `sandkube-proxy: --service-cidr "${serviceCIDR}" is not an IPv4 range like 10.96.0.0/16 (host bits zero).`,
    );
  }
  return { kubeconfig, link, serviceCIDR, serviceRange, healthz };
}

function parseHostPort(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(":");
  const host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  const port = Number(portText);
  if (
    colon === -1 ||
    parseIpv4(host) === undefined ||
    !/^\d+$/.test(portText) ||
    port < 1 ||
    port > 65535
  ) {
    throw new UsageError(
      `sandkube-proxy: --healthz "${text}" is not an IPv4 address and port like 127.0.0.1:10256.`,
    );
  }
  return { host, port };
}
