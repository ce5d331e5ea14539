/**
 * sandkube-proxy at work: two informers (Services, EndpointSlices) from the official client feed
 * a debounced sync of the ServiceProxy; /healthz says whether the first sync of both is done.
 */
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  makeInformer,
  type Informer,
  type KubernetesObject,
  type ObjectCache,
  type V1EndpointSlice,
  type V1Service,
} from "@kubernetes/client-node";
import { createServer, type Server } from "node:http";
import type { CommandRunner } from "../common/exec.js";
import { runCommand } from "../common/exec.js";
import { LinkAddresses } from "./addresses.js";
import type { ProxyArgs } from "./args.js";
import type { ServiceRule } from "./desired.js";
import { ServiceProxy } from "./proxier.js";

/**
 * How long a burst of watch events is gathered before one sync: a rollout changes a slice
 * several times within milliseconds. Well inside the 1 s the issue allows for an endpoint change.
 */
export const SYNC_DEBOUNCE_MS = 50;
/** A listener that could not bind (port taken) is tried again this often. */
const RETRY_FAILED_MS = 5000;
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 10_000;

export interface RunningProxy {
  /** The rules in force after the last sync: what the bench and tests inspect. */
  currentRules(): readonly ServiceRule[];
  /** True once both informers have listed and a sync has applied what they listed. */
  isSynced(): boolean;
  /** Resolves after the next sync that starts from now has been applied. */
  nextSync(): Promise<void>;
  readonly proxy: ServiceProxy;
  /** Stops watching, closes every socket and removes the addresses it added. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly log?: (line: string) => void;
  /** For tests running `ip` inside a network namespace they made. */
  readonly run?: CommandRunner;
}

type WatchedCache<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

interface Watched<T extends KubernetesObject> {
  readonly informer: WatchedCache<T>;
  listed: boolean;
}

/** One stderr line per event, timestamped: the supervisor keeps it as the component's log. */
export function logLine(line: string): void {
  process.stderr.write(`${new Date().toISOString()} sandkube-proxy: ${line}\n`);
}

export async function startServiceProxy(
  args: ProxyArgs,
  options: StartOptions = {},
): Promise<RunningProxy> {
  const log = options.log ?? logLine;
  const addresses = new LinkAddresses(args.link, args.serviceRange, options.run ?? runCommand);
  // Fails here, before anything is watched, when the link does not exist.
  await addresses.current();
  const proxy = new ServiceProxy({ addresses, log });

  const config = new KubeConfig();
  config.loadFromFile(args.kubeconfig);
  const core = config.makeApiClient(CoreV1Api);
  const discovery = config.makeApiClient(DiscoveryV1Api);

  let stopped = false;
  let synced = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let waiters: (() => void)[] = [];

  const watch = <T extends KubernetesObject>(
    what: string,
    path: string,
    list: () => Promise<{ items: T[] }>,
  ): Watched<T> => {
    const watched: Watched<T> = {
      listed: false,
      informer: makeInformer<T>(config, path, async () => {
        const result = await list();
        // The informer stores the list right after this resolves; the sync runs later.
        watched.listed = true;
        restartDelay = RESTART_MIN_MS;
        schedule();
        return result;
      }),
    };
    let restartDelay = RESTART_MIN_MS;
    watched.informer.on("change", () => schedule());
    // The informer does not restart itself after an error (client-node cache.js doneHandler).
    watched.informer.on("error", (error: unknown) => {
      if (stopped) return;
      log(
        `watch ${what}: ${(error as Error | undefined)?.message ?? "error"}; again in ${restartDelay} ms`,
      );
      setTimeout(() => {
        if (!stopped) void watched.informer.start();
      }, restartDelay).unref();
      restartDelay = Math.min(restartDelay * 2, RESTART_MAX_MS);
    });
    return watched;
  };

  const services = watch<V1Service>("services", "/api/v1/services", () =>
    core.listServiceForAllNamespaces(),
  );
  const slices = watch<V1EndpointSlice>(
    "endpointslices",
    "/apis/discovery.k8s.io/v1/endpointslices",
    () => discovery.listEndpointSliceForAllNamespaces(),
  );

  const syncOnce = async () => {
    const bothListed = services.listed && slices.listed;
    // Before both have listed, an empty list would mean "remove every Service": wait instead.
    if (!bothListed) return;
    const woken = waiters;
    waiters = [];
    const result = await proxy.sync(services.informer.list(), slices.informer.list());
    synced = true;
    for (const wake of woken) wake();
    if (result.failed.length > 0) schedule(RETRY_FAILED_MS);
  };

  function schedule(delay = SYNC_DEBOUNCE_MS): void {
    if (stopped) return;
    if (running !== undefined) {
      again = true;
      return;
    }
    if (timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      running = syncOnce()
        .catch((error: unknown) => {
          log(`sync failed: ${(error as Error).message}; trying again`);
          again = true;
        })
        .finally(() => {
          running = undefined;
          if (again) {
            again = false;
            schedule();
          }
        });
    }, delay);
  }

  void services.informer.start();
  void slices.informer.start();

  return {
    proxy,
    currentRules: () => proxy.currentRules(),
    isSynced: () => synced,
    nextSync: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        schedule();
      }),
    stop: async () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await services.informer.stop();
      await slices.informer.stop();
      await running;
      await proxy.shutdown();
      for (const wake of waiters) wake();
    },
  };
}

/** GET /healthz: 200 "ok" once synced, 503 before; GET /rules: the rules in force, as JSON. */
export function startHealthz(running: RunningProxy, host: string, port: number): Promise<Server> {
  const server = createServer((request, response) => {
    const path = (request.url ?? "").split("?")[0];
    if (path === "/healthz" || path === "/readyz") {
      const ok = running.isSynced();
      response.writeHead(ok ? 200 : 503, { "content-type": "text/plain" });
      response.end(ok ? "ok\n" : "waiting for the first sync of services and endpointslices\n");
    } else if (path === "/rules") {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(`${JSON.stringify(running.currentRules())}\n`);
    } else {
      response.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
