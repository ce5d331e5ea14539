/**
 * `node dist/src/proxy/main.js --kubeconfig FILE [--link sandkube0] [--service-cidr 10.96.0.0/16]
 * [--healthz 127.0.0.1:10256]`: sandkube-proxy, the Service data path where kube-proxy cannot
 * program one (docs/service-proxy.md). Runs until SIGTERM or SIGINT, then closes its sockets and
 * removes the addresses it added. Exit status 2 on bad usage, 1 on any other failure to start.
 */
import { existsSync } from "node:fs";
import { UsageError } from "../cli/usage-error.js";
import { CommandFailedError } from "../common/exec.js";
import { parseProxyArgs } from "./args.js";
import { logLine as log, startHealthz, startServiceProxy } from "./run.js";

async function main(argv: readonly string[]): Promise<void> {
  const args = parseProxyArgs(argv);
  if (!existsSync(args.kubeconfig)) {
    throw new UsageError(`sandkube-proxy: kubeconfig ${args.kubeconfig} does not exist.`);
  }
  let running;
  try {
    running = await startServiceProxy(args, { log });
  } catch (error) {
    if (error instanceof CommandFailedError) {
      throw new UsageError(
        `sandkube-proxy: --link ${args.link}: ${error.result.stderr.trim() || error.message}; pass the link that holds the node address.`,
      );
    }
    throw error;
  }
  const healthz = await startHealthz(running, args.healthz.host, args.healthz.port);
  log(
    `watching services and endpointslices; cluster IPs from ${args.serviceCIDR} go on ${args.link}; healthz on http://${args.healthz.host}:${args.healthz.port}/healthz`,
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: closing listeners and removing service addresses`);
    healthz.close();
    running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log(`shutdown: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(error.exitCode);
  }
  process.stderr.write(`sandkube-proxy: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
