import assert from "node:assert/strict";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { test, type TestContext } from "node:test";
import type { Backend } from "../../src/proxy/desired.js";
import { openTcpListener, type ServiceListener } from "../../src/proxy/tcp.js";
import { openUdpListener } from "../../src/proxy/udp.js";

// sandkube-proxy's data plane with real sockets on this kernel. The backends are real servers on
// loopback addresses of their own (all of 127.0.0.0/8 is local on Linux), the Service socket is
// on another one, and every byte goes through the proxy: nothing leaves loopback.

const SERVICE_IP = "127.0.0.2";
const BACKEND_IPS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];

/** A backend that greets each connection with its address, then echoes. */
async function tcpBackend(
  t: TestContext,
  ip: string,
  port = 0,
): Promise<Server & { port: number }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.write(`${ip}\n`);
    socket.pipe(socket);
  });
  server.listen(port, ip);
  await once(server, "listening");
  const address = server.address();
  assert.ok(typeof address === "object" && address !== null);
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return Object.assign(server, { port: address.port });
}

/** A port free on every address the test uses, found by letting the kernel pick one. */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  assert.ok(typeof address === "object" && address !== null);
  server.close();
  return address.port;
}

interface Conversation {
  readonly socket: Socket;
  /** The backend's greeting: which backend this connection reached. */
  readonly backend: string;
  /** Sends a line and resolves with the echoed line. */
  say(line: string): Promise<string>;
}

function lines(socket: Socket): () => Promise<string> {
  let buffer = "";
  const waiting: ((line: string) => void)[] = [];
  const ready: string[] = [];
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    let newline = buffer.indexOf("\n");
    while (newline !== -1) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      const waiter = waiting.shift();
      if (waiter) waiter(line);
      else ready.push(line);
      newline = buffer.indexOf("\n");
    }
  });
  return () => {
    const line = ready.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve, reject) => {
      waiting.push(resolve);
      socket.once("close", () => reject(new Error("connection closed before a line came")));
      socket.once("error", reject);
    });
  };
}

async function converse(port: number, host = SERVICE_IP): Promise<Conversation> {
  const socket = connect({ host, port });
  await once(socket, "connect");
  const next = lines(socket);
  const backend = await next();
  return {
    socket,
    backend,
    say: async (line) => {
      socket.write(`${line}\n`);
      return next();
    },
  };
}

/** One short request: connect, read the greeting, close. Returns which backend answered. */
async function request(port: number): Promise<string> {
  const conversation = await converse(port);
  const echo = await conversation.say("ping");
  assert.equal(echo, "ping");
  conversation.socket.end();
  return conversation.backend;
}

async function tcpService(
  t: TestContext,
  backends: readonly Backend[],
  log: string[] = [],
): Promise<ServiceListener> {
  const listener = await openTcpListener(SERVICE_IP, await freePort(), backends, {
    log: (line) => log.push(line),
    connectTimeoutMs: 2000,
  });
  t.after(() => listener.close(true));
  return listener;
}

test("300 connections through a TCP Service port are spread round-robin over 3 backends", async (t) => {
  const port = await freePort();
  for (const ip of BACKEND_IPS) await tcpBackend(t, ip, port);
  const listener = await tcpService(
    t,
    BACKEND_IPS.map((ip) => ({ ip, port })),
  );
  const answered = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const backend = await request(listener.port);
    answered.set(backend, (answered.get(backend) ?? 0) + 1);
  }
  assert.deepEqual(
    Object.fromEntries(answered),
    Object.fromEntries(BACKEND_IPS.map((ip) => [ip, 100])),
  );
});

