import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  type V1EndpointSlice,
} from "@kubernetes/client-node";
import { labBinary } from "../../lab/paths.js";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { writeComponentKubeconfigs } from "../../src/node/kubeconfig.js";
import { nodeLayout } from "../../src/node/layout.js";
import { sandkubeProxyEntry } from "../../src/node/package-root.js";
import { ensurePki } from "../../src/node/pki.js";
import { FRONT_PROXY_CLIENT_CN, kubeconfigFiles, pkiFiles } from "../../src/plan/pki-files.js";
import { pkiTestConfig } from "../unit/pki-fixture.js";

// The whole path: a real etcd and kube-apiserver, sandkube-proxy (dist/src/proxy/main.js) with
// admin credentials, Services and EndpointSlices written with the official client, and traffic to
// the cluster IPs, all inside a network namespace this test makes. Nothing touches the host's
// links: the proxy's addresses go on a veth `sandkube0` inside the namespace. The test process
// stays in the host namespace and reaches the apiserver through a unix socket bridge (a unix
// socket path is visible across network namespaces); traffic to Services is sent by small node
// scripts run inside the namespace with `ip netns exec`.

const ETCD = labBinary("etcd");
const APISERVER = labBinary("kube-apiserver");
const PROXY_MAIN = sandkubeProxyEntry();
const isRoot = process.getuid?.() === 0;
const missing = [ETCD, APISERVER, PROXY_MAIN].find((file) => !existsSync(file));
const skip = !isRoot
  ? "SKIPPED: needs root for a network namespace"
  : missing !== undefined
    ? `SKIPPED: ${missing} is missing; run npm run lab:build and npm run build`
    : false;

const API_PORT = 6443;
const CLUSTER_IP = "10.96.12.3";
const NODE_PORT = 30080;
const BACKENDS = ["10.244.0.11", "10.244.0.12", "10.244.0.13"];

/** Inside the namespace: forwards each connection on a unix socket to the apiserver. */
const BRIDGE_SCRIPT = `
import { createServer, connect } from "node:net";
const [path, port] = process.argv.slice(1);
createServer((client) => {
  const upstream = connect({ host: "127.0.0.1", port: Number(port) });
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
  client.pipe(upstream).pipe(client);
}).listen(path, () => console.log("ready"));
`;

/** Inside the namespace: pods stand-ins, TCP :8080 greets with its address then echoes; UDP :5353 answers "<address>:<datagram>". */
const BACKEND_SCRIPT = `
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
let pending = 0;
for (const ip of process.argv.slice(1)) {
  pending += 2;
  createServer((socket) => {
    socket.on("error", () => undefined);
    socket.write(ip + "\\n");
    socket.pipe(socket);
  }).listen(8080, ip, () => --pending === 0 && console.log("ready"));
  const udp = createSocket("udp4");
  udp.on("message", (message, from) => udp.send(ip + ":" + message, from.port, from.address));
  udp.bind(5353, ip, () => --pending === 0 && console.log("ready"));
}
`;

/** Inside the namespace: N requests, printed as JSON, each the answering backend or "ERR <code>". */
const PROBE_SCRIPT = `
import { connect } from "node:net";
import { createSocket } from "node:dgram";
import { request } from "node:https";
const [mode, host, port, count] = process.argv.slice(1);
const tcp = () => new Promise((resolve) => {
  const socket = connect({ host, port: Number(port) });
  let data = "";
  const timer = setTimeout(() => { socket.destroy(); resolve("ERR timeout"); }, 3000);
  socket.on("error", (e) => { clearTimeout(timer); resolve("ERR " + e.code); });
  socket.on("data", (chunk) => {
    data += chunk;
    const lines = data.split("\\n");
    if (lines.length === 2) socket.write("ping\\n");
    if (lines.length >= 3) {
      clearTimeout(timer);
      socket.destroy();
      resolve(lines[1] === "ping" ? lines[0] : "ERR echo " + JSON.stringify(data));
    }
  });
  socket.on("close", () => { clearTimeout(timer); resolve("ERR closed " + JSON.stringify(data)); });
});
const udp = () => new Promise((resolve) => {
  const socket = createSocket("udp4");
  const timer = setTimeout(() => { socket.close(); resolve("ERR timeout"); }, 3000);
  socket.on("message", (m, from) => { clearTimeout(timer); socket.close(); resolve(m + " from " + from.address + ":" + from.port); });
  socket.send("ping", Number(port), host);
});
const https = () => new Promise((resolve) => {
  request({ host, port: Number(port), path: "/readyz", rejectUnauthorized: false, timeout: 3000 }, (res) => {
    res.resume();
    resolve("HTTP " + res.statusCode);
  }).on("error", (e) => resolve("ERR " + e.code)).end();
});
const http = () => fetch("http://" + host + ":" + port + "/healthz").then((r) => "HTTP " + r.status, (e) => "ERR " + (e.cause?.code ?? e.message));
const one = { tcp, udp, https, http }[mode];
const out = [];
for (let i = 0; i < Number(count); i++) out.push(await one());
console.log(JSON.stringify(out));
`;

