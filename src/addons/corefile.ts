/**
 * CoreDNS's configuration for a sandkube node. Pure text out of plain options, so the unit tests
 * read exactly what CoreDNS will read.
 */

/** The ports CoreDNS listens on, all at the node's address (see `bind` below). */
export interface CoreDnsPorts {
  readonly dns: number;
  readonly metrics: number;
  readonly health: number;
  readonly ready: number;
}

/**
 * 53 and 9153 are kubeadm's. health and ready move off CoreDNS's defaults (8080, 8181) because
 * CoreDNS shares the sandbox's network namespace (hostNetwork), where a developer's own server is
 * likely to hold 8080 already.
 */
export const DEFAULT_COREDNS_PORTS: CoreDnsPorts = {
  dns: 53,
  metrics: 9153,
  health: 9180,
  ready: 9181,
};

export interface CorefileOptions {
  readonly clusterDomain: string;
  /** The only address CoreDNS binds: the node's. */
  readonly nodeIP: string;
  readonly ports: CoreDnsPorts;
}

/**
 * kubeadm's Corefile (cmd/kubeadm/app/phases/addons/dns/manifests.go, CoreDNSConfigMap) with every
 * listener pinned to the node's address. CoreDNS runs with hostNetwork, so an unbound `.:53` would
 * claim port 53 on every address of the sandbox, where the sandbox's own resolver may already
 * listen (systemd-resolved's 127.0.0.53:53), and that resolver is where `forward . /etc/resolv.conf`
 * sends outside names.
 */
export function renderCorefile(options: CorefileOptions): string {
  const { clusterDomain, nodeIP, ports } = options;
  return [
    `.:${ports.dns} {`,
    `    bind ${nodeIP}`,
    "    errors",
    `    health ${nodeIP}:${ports.health} {`,
    "       lameduck 5s",
    "    }",
    `    ready ${nodeIP}:${ports.ready}`,
    `    kubernetes ${clusterDomain} in-addr.arpa ip6.arpa {`,
    "       pods insecure",
    "       fallthrough in-addr.arpa ip6.arpa",
    "       ttl 30",
    "    }",
    `    prometheus ${nodeIP}:${ports.metrics}`,
    "    forward . /etc/resolv.conf {",
    "       max_concurrent 1000",
    "    }",
    "    cache 30",
    "    loop",
    "    reload",
    "    loadbalance",
    "}",
    "",
  ].join("\n");
}
