import { readFile } from "node:fs/promises";
import type { ClusterConfig } from "../plan/cluster-config.js";
import type { ComponentName, ComponentSpec } from "./components.js";
import { writeFileAtomic } from "./files.js";
import type { NodeLayout } from "./layout.js";
import type { ProcessIdentity } from "./process-identity.js";
import type { ProvisionRecord } from "./provision.js";

/** node.json: everything `down` needs to undo `up`, and everything the supervisor runs. */
export interface NodeState {
  readonly schema: "sandkube.node/v1";
  readonly config: ClusterConfig;
  /** Provisioning done so far, in order; appended step by step so a crash loses nothing. */
  readonly provisioned: readonly ProvisionRecord[];
  readonly components: readonly ComponentSpec[];
  readonly kubeconfig: {
    readonly admin: string;
    /** The user's kubeconfig that got the `sandkube` context, or null with --no-kubeconfig. */
    readonly user: string | null;
    readonly context: string;
  };
  /** Tools the node uses besides its components: crictl removes pods before containerd stops. */
  readonly tools: { readonly crictl: string | null };
  readonly createdAt: string;
}

export type ComponentPhase =
  "waiting" | "starting" | "ready" | "restarting" | "stopping" | "stopped";

export interface ComponentStatus {
  readonly name: ComponentName;
  readonly phase: ComponentPhase;
  readonly process: ProcessIdentity | null;
  readonly restarts: number;
  /** How the last run ended, e.g. "exit status 1" or "signal SIGKILL". */
  readonly lastExit: string | null;
  readonly since: string;
}

/** run/components.json, rewritten by the supervisor on every change. */
export interface SupervisorStatus {
  readonly supervisor: ProcessIdentity;
  readonly phase: "starting" | "running" | "stopping";
  readonly components: readonly ComponentStatus[];
}

export function componentStatusPath(layout: NodeLayout): string {
  return `${layout.dataDir}/run/components.json`;
}

export async function readNodeState(layout: NodeLayout): Promise<NodeState | undefined> {
  const text = await readFile(layout.stateFile, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const parsed = JSON.parse(text) as NodeState;
  if (parsed.schema !== "sandkube.node/v1") {
    throw new Error(
      `${layout.stateFile} has schema ${String(parsed.schema)}, not sandkube.node/v1`,
    );
  }
  return parsed;
}

export async function writeNodeState(layout: NodeLayout, state: NodeState): Promise<void> {
  await writeFileAtomic(layout.stateFile, `${JSON.stringify(state, null, 2)}\n`);
}

export async function readSupervisorStatus(
  layout: NodeLayout,
): Promise<SupervisorStatus | undefined> {
  const text = await readFile(componentStatusPath(layout), "utf8").catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as SupervisorStatus);
}

export async function writeSupervisorStatus(
  layout: NodeLayout,
  status: SupervisorStatus,
): Promise<void> {
  await writeFileAtomic(componentStatusPath(layout), `${JSON.stringify(status, null, 2)}\n`);
}
