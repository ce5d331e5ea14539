/**
 * `node dist/src/verify/main.js --kubeconfig FILE [--kubectl PATH] [--timeout SECONDS]
 * [--image REF] [--json]`: runs the verify workload against a cluster and says what worked. A
 * separate entry point so the `up` tests can run it where the cluster lives, inside runsc too.
 * Exit status 0 when every check passed, 1 when one failed, 2 on bad usage.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { UsageError } from "../cli/usage-error.js";
import { formatReport, runWorkloadChecks } from "./checks.js";
import { DEFAULT_VERIFY_IMAGE } from "./workload.js";

const USAGE =
  "usage: node dist/src/verify/main.js --kubeconfig FILE [--kubectl PATH] [--timeout SECONDS] [--image REF] [--json]";

interface VerifyArgs {
  readonly kubeconfig: string;
  readonly kubectl: string;
  readonly timeoutMs: number;
  readonly image: string;
  readonly json: boolean;
}

export function parseVerifyArgs(argv: readonly string[]): VerifyArgs {
  let kubeconfig: string | undefined;
  let kubectl = "kubectl";
  let timeoutSeconds = 180;
  let image = DEFAULT_VERIFY_IMAGE;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const value = (): string => {
      const v = eq === -1 ? argv[++i] : arg.slice(eq + 1);
      if (v === undefined || v === "")
        throw new UsageError(`verify: ${flag} needs a value. ${USAGE}`);
      return v;
    };
    if (flag === "--kubeconfig") kubeconfig = resolve(value());
    else if (flag === "--kubectl") kubectl = value();
    else if (flag === "--image") image = value();
    else if (flag === "--json") json = true;
    else if (flag === "--timeout") {
      const v = value();
      timeoutSeconds = Number(v);
      if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) {
        throw new UsageError(`verify: --timeout takes a positive number of seconds, not "${v}".`);
      }
    } else throw new UsageError(`verify: unknown option "${arg}". ${USAGE}`);
  }
  if (kubeconfig === undefined)
    throw new UsageError(`verify: --kubeconfig FILE is required. ${USAGE}`);
  if (!existsSync(kubeconfig)) {
    throw new UsageError(
      `verify: kubeconfig ${kubeconfig} does not exist; pass the one "sandkube up" printed.`,
    );
  }
  return { kubeconfig, kubectl, timeoutMs: timeoutSeconds * 1000, image, json };
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseVerifyArgs(argv);
  const report = await runWorkloadChecks({
    kubectl: args.kubectl,
    kubeconfig: args.kubeconfig,
    timeoutMs: args.timeoutMs,
    image: args.image,
    onResult: (r) =>
      process.stderr.write(
        `verify: ${r.ok ? "ok" : "FAIL"} ${r.id} (${(r.durationMs / 1000).toFixed(1)} s)\n`,
      ),
  });
  process.stdout.write(args.json ? `${JSON.stringify(report)}\n` : formatReport(report));
  return report.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(
      `verify: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
