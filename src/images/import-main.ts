#!/usr/bin/env node
/**
 * `node import-main.js --ctr CTR --socket SOCK --snapshotter NAME --containerd-root DIR FILE`:
 * imports FILE into the CRI namespace and unpacks it without mounts. The supervisor runs it once
 * containerd answers, where the node imports its pause image and the kernel refuses MS_REC
 * (a single ctr command line cannot do that import).
 */
import { parseArgs } from "node:util";
import { importWithoutMounts } from "./unpack-without-mounts.js";

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      ctr: { type: "string" },
      socket: { type: "string" },
      snapshotter: { type: "string" },
      "containerd-root": { type: "string" },
    },
    allowPositionals: true,
  });
  const { ctr, socket, snapshotter } = values;
  const containerdRoot = values["containerd-root"];
  const [file] = positionals;
  if (
    ctr === undefined ||
    socket === undefined ||
    snapshotter === undefined ||
    containerdRoot === undefined ||
    file === undefined ||
    positionals.length !== 1
  ) {
    process.stderr.write(
      "usage: import-main.js --ctr CTR --socket SOCK --snapshotter NAME --containerd-root DIR FILE\n",
    );
    return 2;
  }
  await importWithoutMounts({ ctr, socket, snapshotter, containerdRoot }, file);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `import-main: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
