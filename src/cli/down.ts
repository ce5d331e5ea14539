import { nodeLayout } from "../node/layout.js";
import { bringDown } from "../node/down.js";
import { dataDirFrom, parseFlags } from "./node-args.js";
import { progressTo } from "./progress.js";
import { UsageError } from "./usage-error.js";

const USAGE = `usage: sandkube down [--data-dir DIR] [--purge] [--json]

Stops the node, removes its pods, and undoes everything \`up\` provisioned. A node that is not
there is not an error. --purge also deletes the data dir (certificates, etcd, images).`;

const FLAGS = {
  "--data-dir": { takesValue: true },
  "--purge": { takesValue: false },
  "--json": { takesValue: false },
  "--help": { takesValue: false },
  "-h": { takesValue: false },
} as const;

export async function down(args: string[]): Promise<number> {
  const { flags, positional } = parseFlags("down", args, FLAGS, USAGE);
  if (flags.has("--help") || flags.has("-h")) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positional.length > 0)
    throw new UsageError(`down: unexpected argument "${positional[0]}".\n${USAGE}`);
  if (process.getuid?.() !== 0) throw new UsageError("down: needs root, as `up` did.", 1);
  const dataDir = dataDirFrom(flags, process.env);
  const json = flags.has("--json");
  const result = await bringDown(nodeLayout(dataDir), progressTo(process.stderr), {
    purge: flags.has("--purge"),
  });
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ schema: "sandkube.down/v1", dataDir, ...result }, null, 2)}\n`,
    );
  } else if (!result.found) {
    process.stderr.write(`No node in ${dataDir}; nothing to do.\n`);
  } else if (result.leftovers.length === 0) {
    process.stderr.write(`The node in ${dataDir} is down; nothing is left behind.\n`);
  }
  if (result.leftovers.length > 0) {
    process.stderr.write(
      `sandkube: down could not remove:\n${result.leftovers.map((l) => `  - ${l}`).join("\n")}\n`,
    );
    process.stderr.write("  Run `sandkube down` again once whatever holds them is gone.\n");
    return 1;
  }
  return 0;
}
