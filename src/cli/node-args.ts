import { resolve } from "node:path";
import { DEFAULT_DATA_DIR } from "./doctor.js";
import { UsageError } from "./usage-error.js";

/**
 * A small flag parser shared by the node commands: every flag is declared, an unknown one is a
 * UsageError naming it, and a missing value says which flag wanted it.
 */
export interface FlagSpec {
  readonly takesValue: boolean;
}

export function parseFlags(
  command: string,
  args: readonly string[],
  specs: Readonly<Record<string, FlagSpec>>,
  usage: string,
): { flags: Map<string, string[]>; positional: string[] } {
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    if (arg === "--") {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const spec = specs[name];
    if (spec === undefined) {
      throw new UsageError(`${command}: unknown flag ${name}.\n${usage}`);
    }
    let value = "true";
    if (spec.takesValue) {
      const next = inline ?? args[++i];
      if (next === undefined || (inline === undefined && next.startsWith("--"))) {
        throw new UsageError(`${command}: ${name} needs a value.\n${usage}`);
      }
      value = next;
    } else if (inline !== undefined) {
      throw new UsageError(`${command}: ${name} takes no value.\n${usage}`);
    }
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  return { flags, positional };
}

export function lastFlag(flags: Map<string, string[]>, name: string): string | undefined {
  return flags.get(name)?.at(-1);
}

export function dataDirFrom(flags: Map<string, string[]>, env: NodeJS.ProcessEnv): string {
  return resolve(lastFlag(flags, "--data-dir") ?? env["SANDKUBE_DATA_DIR"] ?? DEFAULT_DATA_DIR);
}
