#!/usr/bin/env node
/**
 * `npm run bench -- NAME [--json] [--gvisor[=new|old]]`: runs one side-by-side benchmark by name, on
 * the host kernel or, with --gvisor, inside a lab runsc sandbox.
 */
import { runInGvisor } from "../lab/gvisor-run.js";
import { runtimeBench } from "./runtime.js";

const BENCHES: Readonly<Record<string, (args: readonly string[]) => Promise<number>>> = {
  runtime: runtimeBench,
  // Loaded on demand: it pulls in the whole node (src/node), which the runtime bench does not need.
  cluster: async (args) => (await import("./cluster.js")).clusterBench(args),
  services: async (args) => (await import("./services.js")).servicesBench(args),
  pull: async (args) => (await import("./pull.js")).pullBench(args),
};

/** Benchmarks that put the host kernel and gVisor side by side themselves read --gvisor. */
const SIDE_BY_SIDE: ReadonlySet<string> = new Set(["cluster", "services", "pull"]);

/**
 * Runs this same benchmark inside runsc. gVisor mounts no cgroups, and runc refuses to run without
 * them ("no cgroup mount found in mountinfo", docs/gvisor-blockers.md B12), so the v1 controllers
 * are mounted first, the way the lab scenarios do.
 */
async function inGvisor(flavour: "new" | "old", name: string, rest: string[]): Promise<number> {
  const inner = ["node", "dist/bench/main.js", name, ...rest].map((a) => `'${a}'`).join(" ");
  const result = await runInGvisor(
    {
      runsc: flavour,
      timeoutSeconds: 900,
      network: "none",
      outDir: undefined,
      debug: false,
      command: [
        "sh",
        "-c",
        `. lab/gvisor-scenarios/lib.sh && mount_cgroups_v1 >/dev/null && exec ${inner}`,
      ],
    },
    { capture: false, echo: true },
  );
  return result.exitCode;
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  const bench = name === undefined ? undefined : BENCHES[name];
  if (name === undefined || bench === undefined) {
    process.stderr.write(
      `usage: npm run bench -- NAME [--json] [--gvisor[=new|old]]\nbenchmarks: ${Object.keys(BENCHES).join(", ")}\n`,
    );
    return 2;
  }
  const gvisorFlag = rest.find((a) => a === "--gvisor" || a.startsWith("--gvisor="));
  if (gvisorFlag !== undefined && !SIDE_BY_SIDE.has(name)) {
    const flavour = gvisorFlag === "--gvisor" ? "new" : gvisorFlag.slice("--gvisor=".length);
    if (flavour !== "new" && flavour !== "old") {
      process.stderr.write(`bench: --gvisor takes new or old, not "${flavour}"\n`);
      return 2;
    }
    return inGvisor(
      flavour,
      name,
      rest.filter((a) => a !== gvisorFlag),
    );
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
