import { stringify } from "smol-toml";
import type { RegistryConfig, RegistryOptions } from "./options.js";

/** What containerd reads of one [host."URL"] table or of the file's top level (config/hosts.go). */
type HostTable = {
  capabilities?: string[];
  ca?: string;
  skip_verify?: boolean;
};

type HostsToml = HostTable & {
  server: string;
  host?: Record<string, HostTable>;
};

/**
 * docker.io's API lives at registry-1.docker.io; containerd's own default for a docker.io that has
 * no hosts.toml says the same (core/remotes/docker/config/hosts.go).
 */
export function serverUrl(host: string): string {
  return host === "docker.io" ? "https://registry-1.docker.io" : `https://${host}`;
}

function trust(registry: RegistryConfig): HostTable {
  return {
    ...(registry.ca === undefined ? {} : { ca: registry.ca }),
    ...(registry.insecureSkipVerify ? { skip_verify: true } : {}),
  };
}

/**
 * Pure: containerd 2.x's hosts.toml for one registry. Mirrors come first as [host."URL"] tables,
 * tried in the order given, and only pull and resolve: a mirror never takes a push. The registry
 * itself is `server`, tried last. The CA and skip-verify apply to every entry: containerd adds a
 * `ca` file to the system roots rather than replacing them (updateTLSConfigFromHost), so a mirror
 * with a public certificate still verifies. `server` is always written, which also turns off
 * containerd's loopback default of skipping verification for an unconfigured 127.0.0.1:PORT.
 */
export function renderHostsToml(registry: RegistryConfig): string {
  const toml: HostsToml = { server: serverUrl(registry.host), ...trust(registry) };
  if (registry.mirrors.length > 0) {
    toml.host = Object.fromEntries(
      registry.mirrors.map((mirror) => [
        mirror,
        { capabilities: ["pull", "resolve"], ...trust(registry) },
      ]),
    );
  }
  return stringify(toml);
}

/**
 * Pure: every file of the node's certs.d folder, by path relative to it. containerd looks for
 * `host:port` as a folder name after `host_port_` (hostPaths in config_unix.go), so the reference's
 * own spelling works.
 */
export function renderHostsFiles(options: RegistryOptions): Record<string, string> {
  return Object.fromEntries(
    options.registries.map((registry) => [
      `${registry.host}/hosts.toml`,
      renderHostsToml(registry),
    ]),
  );
}
