/**
 * A TCP Service port: accepts on one address and port and splices each connection to a ready
 * backend, round-robin. The backend list is swapped in place, so a change elsewhere in the
 * Service never touches a connection already spliced.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import type { Backend } from "./desired.js";

export interface ListenerOptions {
  /** Where problems go: one line each, never an exception out of a socket callback. */
  readonly log: (line: string) => void;
}

export interface TcpListenerOptions extends ListenerOptions {
  /** How many backends one connection may try before it is given up. */
  readonly maxAttempts?: number;
  /** How long one backend may take to accept, in milliseconds. */
  readonly connectTimeoutMs?: number;
}

export interface ServiceListener {
  readonly host: string;
  readonly port: number;
  backends(): readonly Backend[];
  setBackends(backends: readonly Backend[]): void;
  /** Connections (TCP) or client sessions (UDP) open now. */
  activeCount(): number;
  /**
   * Stops accepting. Open connections stay unless `dropActive`: a deleted Service's established
   * flows live on under kube-proxy's iptables mode too (conntrack), until shutdown.
   */
  close(dropActive: boolean): Promise<void>;
}

const DEFAULT_MAX_ATTEMPTS = 3;
const DEFAULT_CONNECT_TIMEOUT_MS = 2000;

/** Round-robin over a list that may be replaced at any time. */
export class RoundRobin {
  private list: readonly Backend[] = [];
  private next = 0;

  constructor(backends: readonly Backend[]) {
    this.replace(backends);
  }

  replace(backends: readonly Backend[]): void {
    this.list = [...backends];
    this.next = this.list.length === 0 ? 0 : this.next % this.list.length;
  }

  current(): readonly Backend[] {
    return this.list;
  }

  /** The next `count` distinct backends, starting where the last pick stopped. */
  pick(count: number): Backend[] {
    const n = Math.min(count, this.list.length);
    const picked: Backend[] = [];
    for (let i = 0; i < n; i++)
      picked.push(this.list[(this.next + i) % this.list.length] as Backend);
    if (this.list.length > 0) this.next = (this.next + 1) % this.list.length;
    return picked;
  }
}

function connectTo(backend: Backend, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Nagle's algorithm on a relay holds each small write until the peer's delayed ACK (40 ms):
    // both sides forward at once, as kube-proxy's kernel path does.
    const socket = connect({
      host: backend.ip,
      port: backend.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to ${backend.ip}:${backend.port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}

/** Joins two sockets both ways; either side's error or reset ends both, quietly. */
function splice(client: Socket, backend: Socket): void {
  const fail = (other: Socket) => () => {
    // A reset on one side becomes a reset on the other, as it would through a NAT.
    if (!other.destroyed) other.resetAndDestroy();
  };
  // A side that closed without an error while the other still had its write half open was
  // destroyed locally: the other goes too. A normal close has already ended both halves, and
  // destroying then would drop bytes still queued, so it is left to finish.
  const follow = (other: Socket) => () => {
    if (!other.destroyed && !other.writableEnded) other.destroy();
  };
  client.on("error", fail(backend));
  backend.on("error", fail(client));
  client.once("close", follow(backend));
  backend.once("close", follow(client));
  client.pipe(backend);
  backend.pipe(client);
}

export async function openTcpListener(
  host: string,
  port: number,
  initial: readonly Backend[],
  options: TcpListenerOptions,
): Promise<ServiceListener> {
  const backends = new RoundRobin(initial);
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  /** Each client connection and, once chosen, its backend connection. */
  const active = new Map<Socket, Socket | undefined>();
  const where = `TCP ${host}:${port}`;

  const handle = async (client: Socket) => {
    active.set(client, undefined);
    client.once("close", () => active.delete(client));
    // Until a backend is chosen, a client's reset must not be an uncaught error.
    const early = () => undefined;
    client.on("error", early);
    const candidates = backends.pick(maxAttempts);
    const failures: string[] = [];
    for (const backend of candidates) {
      if (client.destroyed) return;
      try {
        const upstream = await connectTo(backend, timeoutMs);
        if (client.destroyed) {
          upstream.destroy();
          return;
        }
        active.set(client, upstream);
        client.off("error", early);
        splice(client, upstream);
        client.resume();
        return;
      } catch (error) {
        failures.push(`${backend.ip}:${backend.port}: ${(error as Error).message}`);
      }
    }
    options.log(
      candidates.length === 0
        ? `${where}: no ready endpoint; connection refused`
        : `${where}: no endpoint accepted (${failures.join("; ")})`,
    );
    // The client sees a reset, as with kube-proxy's REJECT for a Service without endpoints.
    client.resetAndDestroy();
  };

  const server: Server = createServer(
    { allowHalfOpen: true, pauseOnConnect: true, noDelay: true },
    (client) => {
      handle(client).catch((error: unknown) => {
        options.log(`${where}: ${(error as Error).message}`);
        client.destroy();
      });
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, backlog: 511 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) => options.log(`${where}: ${error.message}`));

  return {
    host,
    port,
    backends: () => backends.current(),
    setBackends: (list) => backends.replace(list),
    activeCount: () => active.size,
    close: async (dropActive) => {
      // close()'s callback waits for every connection to end; the port itself is released now.
      server.close();
      if (dropActive) {
        for (const [client, upstream] of active) {
          upstream?.destroy();
          client.destroy();
        }
      }
    },
  };
}
