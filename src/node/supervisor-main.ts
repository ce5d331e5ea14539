import { rm } from "node:fs/promises";
import { writeFileAtomic } from "./files.js";
import { nodeLayout } from "./layout.js";
import { identify } from "./process-identity.js";
import { readNodeState } from "./state.js";
import { Supervisor } from "./supervisor.js";

/**
 * The background `sandkube` node process: started detached by `up`, it outlives the terminal and
 * runs until `down` sends SIGTERM. Its own log is its stdout, which `up` points at a file.
 */
async function main(argv: readonly string[]): Promise<number> {
  const dataDir = argv[0];
  if (dataDir === undefined) {
    process.stderr.write("usage: supervisor-main DATA_DIR\n");
    return 2;
  }
  const layout = nodeLayout(dataDir);
  const state = await readNodeState(layout);
  if (state === undefined) {
    process.stderr.write(`supervisor: no node state at ${layout.stateFile}\n`);
    return 1;
  }
  const self = await identify(process.pid);
  if (self === undefined) throw new Error("cannot read this process's own /proc entry");
  await writeFileAtomic(layout.supervisorPidFile, `${JSON.stringify(self)}\n`);
  const log = (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);
  const supervisor = new Supervisor(state, layout, log, self, state.tools.crictl);
  let stopped: Promise<void> | undefined;
  const stop = (signal: string) => {
    log(`${signal}: stopping the node`);
    stopped ??= supervisor.stop(signal === "SIGTERM");
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // A lost terminal must not stop the node.
  process.on("SIGHUP", () => log("SIGHUP ignored"));
  log(`supervisor ${process.pid} starting for ${dataDir}`);
  await supervisor.run();
  await stopped;
  await rm(layout.supervisorPidFile, { force: true });
  log("supervisor stopped");
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `supervisor: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 70;
  },
);
