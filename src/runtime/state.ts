import { loadContainer } from "./container.js";
import type { RuntimeContext } from "./context.js";

/** The OCI state of a container, as `runc state` prints it. */
export function stateJson(ctx: RuntimeContext, id: string): Record<string, unknown> {
  const c = loadContainer(ctx, id);
  const s = c.state;
  return {
    ociVersion: s.ociVersion,
    id: s.id,
    pid: c.status === "stopped" ? 0 : s.pid,
    status: c.status,
    bundle: s.bundle,
    rootfs: s.rootfs,
    created: s.created,
    ...(Object.keys(s.annotations).length > 0 ? { annotations: s.annotations } : {}),
    owner: s.owner,
  };
}

export function state(ctx: RuntimeContext, id: string): void {
  ctx.print(`${JSON.stringify(stateJson(ctx, id), null, 2)}\n`);
}
