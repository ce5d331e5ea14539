import { applyResources } from "./cgroups.js";
import { loadContainer } from "./container.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";
import type { OciResources } from "./spec.js";

/** `update --resources=- ID`: OCI LinuxResources JSON on stdin (or in a file). */
export async function update(
  ctx: RuntimeContext,
  id: string,
  resourcesFrom: string | undefined,
): Promise<void> {
  if (resourcesFrom === undefined)
    throw new RuntimeError(
      "update needs --resources FILE (or - for stdin); single-value flags are not supported",
    );
  const text = resourcesFrom === "-" ? ctx.sys.readStdin() : ctx.sys.readFile(resourcesFrom);
  let resources: OciResources;
  try {
    resources = JSON.parse(text) as OciResources;
  } catch (e) {
    throw new RuntimeError(`--resources: not valid JSON: ${(e as Error).message}`);
  }
  await ctx.store.withLock(id, async () => {
    const c = loadContainer(ctx, id);
    if (c.status === "stopped") throw new RuntimeError("container not running");
    applyResources(ctx.sys, c.state.cgroups, resources).forEach((w) => ctx.log.warn(w));
  });
}
