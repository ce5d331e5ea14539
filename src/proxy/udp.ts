/**
 * A UDP Service port. Each client address gets a session: its own socket toward one backend,
 * chosen round-robin, closed after an idle time. Replies leave from the Service's socket, so the
 * client sees them come from the address and port it sent to (the cluster IP), as it would
 * through kube-proxy's DNAT.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { sameBackends, type Backend } from "./desired.js";
import { RoundRobin, type ListenerOptions, type ServiceListener } from "./tcp.js";

export interface UdpListenerOptions extends ListenerOptions {
  /**
   * A session with no datagram either way for this long is closed. kube-proxy's UDP flows live
   * as long as the kernel's conntrack entry: nf_conntrack_udp_timeout, 30 s by default.
   */
  readonly idleTimeoutMs?: number;
  /** Sessions beyond this close the least recently opened one (each session is a socket). */
  readonly maxSessions?: number;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_SESSIONS = 1024;

interface Session {
  readonly backend: Backend;
  readonly socket: Socket;
  readonly idle: NodeJS.Timeout;
}

export async function openUdpListener(
  host: string,
  port: number,
  initial: readonly Backend[],
  options: UdpListenerOptions,
): Promise<ServiceListener> {
  const backends = new RoundRobin(initial);
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  const sessions = new Map<string, Session>();
  const where = `UDP ${host}:${port}`;
  // One line per stretch without endpoints, not one per dropped datagram.
  let reportedNoEndpoint = false;

  const service = createSocket({ type: "udp4" });

  const end = (key: string) => {
    const session = sessions.get(key);
    if (session === undefined) return;
    sessions.delete(key);
    clearTimeout(session.idle);
    session.socket.close();
  };

  const open = (client: RemoteInfo, key: string): Session | undefined => {
    const [backend] = backends.pick(1);
    if (backend === undefined) {
      if (!reportedNoEndpoint) options.log(`${where}: no ready endpoint; datagrams dropped`);
      reportedNoEndpoint = true;
      return undefined;
    }
    if (sessions.size >= maxSessions) {
      const oldest = sessions.keys().next();
      if (oldest.done !== true) end(oldest.value);
    }
    const socket = createSocket({ type: "udp4" });
    const idle = setTimeout(() => end(key), idleTimeoutMs);
    idle.unref();
    const session: Session = { backend, socket, idle };
    socket.on("error", (error) => {
      options.log(`${where}: session ${key} -> ${backend.ip}:${backend.port}: ${error.message}`);
      end(key);
    });
    socket.on("message", (reply, from) => {
      // The session's socket has an ephemeral port anyone may send to: only the backend counts.
      if (from.address !== backend.ip || from.port !== backend.port) return;
      idle.refresh();
      service.send(reply, client.port, client.address);
    });
    sessions.set(key, session);
    return session;
  };

  service.on("message", (datagram, client) => {
    const key = `${client.address}:${client.port}`;
    const session = sessions.get(key) ?? open(client, key);
    if (session === undefined) return;
    session.idle.refresh();
    session.socket.send(datagram, session.backend.port, session.backend.ip);
  });

  await new Promise<void>((resolve, reject) => {
    service.once("error", (error) => {
      service.close();
      reject(error);
    });
    service.bind({ address: host, port, exclusive: true }, () => {
      service.removeAllListeners("error");
      resolve();
    });
  });
  service.on("error", (error) => options.log(`${where}: ${error.message}`));

  return {
    host,
    port,
    backends: () => backends.current(),
    setBackends: (list) => {
      if (sameBackends(backends.current(), list)) return;
      backends.replace(list);
      if (list.length > 0) reportedNoEndpoint = false;
      // kube-proxy clears the conntrack entries of a removed UDP endpoint for the same reason:
      // a session would otherwise keep sending into a pod that is gone.
      const kept = new Set(list.map((backend) => `${backend.ip}:${backend.port}`));
      for (const [key, session] of sessions) {
        if (!kept.has(`${session.backend.ip}:${session.backend.port}`)) end(key);
      }
    },
    activeCount: () => sessions.size,
    close: async () => {
      // A UDP session has no connection to keep: closing the Service's socket ends them all.
      for (const key of [...sessions.keys()]) end(key);
      await new Promise<void>((resolve) => service.close(() => resolve()));
    },
  };
}
