import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { COMPONENT_NAMES } from "../node/components.js";
import { componentLogPath, nodeLayout } from "../node/layout.js";
import { sleep } from "../node/process-identity.js";
import { dataDirFrom, parseFlags } from "./node-args.js";
import { UsageError } from "./usage-error.js";

const NAMES = [...COMPONENT_NAMES, "supervisor"];
const USAGE = `usage: sandkube logs COMPONENT [-f] [--data-dir DIR]

COMPONENT is one of: ${NAMES.join(", ")}.`;

const FLAGS = {
  "--data-dir": { takesValue: true },
  "-f": { takesValue: false },
  "--follow": { takesValue: false },
  "--help": { takesValue: false },
  "-h": { takesValue: false },
} as const;

function copyRange(path: string, start: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let position = start;
    const stream = createReadStream(path, { start });
    stream.on("data", (chunk) => {
      position += chunk.length;
      process.stdout.write(chunk);
    });
    stream.on("end", () => resolve(position));
    stream.on("error", reject);
  });
}

export async function logs(args: string[]): Promise<number> {
  const { flags, positional } = parseFlags("logs", args, FLAGS, USAGE);
  if (flags.has("--help") || flags.has("-h")) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const name = positional[0];
  if (name === undefined || !NAMES.includes(name) || positional.length > 1) {
    throw new UsageError(`logs: name one component: ${NAMES.join(", ")}.`);
  }
  const path = componentLogPath(nodeLayout(dataDirFrom(flags, process.env)), name);
  const exists = await stat(path).catch(() => undefined);
  if (exists === undefined) {
    throw new UsageError(
      `logs: ${path} does not exist: has \`sandkube up\` run with this --data-dir?`,
      1,
    );
  }
  let position = await copyRange(path, 0);
  if (!flags.has("-f") && !flags.has("--follow")) return 0;
  for (;;) {
    await sleep(500);
    const size = (await stat(path).catch(() => undefined))?.size ?? position;
    // A log that shrank was truncated; start again from its beginning.
    if (size < position) position = 0;
    if (size > position) position = await copyRange(path, position);
  }
}
