#!/usr/bin/env node
import { UsageError } from "./usage-error.js";

/** A subcommand: parses its own arguments and returns the process exit status. */
export type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  doctor: {
    summary: "probe this machine and explain how Kubernetes can run here",
    load: async () => (await import("./doctor.js")).doctor,
  },
  up: {
    summary: "start a one-node Kubernetes here (probe, plan, apply) and wait until it is Ready",
    load: async () => (await import("./up.js")).up,
  },
  down: {
    summary: "stop the node and undo everything up provisioned (--purge also removes its data)",
    load: async () => (await import("./down.js")).down,
  },
  status: {
    summary: "each component's pid and health, the node's state and the kubeconfig path",
    load: async () => (await import("./status.js")).status,
  },
  verify: {
    summary:
      "run a small workload and check each capability (Services, DNS, egress, storage), naming each blocker",
    load: async () => (await import("./verify.js")).verifyCommand,
  },
  logs: {
    summary: "print (or follow with -f) one component's log",
    load: async () => (await import("./logs.js")).logs,
  },
  kubectl: {
    summary: "run the installed kubectl against this node",
    load: async () => (await import("./kubectl.js")).kubectl,
  },
  install: {
    summary: "get the binaries the node runs into sandkube's cache",
    load: async () => (await import("./install.js")).install,
  },
  images: {
    summary: "build, import and list the node's images without a registry",
    load: async () => (await import("./images.js")).images,
  },
  registry: {
    summary: "start, stop or check a local image registry (docker-registry) for offline pulls",
    load: async () => (await import("./registry.js")).registry,
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