test("a backend that refuses is skipped: the connection goes to the next one", async (t) => {
  const live = await tcpBackend(t, BACKEND_IPS[0] as string);
  // Nothing listens on 127.0.0.14:<live.port>: a connect there is refused at once.
  const log: string[] = [];
  const listener = await tcpService(
    t,
    [
      { ip: BACKEND_IPS[0] as string, port: live.port },
      { ip: "127.0.0.14", port: live.port },
    ],
    log,
  );
  for (let i = 0; i < 20; i++) assert.equal(await request(listener.port), BACKEND_IPS[0]);

  // With no backend accepting, the client is turned away and the proxy says why.
  listener.setBackends([{ ip: "127.0.0.14", port: live.port }]);
  await assert.rejects(converse(listener.port));
  listener.setBackends([]);
  await assert.rejects(converse(listener.port));
  assert.ok(
    log.some((line) => /no endpoint accepted \(127\.0\.0\.14:\d+: connect ECONNREFUSED/.test(line)),
    log.join("\n"),
  );
  assert.ok(
    log.some((line) => /no ready endpoint/.test(line)),
    log.join("\n"),
  );
});

test("removing a backend keeps open connections; afterwards no request fails or reaches it", async (t) => {
  const port = await freePort();
  const servers = new Map<string, Server>();
  for (const ip of BACKEND_IPS) servers.set(ip, await tcpBackend(t, ip, port));
  const all = BACKEND_IPS.map((ip) => ({ ip, port }));
  const listener = await tcpService(t, all);

  // One long-lived connection to each backend.
  const open: Conversation[] = [];
  for (let i = 0; i < 3; i++) open.push(await converse(listener.port));
  assert.deepEqual(open.map((c) => c.backend).sort(), BACKEND_IPS);
  const [kept, removedConversation] = open as [Conversation, Conversation, Conversation];
  const removed = removedConversation.backend;

  // Requests keep flowing while the endpoint update lands.
  let stop = false;
  const during: Promise<string[]> = (async () => {
    const seen: string[] = [];
    while (!stop) seen.push(await request(listener.port));
    return seen;
  })();
  await new Promise((resolve) => setTimeout(resolve, 50));
  listener.setBackends(all.filter((b) => b.ip !== removed));
  await new Promise((resolve) => setTimeout(resolve, 50));
  stop = true;
  assert.ok((await during).length > 0);

  assert.equal(await kept.say("still here"), "still here");
  // The removed endpoint's own open connection is not cut by the proxy either (as with
  // conntrack under kube-proxy); the pod going away is what ends it.
  assert.equal(await removedConversation.say("me too"), "me too");

  // The removed pod goes away; every later request reaches one of the other two.
  servers.get(removed)?.close();
  removedConversation.socket.destroy();
  const after = new Map<string, number>();
  for (let i = 0; i < 100; i++) {
    const backend = await request(listener.port);
    after.set(backend, (after.get(backend) ?? 0) + 1);
  }
  assert.deepEqual(
    [...after.keys()].sort(),
    BACKEND_IPS.filter((ip) => ip !== removed),
  );
  assert.equal(await kept.say("and now"), "and now");
  assert.equal(listener.activeCount(), 2, "the two long-lived connections are still counted");
  for (const c of open) c.socket.destroy();
});

test("a reset from either side ends the pair and the listener carries on", async (t) => {
  const resetting = createServer((socket) => socket.resetAndDestroy());
  resetting.listen(0, BACKEND_IPS[1]);
  await once(resetting, "listening");
  t.after(() => resetting.close());
  const address = resetting.address();
  assert.ok(typeof address === "object" && address !== null);
  const echo = await tcpBackend(t, BACKEND_IPS[0] as string);

  const listener = await tcpService(t, [{ ip: BACKEND_IPS[1] as string, port: address.port }]);
  const client = connect({ host: SERVICE_IP, port: listener.port });
  const errors: NodeJS.ErrnoException[] = [];
  client.on("error", (error) => errors.push(error));
  // Not events.once: it rejects on the very "error" this test expects.
  await new Promise((resolve) => client.once("close", resolve));
  assert.equal(errors[0]?.code, "ECONNRESET", "the backend's reset reaches the client as a reset");

  // A client that resets mid-conversation: the proxy neither crashes nor leaks the pair.
  listener.setBackends([{ ip: BACKEND_IPS[0] as string, port: echo.port }]);
  const conversation = await converse(listener.port);
  assert.equal(await conversation.say("hello"), "hello");
  conversation.socket.resetAndDestroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(await request(listener.port), BACKEND_IPS[0]);
});

/** A UDP backend that answers "<its address>:<datagram>". */
async function udpBackend(t: TestContext, ip: string): Promise<number> {
  const socket = createSocket("udp4");
  socket.on("message", (message, from) => socket.send(`${ip}:${message}`, from.port, from.address));
  socket.bind(0, ip);
  await once(socket, "listening");
  t.after(() => socket.close());
  return socket.address().port;
}

async function udpClient(t: TestContext): Promise<UdpSocket> {
  const socket = createSocket("udp4");
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  t.after(() => socket.close());
  return socket;
}

/** Sends one datagram and resolves with the reply and where it came from. */
async function roundTrip(
  client: UdpSocket,
  port: number,
  text: string,
): Promise<{ reply: string; from: string }> {
  const reply = once(client, "message", { signal: AbortSignal.timeout(5000) });
  client.send(text, port, SERVICE_IP);
  const [message, from] = (await reply) as [Buffer, { address: string; port: number }];
  return { reply: message.toString(), from: `${from.address}:${from.port}` };
}

test("UDP: a round trip through the Service port, replies from the Service address, one backend per client", async (t) => {
  const ports = [
    await udpBackend(t, BACKEND_IPS[0] as string),
    await udpBackend(t, BACKEND_IPS[1] as string),
  ];
  const backends = [0, 1].map((i) => ({ ip: BACKEND_IPS[i] as string, port: ports[i] as number }));
  const log: string[] = [];
  const listener = await openUdpListener(SERVICE_IP, await freePort(), backends, {
    log: (line) => log.push(line),
    idleTimeoutMs: 10_000,
  });
  t.after(() => listener.close(true));

  const first = await udpClient(t);
  const second = await udpClient(t);
  const a = await roundTrip(first, listener.port, "one");
  assert.equal(
    a.from,
    `${SERVICE_IP}:${listener.port}`,
    "the reply comes from the Service address",
  );
  const b = await roundTrip(second, listener.port, "two");
  assert.deepEqual([a.reply, b.reply], [`${BACKEND_IPS[0]}:one`, `${BACKEND_IPS[1]}:two`]);
  // A client's session sticks to its backend.
  assert.equal((await roundTrip(first, listener.port, "again")).reply, `${BACKEND_IPS[0]}:again`);
  assert.equal(listener.activeCount(), 2);

  // Removing a backend ends its sessions; the client's next datagram goes to a ready one.
  listener.setBackends([backends[1] as Backend]);
  assert.equal(listener.activeCount(), 1);
  assert.equal((await roundTrip(first, listener.port, "moved")).reply, `${BACKEND_IPS[1]}:moved`);
  assert.equal((await roundTrip(second, listener.port, "stays")).reply, `${BACKEND_IPS[1]}:stays`);
  assert.deepEqual(log, []);
});
