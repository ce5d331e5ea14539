import { nodeLayout } from "../node/layout.js";
import { probeReadiness } from "../node/readiness.js";
import { readNodeState, readSupervisorStatus } from "../node/state.js";
import { runningSupervisor } from "../node/up.js";
import { adminClient, nodeIsReady } from "../node/cluster-ready.js";
import { isAlive } from "../node/process-identity.js";
import { dataDirFrom, parseFlags } from "./node-args.js";
import { renderTable } from "./table.js";
import { UsageError } from "./usage-error.js";

const USAGE = `usage: sandkube status [--data-dir DIR] [--json]

Each component with its pid and health, the node's state, and the kubeconfig path. Exit status 0
when the node is running and Ready, 1 otherwise, 3 when there is no node.`;

const FLAGS = {
  "--data-dir": { takesValue: true },
  "--json": { takesValue: false },
  "--help": { takesValue: false },
  "-h": { takesValue: false },
} as const;

export async function status(args: string[]): Promise<number> {
  const { flags, positional } = parseFlags("status", args, FLAGS, USAGE);
  if (flags.has("--help") || flags.has("-h")) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positional.length > 0)
    throw new UsageError(`status: unexpected argument "${positional[0]}".`);
  const dataDir = dataDirFrom(flags, process.env);
  const layout = nodeLayout(dataDir);
  const state = await readNodeState(layout);
  const json = flags.has("--json");
  if (state === undefined) {
    if (json)
      process.stdout.write(
        `${JSON.stringify({ schema: "sandkube.status/v1", dataDir, node: null }, null, 2)}\n`,
      );
    else process.stdout.write(`No node in ${dataDir}. Start one with \`sandkube up\`.\n`);
    return 3;
  }
  const supervisor = await runningSupervisor(layout);
  const supervisorStatus = await readSupervisorStatus(layout);
  const components = await Promise.all(
    state.components.map(async (spec) => {
      const recorded = supervisorStatus?.components.find((c) => c.name === spec.name);
      const alive = recorded?.process ? await isAlive(recorded.process) : false;
      const health = alive
        ? await probeReadiness(spec.readiness)
        : { ready: false, detail: "not running" };
      return {
        name: spec.name,
        pid: alive ? (recorded?.process?.pid ?? null) : null,
        phase: supervisor === undefined ? "stopped" : (recorded?.phase ?? "unknown"),
        healthy: health.ready,
        restarts: recorded?.restarts ?? 0,
        detail: health.detail,
        log: spec.logFile,
      };
    }),
  );
  let nodeReady: boolean | null = null;
  if (components.find((c) => c.name === "kube-apiserver")?.healthy) {
    nodeReady = await adminClient(state)
      .readNode({ name: state.config.nodeName })
      .then(nodeIsReady, () => false);
  }
  const summary = {
    schema: "sandkube.status/v1",
    dataDir,
    node: state.config.nodeName,
    ready: nodeReady === true,
    supervisor: supervisor ?? null,
    runtime: state.config.runtime,
    kubeconfig: state.kubeconfig.user ?? state.kubeconfig.admin,
    adminKubeconfig: state.kubeconfig.admin,
    components,
  };
  if (json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } else {
    process.stdout.write(
      `node ${summary.node}: ${summary.ready ? "Ready" : "not Ready"}; supervisor ${supervisor ? `pid ${supervisor.pid}` : "not running"}; runtime ${summary.runtime}\n`,
    );
    process.stdout.write(
      renderTable(
        ["component", "pid", "phase", "health", "restarts"],
        components.map((c) => [
          c.name,
          c.pid === null ? "-" : String(c.pid),
          c.phase,
          c.healthy ? "ok" : c.detail,
          String(c.restarts),
        ]),
        [24, 8, 10, 60, 8],
      ),
    );
    process.stdout.write(
      `\nkubeconfig: ${summary.kubeconfig} (context ${state.kubeconfig.context})\n`,
    );
  }
  return summary.ready && supervisor !== undefined ? 0 : 1;
}
