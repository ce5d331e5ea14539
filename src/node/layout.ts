import { join } from "node:path";

/**
 * Where a node keeps everything under its data dir. Pure: the one place that names these paths, so
 * `up`, `down`, `status` and the tests agree.
 */
export interface NodeLayout {
  readonly dataDir: string;
  readonly pkiDir: string;
  readonly kubeconfigDir: string;
  readonly etcdDataDir: string;
  readonly containerdRoot: string;
  readonly containerdState: string;
  readonly containerdConfig: string;
  readonly containerdSocket: string;
  readonly kubeletRoot: string;
  readonly kubeletConfig: string;
  readonly cniConfDir: string;
  /** sandkube-cni's address allocations, one file per address. */
  readonly cniIpamDir: string;
  readonly logDir: string;
  /** The node's record: what was provisioned (so `down` can undo it) and the config in force. */
  readonly stateFile: string;
  readonly supervisorPidFile: string;
  readonly supervisorSocket: string;
  /** Images sandkube builds locally (the pause image, `images build`). */
  readonly imageDir: string;
  /** Scratch mounts made by provisioning (the /proc/sys copy). */
  readonly provisionDir: string;
}

export function nodeLayout(dataDir: string): NodeLayout {
  const run = join(dataDir, "run");
  return {
    dataDir,
    pkiDir: join(dataDir, "pki"),
    kubeconfigDir: join(dataDir, "kubeconfig"),
    etcdDataDir: join(dataDir, "etcd"),
    containerdRoot: join(dataDir, "containerd", "root"),
    containerdState: join(run, "containerd"),
    containerdConfig: join(dataDir, "containerd", "config.toml"),
    containerdSocket: join(run, "containerd", "containerd.sock"),
    kubeletRoot: join(dataDir, "kubelet"),
    kubeletConfig: join(dataDir, "kubelet-config.yaml"),
    cniConfDir: join(dataDir, "cni", "net.d"),
    cniIpamDir: join(dataDir, "cni", "ipam"),
    logDir: join(dataDir, "logs"),
    stateFile: join(dataDir, "node.json"),
    supervisorPidFile: join(run, "supervisor.pid"),
    supervisorSocket: join(run, "supervisor.sock"),
    imageDir: join(dataDir, "images"),
    provisionDir: join(run, "provision"),
  };
}

/** Logs are named after the component, so `sandkube logs NAME` and the supervisor agree. */
export function componentLogPath(layout: NodeLayout, component: string): string {
  return join(layout.logDir, `${component}.log`);
}
