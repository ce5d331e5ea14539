import type { BinaryFacts, BinarySearchOptions } from "./binaries.js";
import { probeBinaries } from "./binaries.js";
import type { CgroupFacts } from "./cgroups.js";
import { probeCgroups } from "./cgroups.js";
import type { DevKmsgFacts } from "./devices.js";
import { probeDevKmsg } from "./devices.js";
import type { IdentityFacts } from "./identity.js";
import { probeIdentity } from "./identity.js";
import type { ProbeIO } from "./io.js";
import type { IptablesFacts } from "./iptables.js";
import { probeIptables } from "./iptables.js";
import type { KernelFacts } from "./kernel.js";
import { probeKernel } from "./kernel.js";
import type { KeyringFacts } from "./keyrings.js";
import { probeKeyrings } from "./keyrings.js";
import { readMountinfo } from "./mountinfo.js";
import type { NamespaceFacts } from "./namespaces.js";
import { probeNamespaces } from "./namespaces.js";
import type { NetworkFacts } from "./network.js";
import { probeNetwork } from "./network.js";
import type { OverlayFacts } from "./overlay.js";
import { probeOverlay } from "./overlay.js";
import type { MountPropagationFacts } from "./propagation.js";
import { probeMountPropagation } from "./propagation.js";
import type { RegistryFacts } from "./registries.js";
import { probeRegistries } from "./registries.js";
import type { SysctlFact } from "./sysctls.js";
import { probeSysctls } from "./sysctls.js";

/** What doctor's core probes find: the machine's kernel, files, mounts, cgroups and namespaces. */
export interface CoreFacts {
  readonly identity: IdentityFacts;
  readonly kernel: KernelFacts;
  readonly sysctls: readonly SysctlFact[];
  readonly devKmsg: DevKmsgFacts;
  readonly cgroups: CgroupFacts;
  readonly overlay: OverlayFacts;
  readonly namespaces: readonly NamespaceFacts[];
  readonly keyrings: KeyringFacts;
  readonly mountPropagation: MountPropagationFacts;
}

/** Everything sandkube knows about the machine; plain data, so it replays and serialises. */
export interface Facts extends CoreFacts {
  readonly iptables: IptablesFacts;
  readonly network: NetworkFacts;
  readonly binaries: BinaryFacts;
  readonly registries: RegistryFacts;
}

export interface ProbeOptions {
  /** Where sandkube keeps its state; overlayfs and scratch mounts are tried here. */
  readonly dataDir: string;
  /** PATH, split: where binaries are looked up first. */
  readonly searchPath: readonly string[];
  /** Where the lab's binaries and CNI plugins are looked for besides searchPath. */
  readonly binarySearch: BinarySearchOptions;
  /** Proxy and mirror settings for the registry probe. */
  readonly env: NodeJS.ProcessEnv;
}

/**
 * Probes in a fixed order, one at a time: each scratch object is gone before the next probe starts,
 * and a replayed transcript sees the same sequence as the recording.
 */
export async function collectCoreFacts(
  io: ProbeIO,
  options: Pick<ProbeOptions, "dataDir">,
): Promise<CoreFacts> {
  const identity = await probeIdentity(io);
  const isRoot = identity.isRoot;
  const mounts = await readMountinfo(io);
  return {
    identity,
    kernel: await probeKernel(io, mounts),
    sysctls: await probeSysctls(io, { isRoot }),
    devKmsg: await probeDevKmsg(io),
    cgroups: await probeCgroups(io, mounts, { isRoot, scratchParent: options.dataDir }),
    overlay: await probeOverlay(io, mounts, { dataDir: options.dataDir, isRoot }),
    namespaces: await probeNamespaces(io, { isRoot }),
    keyrings: await probeKeyrings(io),
    mountPropagation: await probeMountPropagation(io, mounts, { isRoot }),
  };
}

export async function collectFacts(io: ProbeIO, options: ProbeOptions): Promise<Facts> {
  const core = await collectCoreFacts(io, options);
  return {
    ...core,
    iptables: await probeIptables(io),
    network: await probeNetwork(io),
    binaries: await probeBinaries(io, options.searchPath, options.binarySearch),
    registries: await probeRegistries(io, options.env),
  };
}
