import { execa } from "execa";

/** What a finished child process left behind. A non-zero exit is data, not an exception. */
export interface CommandResult {
  readonly argv: readonly string[];
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Set when the process could not be started or was stopped: "ENOENT", "TIMEOUT", "SIGKILL"... */
  readonly failure?: string;
}

export interface RunOptions {
  readonly timeoutMs?: number;
  readonly input?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
}

/** Runs argv[0] with the rest as arguments. Never throws for a failed command. */
export type CommandRunner = (
  argv: readonly string[],
  options?: RunOptions,
) => Promise<CommandResult>;

export const runCommand: CommandRunner = async (argv, options = {}) => {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("runCommand: empty argv");
  const result = await execa(file, args, {
    reject: false,
    stripFinalNewline: false,
    timeout: options.timeoutMs ?? 10_000,
    killSignal: "SIGKILL",
    input: options.input,
    stdin: options.input === undefined ? "ignore" : "pipe",
    env: options.env,
    extendEnv: true,
    cwd: options.cwd,
  });
  let failure: string | undefined;
  if (result.timedOut) failure = "TIMEOUT";
  else if (result.failed && result.exitCode === undefined) {
    const cause = result.cause as NodeJS.ErrnoException | undefined;
    failure = cause?.code ?? result.signal ?? "SPAWN_FAILED";
  }
  return {
    argv,
    exitCode: result.exitCode ?? (failure === "ENOENT" ? 127 : 128),
    stdout: typeof result.stdout === "string" ? result.stdout : "",
    stderr: typeof result.stderr === "string" ? result.stderr : "",
    ...(failure === undefined ? {} : { failure }),
  };
};

/** An error that carries the whole story of a failed command, as execa's errors do. */
export class CommandFailedError extends Error {
  constructor(readonly result: CommandResult) {
    const detail = result.failure ?? `exit status ${result.exitCode}`;
    const stderr = result.stderr.trim().split("\n").slice(-3).join(" | ");
    super(`${result.argv.join(" ")} failed (${detail})${stderr ? `: ${stderr}` : ""}`);
    this.name = "CommandFailedError";
  }
}

export function ensureSuccess(result: CommandResult): CommandResult {
  if (result.exitCode !== 0 || result.failure !== undefined) throw new CommandFailedError(result);
  return result;
}
