/**
 * kind-style progress: one line per step, "•" when it starts and "✓"/"✗" when it ends. On a TTY
 * the start line is rewritten in place; elsewhere (CI logs, pipes) both lines are printed.
 */
export interface Progress {
  step<T>(title: string, work: () => Promise<T>): Promise<T>;
  note(line: string): void;
}

export function progressTo(stream: NodeJS.WriteStream, enabled = true): Progress {
  const tty = stream.isTTY === true;
  const write = (text: string) => {
    if (enabled) stream.write(text);
  };
  return {
    async step(title, work) {
      const started = Date.now();
      write(tty ? ` • ${title} ...` : ` • ${title}\n`);
      const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
      try {
        const result = await work();
        write(`${tty ? "\r\x1b[2K" : ""} ✓ ${title} (${elapsed()})\n`);
        return result;
      } catch (error) {
        write(`${tty ? "\r\x1b[2K" : ""} ✗ ${title} (${elapsed()})\n`);
        throw error;
      }
    },
    note(line) {
      write(`${line}\n`);
    },
  };
}
