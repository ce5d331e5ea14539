import { spawn } from "node:child_process";
import { nodeLayout } from "../node/layout.js";
import { readNodeState } from "../node/state.js";
import { resolve } from "node:path";
import { DEFAULT_DATA_DIR } from "./doctor.js";
import { UsageError } from "./usage-error.js";

/**
 * `sandkube kubectl [--data-dir DIR] ARGS...`: every other argument goes to kubectl untouched, so
 * only a leading --data-dir is sandkube's.
 */
export async function kubectl(args: string[]): Promise<number> {
  let rest = args;
  let dataDir = process.env["SANDKUBE_DATA_DIR"] ?? DEFAULT_DATA_DIR;
  if (rest[0] === "--data-dir") {
    if (rest[1] === undefined) throw new UsageError("kubectl: --data-dir needs a value.");
    dataDir = rest[1];
    rest = rest.slice(2);
  }
  const state = await readNodeState(nodeLayout(resolve(dataDir)));
  if (state === undefined) {
    throw new UsageError(`kubectl: no node in ${dataDir}. Start one with \`sandkube up\`.`, 1);
  }
  const child = spawn(
    state.config.binaries.kubectl,
    ["--kubeconfig", state.kubeconfig.admin, ...rest],
    {
      stdio: "inherit",
    },
  );
  return new Promise((resolvePromise) => {
    child.on("error", (error) => {
      process.stderr.write(`sandkube: kubectl: ${error.message}\n`);
      resolvePromise(127);
    });
    child.on("exit", (code, signal) => resolvePromise(code ?? (signal === null ? 1 : 128)));
  });
}
