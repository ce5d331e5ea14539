#!/usr/bin/env bun
import { containerId, flagBool, flagString, parseCommandLine, type GlobalOptions } from "./args.js";
import { findHelper, makeContext, type RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";
import { OCI_VERSION, RUNTIME_VERSION } from "./version.js";
import { fileLogger, type Logger } from "./log.js";
import { hostSyscalls } from "./syscalls.js";

const USAGE = `usage: sandkube-runtime [--root DIR] [--log FILE] [--log-format json|text] COMMAND [flags] ID
commands: create start state kill delete exec ps update pause resume features --version`;

// Each verb's module is loaded only when that verb runs: the runtime starts several times per
// container, and evaluating every module at each start cost more than the verb itself
// (docs/runtime-engine.md, "Start time").
async function dispatch(
  ctx: RuntimeContext,
  command: string,
  flags: ReadonlyMap<string, string | true>,
  positionals: readonly string[],
): Promise<number> {
  switch (command) {
    case "create": {
      const { create, createOptions } = await import("./create.js");
      await create(ctx, createOptions(containerId(positionals, command), flags, process.cwd()));
      return 0;
    }
    case "start":
      await (await import("./start.js")).start(ctx, containerId(positionals, command));
      return 0;
    case "state":
      (await import("./state.js")).state(ctx, containerId(positionals, command));
      return 0;
    case "kill":
      await (
        await import("./kill.js")
      ).kill(ctx, containerId(positionals, command), positionals[1], flagBool(flags, "all", "a"));
      return 0;
    case "delete":
      await (
        await import("./delete.js")
      ).deleteContainer(ctx, containerId(positionals, command), flagBool(flags, "force", "f"));
      return 0;
    case "exec": {
      const { exec, execOptions } = await import("./exec.js");
      return exec(ctx, containerId(positionals, command), execOptions(flags, positionals));
    }
    case "ps":
      (await import("./ps.js")).ps(
        ctx,
        containerId(positionals, command),
        flagString(flags, "format", "f") ?? "table",
      );
      return 0;
    case "update":
      await (
        await import("./update.js")
      ).update(ctx, containerId(positionals, command), flagString(flags, "resources", "r"));
      return 0;
    case "pause":
      await (await import("./pause.js")).pause(ctx, containerId(positionals, command));
      return 0;
    case "resume":
      await (await import("./resume.js")).resume(ctx, containerId(positionals, command));
      return 0;
    case "features":
      ctx.print(`${JSON.stringify((await import("./features.js")).featuresJson(), null, 2)}\n`);
      return 0;
    case "--version":
      ctx.print(
        `sandkube-runtime version ${RUNTIME_VERSION}\ncommit: none\nspec: ${OCI_VERSION}\n`,
      );
      return 0;
    default:
      throw new RuntimeError(`unknown command "${command}"\n${USAGE}`);
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let log: Logger = fileLogger(undefined, "text");
  let logPath: string | undefined;
  try {
    const cmd = parseCommandLine(argv);
    const global: GlobalOptions = cmd.global;
    logPath = global.log;
    log = fileLogger(global.log, global.log === undefined ? "text" : global.logFormat);
    if (cmd.command === undefined || cmd.command === "help") {
      process.stdout.write(`${USAGE}\n`);
      return cmd.command === undefined ? 2 : 0;
    }
    const ctx = makeContext(hostSyscalls, log, global, findHelper(), (text) =>
      process.stdout.write(text),
    );
    return await dispatch(ctx, cmd.command, cmd.flags, cmd.positionals);
  } catch (e) {
    const msg =
      e instanceof RuntimeError
        ? e.message
        : `internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
    // Without --log the logger writes to stderr already; say it once, in plain words.
    if (logPath !== undefined) log.error(msg);
    process.stderr.write(`sandkube-runtime: ${msg}\n`);
    return 1;
  }
}

// Exit explicitly: nothing of the runtime may linger once the command is done (runtime-contract.md).
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  () => process.exit(1),
);
