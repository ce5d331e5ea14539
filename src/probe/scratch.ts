import type { Check } from "./check.js";
import { fromCommand, notRun } from "./check.js";
import type { ProbeIO } from "./io.js";

export interface ScratchOutcome<T> {
  readonly created: Check;
  /** null when the directory could not be created, so `body` never ran. */
  readonly value: T | null;
  readonly removed: Check;
}

/**
 * Runs `body` with a fresh scratch directory under `parent`, and removes the directory afterwards
 * even when `body` throws. `--one-file-system` keeps the removal from descending into a mount that
 * a failed unmount left behind.
 */
export async function withScratchDir<T>(
  io: ProbeIO,
  parent: string,
  label: string,
  body: (dir: string) => Promise<T>,
): Promise<ScratchOutcome<T>> {
  const dir = `${parent}/doctor-${io.scratchName(label)}`;
  const created = fromCommand(await io.run(["mkdir", "-p", dir]), `mkdir -p ${dir}`);
  if (created.result !== "yes") {
    return { created, value: null, removed: notRun("nothing was created") };
  }
  let removed: Check = notRun("cleanup did not run");
  let value: T;
  try {
    value = await body(dir);
  } finally {
    removed = fromCommand(await io.run(["rm", "-rf", "--one-file-system", dir]), `rm -rf ${dir}`);
  }
  return { created, value, removed };
}
