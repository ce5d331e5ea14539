/**
 * create/start/wait/delete of a busybox container, sandkube-runtime and runc alternating on the
 * same bundle. Reports medians, the ratio sandkube/runc and each command's peak RSS.
 */
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { labBinary } from "../lab/paths.js";
import { HELPER, makeLab, REPO, skipReason, type Lab } from "../test/host/runtime-support.js";

const COMMANDS = ["create", "start", "wait", "delete"] as const;
type Command = (typeof COMMANDS)[number];

interface Contender {
  readonly name: "sandkube" | "runc";
  readonly binary: string;
  readonly root: string;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

/**
 * Runs one runtime command; with `measureRss`, under GNU time to read the peak RSS (KiB). stderr
 * goes to a file: the container inherits it, and a pipe would stay open as long as the container.
 */
function run(
  c: Contender,
  lab: Lab,
  args: readonly string[],
  measureRss: boolean,
): { ms: number; rssKb?: number } {
  const argv = [c.binary, "--root", c.root, ...args];
  const errFile = join(lab.dir, "bench.err");
  const err = openSync(errFile, "w");
  const options = {
    stdio: ["ignore", "ignore", err] as ["ignore", "ignore", number],
    env: { ...process.env, SANDKUBE_INIT: HELPER },
  };
  const t0 = process.hrtime.bigint();
  const r = measureRss
    ? spawnSync("/usr/bin/time", ["-f", "%M", ...argv], options)
    : spawnSync(argv[0] as string, argv.slice(1), options);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  closeSync(err);
  const stderr = readFileSync(errFile, "utf8");
  if (r.status !== 0) throw new Error(`${c.name} ${args.join(" ")} failed: ${stderr.trim()}`);
  if (!measureRss) return { ms };
  const rss = Number(stderr.trim().split("\n").at(-1));
  return { ms, ...(Number.isFinite(rss) ? { rssKb: rss } : {}) };
}

/** The init is not our child: it exits and is reaped by pid 1; we watch /proc. */
function waitGone(pid: number): void {
  for (;;) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      return;
    }
    if (/\) [ZX] /.test(stat)) return;
    spawnSync("sleep", ["0.001"]);
  }
}

function cycle(
  c: Contender,
  lab: Lab,
  id: string,
  measureRss: boolean,
): Record<Command, { ms: number; rssKb?: number }> {
  const pidFile = join(lab.dir, `${id}.pid`);
  const create = run(
    c,
    lab,
    ["create", "--bundle", lab.bundle, "--pid-file", pidFile, id],
    measureRss,
  );
  const pid = Number(readFileSync(pidFile, "utf8"));
  const start = run(c, lab, ["start", id], measureRss);
  const t0 = process.hrtime.bigint();
  waitGone(pid);
  const wait = { ms: Number(process.hrtime.bigint() - t0) / 1e6 };
  const del = run(c, lab, ["delete", id], measureRss);
  return { create, start, wait, delete: del };
}

export async function runtimeBench(args: readonly string[]): Promise<number> {
  const json = args.includes("--json");
  const iterations = Number(args.find((a) => a.startsWith("--iterations="))?.split("=")[1] ?? "20");
  const reason = skipReason();
  if (reason) throw new Error(reason.replace(/^SKIPPED: /, "cannot run the runtime benchmark: "));
  const sandkube = process.env["SANDKUBE_RUNTIME"] ?? join(REPO, "dist/bin/sandkube-runtime");
  if (!existsSync(sandkube)) throw new Error(`${sandkube} is missing: run npm run build:runtime`);
  const runc = [labBinary("runc"), "/usr/sbin/runc", "/usr/bin/runc"].find((p) => existsSync(p));
  if (runc === undefined)
    throw new Error("no runc: build the lab (npm run lab:build) or apt-get install runc");

  const lab = makeLab();
  try {
    lab.writeConfig({ args: ["true"] });
    const contenders: Contender[] = [
      { name: "sandkube", binary: sandkube, root: join(lab.dir, "state-sandkube") },
      { name: "runc", binary: runc, root: join(lab.dir, "state-runc") },
    ];
    const totals: Record<string, number[]> = { sandkube: [], runc: [] };
    const perCommand: Record<string, Record<Command, number[]>> = {};
    const rss: Record<string, Partial<Record<Command, number>>> = { sandkube: {}, runc: {} };
    for (const c of contenders)
      perCommand[c.name] = { create: [], start: [], wait: [], delete: [] };
    // One warm-up cycle each (page cache), then alternate so drift hits both alike.
    for (const c of contenders) cycle(c, lab, `warm-${c.name}`, false);
    for (let i = 0; i < iterations; i++) {
      for (const c of i % 2 === 0 ? contenders : [...contenders].reverse()) {
        const r = cycle(c, lab, `b${i}-${c.name}`, false);
        let total = 0;
        for (const cmd of COMMANDS) {
          (perCommand[c.name] as Record<Command, number[]>)[cmd].push(r[cmd].ms);
          total += r[cmd].ms;
        }
        (totals[c.name] as number[]).push(total);
      }
    }
    for (const c of contenders) {
      const r = cycle(c, lab, `rss-${c.name}`, true);
      for (const cmd of COMMANDS)
        if (r[cmd].rssKb !== undefined)
          (rss[c.name] as Partial<Record<Command, number>>)[cmd] = r[cmd].rssKb;
    }
    const med = {
      sandkube: round(median(totals["sandkube"] as number[])),
      runc: round(median(totals["runc"] as number[])),
    };
    const result = {
      median_ms: med,
      ratio: round(med.sandkube / med.runc),
      per_command_median_ms: Object.fromEntries(
        Object.entries(perCommand).map(([name, cmds]) => [
          name,
          Object.fromEntries(COMMANDS.map((cmd) => [cmd, round(median(cmds[cmd]))])),
        ]),
      ),
      peak_rss_kb: rss,
      iterations,
      runc,
      sandkube,
    };
    if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      process.stdout.write(
        `runtime cycle (create, start, wait, delete of busybox \`true\`), ${iterations} iterations each, alternating\n`,
      );
      process.stdout.write(
        `${"".padEnd(10)}${["total", ...COMMANDS].map((h) => h.padStart(10)).join("")}   peak RSS KiB (create/start/delete)\n`,
      );
      for (const c of contenders) {
        const pc = result.per_command_median_ms[c.name] as Record<string, number>;
        const r = rss[c.name] as Partial<Record<Command, number>>;
        process.stdout.write(
          `${c.name.padEnd(10)}${[med[c.name], ...COMMANDS.map((cmd) => pc[cmd] as number)].map((v) => v.toFixed(1).padStart(10)).join("")}   ${r.create ?? "?"}/${r.start ?? "?"}/${r.delete ?? "?"}\n`,
        );
      }
      process.stdout.write(`ratio sandkube/runc: ${result.ratio}\n`);
    }
    return 0;
  } finally {
    lab.cleanup();
  }
}
