/**
 * What the node benchmarks share: running the same benchmark file inside a lab runsc sandbox,
 * with its figures coming back through a file in the sandbox's shared output directory (so the
 * outer stdout stays one JSON object), and taking a node down after a measurement.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand } from "../src/common/exec.js";
import { describeCommand } from "../src/verify/checks.js";
import { runInGvisor } from "../lab/gvisor-run.js";
import { labDir } from "../lab/paths.js";

/** Runs `node <script> --inner --result FILE ...args` inside runsc; returns what it wrote. */
export async function measureInsideGvisor<T>(
  flavour: "new" | "old",
  script: string,
  args: readonly string[],
): Promise<T> {
  const outDir = await mkdtemp(join(labDir(), "bench-"));
  const resultFile = join(outDir, "gvisor.json");
  try {
    const result = await runInGvisor(
      {
        runsc: flavour,
        timeoutSeconds: 1800,
        network: "none",
        outDir,
        debug: false,
        command: ["node", script, "--inner", "--result", resultFile, ...args],
      },
      // Passed through: the inner run writes progress to stderr and nothing to stdout.
      { capture: false },
    );
    const text = await readFile(resultFile, "utf8").catch(() => undefined);
    if (text === undefined) {
      throw new Error(
        `the gVisor run (runsc ${flavour}) ended with status ${String(result.exitCode)} and no figures`,
      );
    }
    return JSON.parse(text) as T;
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

/** `sandkube down --purge`; false (and a warning) when it did not finish cleanly. */
export async function takeDown(
  cli: string,
  dataDir: string,
  say: (line: string) => void,
): Promise<boolean> {
  const down = await runCommand([process.execPath, cli, "down", "--purge", "--data-dir", dataDir], {
    timeoutMs: 300_000,
  });
  const ok = down.exitCode === 0 && down.failure === undefined;
  if (!ok) say(`WARNING: down did not finish cleanly: ${describeCommand(down)}`);
  return ok;
}

/** A bad flag or value: the bench prints it with its usage line and exits 2. */
export class BenchUsageError extends Error {}

/** The flags every side-by-side bench reads, whatever else it takes. */
export interface SideBySideArgs {
  readonly json: boolean;
  readonly gvisor: "new" | "old" | undefined;
  /** Set inside runsc: measure this side only and write it to resultFile. */
  readonly inner: boolean;
  readonly resultFile: string | undefined;
}

export interface SideBySideBench<A extends SideBySideArgs, S> {
  readonly usage: string;
  parse(argv: readonly string[]): A;
  /** One side, on the kernel this process runs on. */
  measure(args: A): Promise<S>;
  /** The same bench inside runsc (measureInsideGvisor with the bench's own flags). */
  measureInGvisor(flavour: "new" | "old", args: A): Promise<S>;
  /** Whether a side left the machine as it found it; false makes the exit status 1. */
  clean?(side: S): boolean;
  /** Fields added to the --json object beside host, gvisor, runsc and measured_at. */
  extraJson?(host: S, gvisor: S | null): Record<string, unknown>;
  printTable(host: S, gvisor: S | null): void;
}

/**
 * The flow every side-by-side bench shares: parse (a usage error exits 2); inside runsc, measure
 * and hand the side back through the result file; outside, measure the host, then gVisor when
 * --gvisor asks, and print one table or one JSON object.
 */
export async function runSideBySide<A extends SideBySideArgs, S>(
  argv: readonly string[],
  bench: SideBySideBench<A, S>,
): Promise<number> {
  let args: A;
  try {
    args = bench.parse(argv);
  } catch (error) {
    if (!(error instanceof BenchUsageError)) throw error;
    process.stderr.write(`${error.message}\n${bench.usage}\n`);
    return 2;
  }
  const clean = (side: S | null): boolean => side === null || (bench.clean?.(side) ?? true);
  if (args.inner) {
    const side = await bench.measure(args);
    const text = `${JSON.stringify(side)}\n`;
    if (args.resultFile === undefined) process.stdout.write(text);
    else await writeFile(args.resultFile, text);
    return clean(side) ? 0 : 1;
  }
  const host = await bench.measure(args);
  const gvisor = args.gvisor === undefined ? null : await bench.measureInGvisor(args.gvisor, args);
  if (args.json) {
    const result = {
      host,
      gvisor,
      ...(bench.extraJson?.(host, gvisor) ?? {}),
      runsc: args.gvisor ?? null,
      measured_at: new Date().toISOString(),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else bench.printTable(host, gvisor);
  return clean(host) && clean(gvisor) ? 0 : 1;
}

/** Runs `main` when `moduleUrl` is the file node was started with (the --inner side in runsc). */
export function runBenchFile(
  moduleUrl: string,
  name: string,
  main: (argv: readonly string[]) => Promise<number>,
): void {
  const entry = process.argv[1];
  if (entry === undefined || resolve(entry) !== fileURLToPath(moduleUrl)) return;
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${name} bench: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
