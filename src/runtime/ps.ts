import { containerPids, loadContainer } from "./container.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";

export function ps(ctx: RuntimeContext, id: string, format: string): void {
  const c = loadContainer(ctx, id);
  const pids = c.status === "stopped" ? [] : containerPids(ctx, c.state);
  if (format === "json") ctx.print(`${JSON.stringify(pids)}\n`);
  else if (format === "table") ctx.print(`PID\n${pids.map((p) => `${p}\n`).join("")}`);
  else throw new RuntimeError(`ps --format must be "json" or "table", not "${format}"`);
}
