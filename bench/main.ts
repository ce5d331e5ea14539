#!/usr/bin/env node
/** `npm run bench -- NAME [--json]`: runs one side-by-side benchmark by name. */
import { runtimeBench } from "./runtime.js";

const BENCHES: Readonly<Record<string, (args: readonly string[]) => Promise<number>>> = {
  runtime: runtimeBench,
};

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  const bench = name === undefined ? undefined : BENCHES[name];
  if (bench === undefined) {
    process.stderr.write(
      `usage: npm run bench -- NAME [--json]\nbenchmarks: ${Object.keys(BENCHES).join(", ")}\n`,
    );
    return 2;
  }
  return bench(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
