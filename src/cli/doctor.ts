import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { delimiter, dirname, resolve } from "node:path";
import { labBinDir, labCniDir } from "../../lab/paths.js";
import { DEFAULT_PLAN_OPTIONS, planAdaptations } from "../plan/adaptations.js";
import { judge } from "../plan/verdict.js";
import type { ProbeOptions } from "../probe/facts.js";
import { collectFacts } from "../probe/facts.js";
import type { ProbeIO, Transcript } from "../probe/io.js";
import { recordingIO, systemIO } from "../probe/io.js";
import type { DoctorReport } from "./doctor-report.js";
import { renderHuman } from "./doctor-report.js";
import { UsageError } from "./usage-error.js";

export const DEFAULT_DATA_DIR = "/var/lib/sandkube";

export interface DoctorArgs {
  readonly json: boolean;
  readonly dataDir: string;
  readonly record: string | null;
  readonly help: boolean;
}

const USAGE = `usage: sandkube doctor [--json] [--data-dir DIR] [--record FILE]

Probes this machine, explains what it means for running Kubernetes here, and lists the
adaptations sandkube switches on, each with the fact that triggers it.

  --json            print one sandkube.doctor/v1 object (docs/doctor-json.md) instead of tables
  --data-dir DIR    where sandkube keeps its state (default ${DEFAULT_DATA_DIR}); overlayfs is tried here
  --record FILE     also write every probe's reads and commands as a sandkube.transcript/v1 fixture

Exit status: 0 when Kubernetes can run here with the adaptations, 1 when it cannot, 2 on bad usage.`;

const VALUE_EXAMPLES: Record<string, string> = {
  "--data-dir": DEFAULT_DATA_DIR,
  "--record": "machine.transcript.json",
};

/** Pure: argv -> options, or a UsageError naming the bad argument. */
export function parseDoctorArgs(args: readonly string[]): DoctorArgs {
  let json = false;
  let dataDir = DEFAULT_DATA_DIR;
  let record: string | null = null;
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const [flag, inline] =
      arg.startsWith("--") && arg.includes("=")
        ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
        : [arg, undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined || v === "") {
        throw new UsageError(`doctor: ${flag} needs a value, e.g. ${flag} ${VALUE_EXAMPLES[flag]}`);
      }
      return v;
    };
    if (inline !== undefined && !(flag in VALUE_EXAMPLES)) {
      throw new UsageError(`doctor: ${flag} takes no value (got "${arg}").`);
    }
    switch (flag) {
      case "--json":
        json = true;
        break;
      case "--data-dir":
        dataDir = value();
        break;
      case "--record":
        record = value();
        break;
      case "--help":
      case "-h":
        help = true;
        break;
      default:
        throw new UsageError(
          `doctor: unknown argument "${arg}". Run \`sandkube doctor --help\` for the options.`,
        );
    }
  }
  return {
    json,
    dataDir: resolve(dataDir),
    record: record === null ? null : resolve(record),
    help,
  };
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir spins forever under /proc, where mkdir
 * answers ENOENT for a parent that exists.
 */
export async function makeDirectories(path: string): Promise<void> {
  const missing: string[] = [];
  for (let dir = path; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      await stat(dir);
      break;
    } catch {
      missing.unshift(dir);
    }
  }
  for (const dir of missing) await mkdir(dir);
}

/** The data dir must exist and take a file, since overlay and cgroup probes work inside it. */
async function ensureWritableDataDir(dataDir: string): Promise<void> {
  const probeFile = `${dataDir}/.sandkube-doctor-write-test`;
  try {
    await makeDirectories(dataDir);
    await writeFile(probeFile, "");
    await rm(probeFile, { force: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new UsageError(
      `doctor: data dir ${dataDir} is not writable (${code}). Run as root, or pass a writable directory with --data-dir DIR.`,
    );
  }
}

/** Fails before probing, not after: a full probe run is too long to throw away on a typo. */
async function ensureRecordDirectory(record: string): Promise<void> {
  const directory = dirname(record);
  const isDirectory = await stat(directory).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDirectory) {
    throw new UsageError(
      `doctor: cannot record to ${record}: ${directory} is not a directory. Pass --record a path in an existing directory.`,
    );
  }
}

/** The options a replay needs to ask the same questions; kept next to the transcript. */
export interface RecordedTranscript extends Transcript {
  readonly probeOptions: ProbeOptions;
}

const RECORDED_ENV = [
  "http_proxy",
  "HTTP_PROXY",
  "https_proxy",
  "HTTPS_PROXY",
  "all_proxy",
  "ALL_PROXY",
  "no_proxy",
  "NO_PROXY",
  "SANDKUBE_REGISTRY_MIRRORS",
];

export function probeOptionsFromEnvironment(dataDir: string, env: NodeJS.ProcessEnv): ProbeOptions {
  const relevantEnv: Record<string, string> = {};
  for (const name of RECORDED_ENV) {
    const value = env[name];
    if (value !== undefined) relevantEnv[name] = value;
  }
  return {
    dataDir,
    searchPath: (env["PATH"] ?? "").split(delimiter).filter(Boolean),
    binarySearch: { labBinDir: labBinDir(env), labCniDir: labCniDir(env) },
    env: relevantEnv,
  };
}

export async function buildReport(io: ProbeIO, options: ProbeOptions): Promise<DoctorReport> {
  const facts = await collectFacts(io, options);
  return {
    schema: "sandkube.doctor/v1",
    facts,
    adaptations: planAdaptations(facts, DEFAULT_PLAN_OPTIONS),
    verdict: judge(facts),
  };
}

export async function doctor(args: string[]): Promise<number> {
  const parsed = parseDoctorArgs(args);
  if (parsed.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  await ensureWritableDataDir(parsed.dataDir);
  if (parsed.record !== null) await ensureRecordDirectory(parsed.record);
  const options = probeOptionsFromEnvironment(parsed.dataDir, process.env);
  const recording = parsed.record === null ? null : recordingIO(systemIO());
  const report = await buildReport(recording?.io ?? systemIO(), options);

  if (recording !== null && parsed.record !== null) {
    const transcript: RecordedTranscript = {
      ...recording.transcript(),
      description: `sandkube doctor on ${hostname()} (kernel ${report.facts.kernel.release ?? "unknown"}, gVisor ${report.facts.kernel.gvisor.verdict ? "yes" : "no"})`,
      probeOptions: options,
    };
    try {
      await writeFile(parsed.record, `${JSON.stringify(transcript, null, 2)}\n`);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "error";
      throw new UsageError(
        `doctor: cannot write the transcript to ${parsed.record} (${code}). Pass a writable path to --record.`,
      );
    }
  }

  process.stdout.write(parsed.json ? `${JSON.stringify(report, null, 2)}\n` : renderHuman(report));
  return report.verdict.canRun ? 0 : 1;
}
