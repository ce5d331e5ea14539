#!/usr/bin/env node
import { UsageError } from "./usage-error.js";

/** A subcommand: parses its own arguments and returns the process exit status. */
export type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  doctor: {
    summary: "probe this machine and explain how Kubernetes can run here",
    load: async () => (await import("./doctor.js")).doctor,
  },
};

function usage(): string {
  const lines = ["usage: sandkube <command> [options]", "", "commands:"];
  for (const [name, { summary }] of Object.entries(COMMANDS)) {
    lines.push(`  ${name.padEnd(10)} ${summary}`);
  }
  lines.push("", "Run `sandkube <command> --help` for a command's options.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") {
    process.stdout.write("sandkube 0.1.0\n");
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    throw new UsageError(
      `unknown command "${name}". Known commands: ${Object.keys(COMMANDS).join(", ")}.`,
    );
  }
  return (await command.load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`sandkube: ${error.message}\n`);
      process.exitCode = error.exitCode;
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`sandkube: internal error: ${message}\n`);
    if (process.env["SANDKUBE_DEBUG"] && error instanceof Error)
      process.stderr.write(`${error.stack}\n`);
    process.exitCode = 70;
  },
);
