import type { RuntimeContext } from "./context.js";
import { encodeInstructions } from "./instructions.js";
import { planReleaseSharedMounts } from "./rootfs/shared-mounts.js";

/**
 * Unmounts what a container's init mounted in a shared mount table (kernels without mount
 * namespaces), through the helper, since unmounting is a system call the runtime's engine lacks.
 */
export async function releaseSharedMounts(
  ctx: RuntimeContext,
  rootfs: string,
  stateDir: string,
  rootfsDepth: number,
): Promise<void> {
  const plan = planReleaseSharedMounts(
    ctx.sys.readFile("/proc/self/mountinfo"),
    rootfs,
    stateDir,
    rootfsDepth,
  );
  if (plan.length <= 1) return;
  const file = `${stateDir}/umount-${String(ctx.sys.pid())}.instructions`;
  ctx.sys.writeFile(file, encodeInstructions(plan), 0o600);
  try {
    const report = await ctx.sys.runHelper({
      helperPath: ctx.helperPath,
      instructionFile: file,
      preserveFds: 0,
    });
    report.warnings.forEach((w) => ctx.log.warn(w));
    if (report.error !== undefined)
      ctx.log.warn(`unmounting the container's mounts: ${report.error}`);
  } finally {
    ctx.sys.unlink(file);
  }
}
