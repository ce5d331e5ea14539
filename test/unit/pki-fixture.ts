import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import {
  DEFAULT_API_SERVER_PORT,
  DEFAULT_NETWORK,
  SANDBOX_IMAGE,
  type ClusterConfig,
} from "../../src/plan/cluster-config.js";
import { runCommand } from "../../src/common/exec.js";

/** A node description for the PKI tests; binaries are never run, so their paths are placeholders. */
export function pkiTestConfig(
  dataDir: string,
  overrides: Partial<ClusterConfig> = {},
): ClusterConfig {
  return {
    dataDir,
    nodeName: "sandkube-test",
    ...DEFAULT_NETWORK,
    bindAddress: "127.0.0.1",
    apiServerBindAddress: DEFAULT_NETWORK.nodeIP,
    apiServerPort: DEFAULT_API_SERVER_PORT,
    runtime: "runc",
    serviceProxy: "kube-proxy",
    mtu: 1500,
    snapshotter: "native",
    imageUnpack: "containerd",
    nodeLink: "sandkube0",
    hostNetworkOnly: false,
    sandboxImage: SANDBOX_IMAGE,
    binaries: {
      etcd: "/nonexistent/etcd",
      kubeApiserver: "/nonexistent/kube-apiserver",
      kubeControllerManager: "/nonexistent/kube-controller-manager",
      kubeScheduler: "/nonexistent/kube-scheduler",
      kubelet: "/nonexistent/kubelet",
      kubectl: "/nonexistent/kubectl",
      containerd: "/nonexistent/containerd",
      containerdShim: "/nonexistent/containerd-shim-runc-v2",
      ctr: "/nonexistent/ctr",
      ociRuntime: "/nonexistent/runc",
      cniBinDir: "/nonexistent/cni",
      kubeProxy: null,
    },
    ...overrides,
  };
}

/** A temporary folder removed when the test ends, pass or fail. */
export async function temporaryDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `sandkube-${prefix}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** True when the real openssl CLI is here; the PKI tests check our files with it. */
export async function hasOpenssl(): Promise<boolean> {
  const result = await runCommand(["openssl", "version"]);
  return result.exitCode === 0;
}
