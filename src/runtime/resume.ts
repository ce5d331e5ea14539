import type { RuntimeContext } from "./context.js";
import { setFrozen } from "./pause.js";

export const resume = (ctx: RuntimeContext, id: string): Promise<void> => setFrozen(ctx, id, false);
