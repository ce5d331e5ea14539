import { loadContainer } from "./container.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";
import { START_SOCKET } from "./state-store.js";

export async function start(ctx: RuntimeContext, id: string): Promise<void> {
  await ctx.store.withLock(id, async () => {
    const c = loadContainer(ctx, id);
    if (c.status !== "created")
      throw new RuntimeError(
        `cannot start a container that is ${c.status}: only a created container can be started`,
      );
    let answer: string;
    try {
      answer = await ctx.sys.signalStart(c.dir, START_SOCKET);
    } catch (e) {
      throw new RuntimeError(
        `cannot start container ${id}: its init is not waiting (${(e as Error).message})`,
      );
    }
    // The init loads a no_new_privs seccomp filter after it is started, so its warnings come here.
    for (const w of answer.matchAll(/^warn (.*)$/gm)) ctx.log.warn(w[1] as string);
    const error = /^error (.*)$/m.exec(answer);
    if (error) throw new RuntimeError(error[1] as string);
  });
}
