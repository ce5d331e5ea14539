/** A failure the runtime reports to its caller: one line for log.json and stderr, non-zero exit. */
export class RuntimeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RuntimeError";
  }
}
