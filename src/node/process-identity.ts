import { readFile } from "node:fs/promises";
import { parseProcStat } from "../runtime/state-store.js";

/**
 * A pid alone names a different process once it is reused; the pair (pid, start time in clock
 * ticks from /proc/PID/stat) does not.
 */
export interface ProcessIdentity {
  readonly pid: number;
  readonly startTime: string;
}

export async function identify(pid: number): Promise<ProcessIdentity | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  const parsed = stat === undefined ? undefined : parseProcStat(stat);
  if (parsed === undefined || parsed.state === "Z") return undefined;
  return { pid, startTime: parsed.startTime };
}

export async function isAlive(process: ProcessIdentity): Promise<boolean> {
  const now = await identify(process.pid);
  return now !== undefined && now.startTime === process.startTime;
}

/** Sends a signal only to the process that was recorded, never to a pid's next owner. */
export async function signalIfAlive(
  target: ProcessIdentity,
  signal: NodeJS.Signals,
): Promise<boolean> {
  if (!(await isAlive(target))) return false;
  try {
    process.kill(target.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
export async function terminate(target: ProcessIdentity, graceMs: number): Promise<void> {
  if (!(await signalIfAlive(target, "SIGTERM"))) return;
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await isAlive(target))) return;
    await sleep(100);
  }
  await signalIfAlive(target, "SIGKILL");
  for (let i = 0; i < 50 && (await isAlive(target)); i++) await sleep(100);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