function stop(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(force);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

async function until<T>(
  what: string,
  probe: () => Promise<T>,
  ok: (value: T) => boolean,
): Promise<T> {
  const deadline = Date.now() + 120_000;
  let last = await probe();
  while (!ok(last)) {
    assert.ok(Date.now() < deadline, `${what}: still ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
    last = await probe();
  }
  return last;
}

test(
  "sandkube-proxy follows Services and EndpointSlices from a real kube-apiserver",
  { skip, timeout: 300_000 },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "sandkube-proxy-api-"));
    const netns = `sk-proxy-api-${process.pid}`;
    const children: ChildProcess[] = [];
    const socketPath = join(dir, "apiserver.sock");
    // The test's way in: 127.0.0.1:<port> here -> unix socket -> 127.0.0.1:6443 in the namespace.
    const bridge: Server = createServer((client) => {
      const upstream = connect({ path: socketPath });
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    let finished = false;
    t.after(async () => {
      if (!finished) {
        // CI keeps only the runner's output, so a failure carries the proxy's own account.
        for (const name of ["sandkube-proxy.err", "kube-apiserver.err"]) {
          const text = await readFile(join(dir, `${name}.log`), "utf8").catch(() => "");
          t.diagnostic(`${name}.log (last 40 lines):\n${text.split("\n").slice(-40).join("\n")}`);
        }
      }
      bridge.close();
      for (const child of children.reverse()) await stop(child);
      await runCommand(["ip", "netns", "del", netns]);
      await rm(dir, { recursive: true, force: true });
    });
    const inNetns = (argv: readonly string[], timeoutMs = 30_000) =>
      runCommand(["ip", "netns", "exec", netns, ...argv], { timeoutMs });
    const log = (name: string) => createWriteStream(join(dir, `${name}.log`));
    const startInNetns = async (name: string, argv: readonly string[], waitForLine?: string) => {
      const child = spawn("ip", ["netns", "exec", netns, ...argv], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.push(child);
      child.stderr?.pipe(log(`${name}.err`));
      if (waitForLine === undefined) {
        child.stdout?.pipe(log(name));
        return child;
      }
      await new Promise<void>((resolve, reject) => {
        let seen = "";
        child.stdout?.on("data", (chunk: Buffer) => {
          seen += chunk.toString();
          if (seen.includes(waitForLine)) resolve();
        });
        child.once("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
      });
      return child;
    };

    ensureSuccess(await runCommand(["ip", "netns", "add", netns]));
    for (const command of [
      ["ip", "link", "set", "lo", "up"],
      // The node link as `up` makes it: a veth pair holding the node address.
      ["ip", "link", "add", "sandkube0", "type", "veth", "peer", "name", "sandkube0p"],
      ["ip", "link", "set", "sandkube0", "up"],
      ["ip", "link", "set", "sandkube0p", "up"],
      ["ip", "address", "add", "10.244.0.1/24", "dev", "sandkube0"],
      ...BACKENDS.map((ip) => ["ip", "address", "add", `${ip}/32`, "dev", "sandkube0"]),
      // A stale cluster IP from an earlier run, and an address outside the service range.
      ["ip", "address", "add", "10.96.200.200/32", "dev", "sandkube0"],
      ["ip", "address", "add", "192.168.77.1/32", "dev", "sandkube0"],
    ]) {
      ensureSuccess(await inNetns(command));
    }

    const layout = nodeLayout(dir);
    const config = pkiTestConfig(dir, {
      apiServerBindAddress: "127.0.0.1",
      apiServerPort: API_PORT,
    });
    await ensurePki(config, layout);
    await writeComponentKubeconfigs(config, layout);
    const pki = pkiFiles(layout);
    const kubeconfigs = kubeconfigFiles(layout);

    await startInNetns("etcd", [
      ETCD,
      "--name=test",
      `--data-dir=${join(dir, "etcd")}`,
      "--listen-client-urls=http://127.0.0.1:2379",
      "--advertise-client-urls=http://127.0.0.1:2379",
      "--listen-peer-urls=http://127.0.0.1:2380",
      "--initial-advertise-peer-urls=http://127.0.0.1:2380",
      "--initial-cluster=test=http://127.0.0.1:2380",
    ]);
    await startInNetns("kube-apiserver", [
      APISERVER,
      "--etcd-servers=http://127.0.0.1:2379",
      // Every address of this namespace: the `kubernetes` Service's endpoint is the node address.
      "--bind-address=0.0.0.0",
      `--secure-port=${API_PORT}`,
      `--advertise-address=${config.nodeIP}`,
      "--anonymous-auth=false",
      "--authorization-mode=Node,RBAC",
      `--client-ca-file=${pki.caCert}`,
      `--tls-cert-file=${pki.apiServerCert}`,
      `--tls-private-key-file=${pki.apiServerKey}`,
      `--service-cluster-ip-range=${config.serviceCIDR}`,
      `--service-node-port-range=30000-32767`,
      `--service-account-issuer=https://kubernetes.default.svc.${config.clusterDomain}`,
      `--service-account-key-file=${pki.serviceAccountPub}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      `--proxy-client-cert-file=${pki.frontProxyClientCert}`,
      `--proxy-client-key-file=${pki.frontProxyClientKey}`,
      `--requestheader-client-ca-file=${pki.frontProxyCaCert}`,
      `--requestheader-allowed-names=${FRONT_PROXY_CLIENT_CN}`,
      "--requestheader-username-headers=X-Remote-User",
      "--requestheader-group-headers=X-Remote-Group",
    ]);

    await startInNetns(
      "bridge",
      [process.execPath, "--input-type=module", "-e", BRIDGE_SCRIPT, socketPath, String(API_PORT)],
      "ready",
    );
    await new Promise<void>((resolve) => bridge.listen(0, "127.0.0.1", resolve));
    const bridgeAddress = bridge.address();
    assert.ok(typeof bridgeAddress === "object" && bridgeAddress !== null);
    const kubeconfig = new KubeConfig();
    kubeconfig.loadFromString(
      (await readFile(kubeconfigs.admin, "utf8")).replace(
        `https://127.0.0.1:${API_PORT}`,
        `https://127.0.0.1:${bridgeAddress.port}`,
      ),
    );
    const core = kubeconfig.makeApiClient(CoreV1Api);
    const discovery = kubeconfig.makeApiClient(DiscoveryV1Api);
    await until(
      "the apiserver's default namespace",
      () =>
        core.readNamespace({ name: "default" }).then(
          () => true,
          () => false,
        ),
      Boolean,
    );

    await startInNetns(
      "backends",
      [process.execPath, "--input-type=module", "-e", BACKEND_SCRIPT, ...BACKENDS],
      "ready",
    );
    const proxy = await startInNetns("sandkube-proxy", [
      process.execPath,
      PROXY_MAIN,
      "--kubeconfig",
      kubeconfigs.admin,
      "--link",
      "sandkube0",
      "--service-cidr",
      config.serviceCIDR,
      "--healthz",
      "127.0.0.1:10256",
    ]);
    const proxyLog = () => readFile(join(dir, "sandkube-proxy.err.log"), "utf8").catch(() => "");
    const probe = async (
      mode: string,
      host: string,
      port: number,
      count = 1,
    ): Promise<string[]> => {
      const result = await inNetns(
        [
          process.execPath,
          "--input-type=module",
          "-e",
          PROBE_SCRIPT,
          mode,
          host,
          String(port),
          String(count),
        ],
        120_000,
      );
      ensureSuccess(result);
      return JSON.parse(result.stdout) as string[];
    };
    const serviceAddresses = async () =>
      ensureSuccess(await inNetns(["ip", "-4", "-o", "address", "show", "dev", "sandkube0"]))
        .stdout;

    await until(
      "proxy /healthz",
      () => probe("http", "127.0.0.1", 10256),
      (r) => r[0] === "HTTP 200",
    );
    // The apiserver's own `kubernetes` Service works through the proxy: TLS to 10.96.0.1:443 is
    // answered by the apiserver (401: anonymous requests are refused).
    // The apiserver writes that Service's EndpointSlice a moment after it serves the `default`
    // namespace, so the first sync may come before it.
    await until(
      "the kubernetes Service through the proxy",
      () => probe("https", config.apiServerServiceIP, 443),
      (r) => r[0] === "HTTP 401",
    );
    const addresses = await serviceAddresses();
    assert.match(addresses, /inet 10\.96\.0\.1\/32/);
    assert.doesNotMatch(addresses, /10\.96\.200\.200/, "a stale cluster IP is removed");
    assert.match(addresses, /inet 192\.168\.77\.1\/32/, "an address outside the range is left");

    await core.createNamespacedService({
      namespace: "default",
      body: {
        metadata: { name: "web" },
        spec: {
          type: "NodePort",
          clusterIP: CLUSTER_IP,
          ports: [
            { name: "http", port: 80, protocol: "TCP", targetPort: 8080, nodePort: NODE_PORT },
            { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 },
          ],
        },
      },
    });
    const slice = (ready: Record<string, boolean>): V1EndpointSlice => ({
      addressType: "IPv4",
      metadata: {
        name: "web-manual",
        labels: {
          "kubernetes.io/service-name": "web",
          "endpointslice.kubernetes.io/managed-by": "sandkube-proxy-test",
        },
      },
      ports: [
        { name: "http", port: 8080, protocol: "TCP" },
        { name: "dns", port: 5353, protocol: "UDP" },
      ],
      endpoints: BACKENDS.map((ip) => ({
        addresses: [ip],
        conditions: { ready: ready[ip] ?? true },
      })),
    });
    await discovery.createNamespacedEndpointSlice({ namespace: "default", body: slice({}) });

    const spread = await until(
      "3 endpoints behind the cluster IP",
      () => probe("tcp", CLUSTER_IP, 80, 30),
      (answers) => new Set(answers).size === 3 && answers.every((a) => BACKENDS.includes(a)),
    );
    assert.equal(spread.length, 30);
    assert.deepEqual(
      [...new Set(await probe("tcp", "127.0.0.1", NODE_PORT, 6))].sort(),
      BACKENDS,
      "the NodePort answers on 127.0.0.1",
    );
    const [udp] = await probe("udp", CLUSTER_IP, 53);
    assert.match(udp ?? "", new RegExp(`^10\\.244\\.0\\.1[123]:ping from ${CLUSTER_IP}:53$`));
    assert.match(await serviceAddresses(), /inet 10\.96\.12\.3\/32/);

    // One endpoint stops being ready: the proxy follows, and no request reaches it or fails.
    const current = await discovery.readNamespacedEndpointSlice({
      name: "web-manual",
      namespace: "default",
    });
    await discovery.replaceNamespacedEndpointSlice({
      name: "web-manual",
      namespace: "default",
      body: {
        ...slice({ [BACKENDS[1] as string]: false }),
        metadata: { ...slice({}).metadata, resourceVersion: current.metadata?.resourceVersion },
      },
    });
    await until(
      "the not-ready endpoint to leave",
      () => probe("tcp", CLUSTER_IP, 80, 6),
      (answers) => !answers.includes(BACKENDS[1] as string),
    );
    const after = await probe("tcp", CLUSTER_IP, 80, 40);
    assert.deepEqual([...new Set(after)].sort(), [BACKENDS[0], BACKENDS[2]], after.join(" "));
    // The log line follows the change it describes, so it may land a moment after the traffic shows it.
    await until("the proxy's log line for 2 endpoints", proxyLog, (text) =>
      /service default\/web:http 10\.96\.12\.3:80\/TCP nodePort 30080 -> 2 endpoints/.test(text),
    );

    // The Service goes: its address leaves the link and nothing listens on it any more.
    await core.deleteNamespacedService({ name: "web", namespace: "default" });
    await until(
      "the cluster IP to leave the link",
      serviceAddresses,
      (text) => !text.includes(CLUSTER_IP),
    );
    assert.match((await probe("tcp", "127.0.0.1", NODE_PORT))[0] ?? "", /^ERR ECONNREFUSED/);
    await until("the proxy's log line for the removed Service", proxyLog, (text) =>
      /service default\/web:dns 10\.96\.12\.3:53\/UDP nodePort \d+ removed/.test(text),
    );

    // SIGTERM: the proxy exits 0 and takes every cluster IP off the link, and nothing else.
    const exited = new Promise<number | null>((resolve) => proxy.once("exit", resolve));
    proxy.kill("SIGTERM");
    assert.equal(await exited, 0, await proxyLog());
    const left = await serviceAddresses();
    assert.doesNotMatch(left, /10\.96\./);
    assert.match(left, /inet 10\.244\.0\.1\/24/);
    assert.match(left, /inet 192\.168\.77\.1\/32/);
    finished = true;
  },
);
