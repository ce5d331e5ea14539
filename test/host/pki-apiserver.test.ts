import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { request } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { labBinary } from "../../lab/paths.js";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { LEGACY_LAB_DIR } from "../../src/install/cache.js";
import {
  apiServerUrl,
  currentEntries,
  writeComponentKubeconfigs,
} from "../../src/node/kubeconfig.js";
import { nodeLayout } from "../../src/node/layout.js";
import { ensurePki } from "../../src/node/pki.js";
import { FRONT_PROXY_CLIENT_CN, kubeconfigFiles, pkiFiles } from "../../src/plan/pki-files.js";
import { pkiTestConfig } from "../unit/pki-fixture.js";

// The certificates and kubeconfigs sandkube makes, shown to the real kube-apiserver and etcd the
// lab builds: the admin is let in, nobody without a certificate is, the kubelet identity gets
// only what the Node authorizer gives it, and service account tokens signed with the ECDSA sa.key
// are accepted. Everything listens on 127.0.0.1 and every request goes there. The apiserver flags
// are a hand-written minimal set; src/plan/component-flags.ts renders the product's.

/** The install cache first, then the lab's older cache folder a running build may still fill. */
function binary(name: string): string {
  const legacy = join(LEGACY_LAB_DIR, "bin", name);
  return existsSync(labBinary(name)) || !existsSync(legacy) ? labBinary(name) : legacy;
}

const ETCD = binary("etcd");
const APISERVER = binary("kube-apiserver");
const KUBECTL = existsSync(binary("kubectl")) ? binary("kubectl") : "/usr/bin/kubectl";
const missing = [ETCD, APISERVER, KUBECTL].find((binary) => !existsSync(binary));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address !== null
          ? resolve(address.port)
          : reject(new Error("no port")),
      );
    });
  });
}

interface Response {
  readonly status: number;
  readonly body: string;
}

/** One HTTPS request to the test's apiserver, checking its certificate against our CA. */
function get(
  url: string,
  tls: { ca: string; cert?: string; key?: string; token?: string },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        headers: tls.token === undefined ? {} : { authorization: `Bearer ${tls.token}` },
        timeout: 10_000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

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

function decode(value: unknown): string {
  return Buffer.from(String(value), "base64").toString("utf8");
}

test(
  "the real kube-apiserver accepts sandkube's PKI and refuses unauthenticated requests",
  { skip: missing === undefined ? false : `SKIPPED: ${missing} is missing; run npm run lab:build` },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "sandkube-pki-apiserver-"));
    const children: ChildProcess[] = [];
    t.after(async () => {
      for (const child of children.reverse()) await stop(child);
      await rm(dir, { recursive: true, force: true });
    });

    const [etcdClient, etcdPeer, securePort] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const layout = nodeLayout(dir);
    const config = pkiTestConfig(dir, {
      apiServerBindAddress: "127.0.0.1",
      apiServerPort: securePort,
    });
    await ensurePki(config, layout);
    await writeComponentKubeconfigs(config, layout);
    const pki = pkiFiles(layout);
    const kubeconfigs = kubeconfigFiles(layout);

    const log = (name: string) => createWriteStream(join(dir, `${name}.log`));
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    const etcd = spawn(
      ETCD,
      [
        "--name=test",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=test=${peerUrl}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(etcd);
    etcd.stdout?.pipe(log("etcd"));
    etcd.stderr?.pipe(log("etcd.err"));

    const apiserver = spawn(
      APISERVER,
      [
        `--etcd-servers=${etcdUrl}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${securePort}`,
        // Published in the `kubernetes` Endpoints only; nothing connects to it.
        `--advertise-address=${config.nodeIP}`,
        "--anonymous-auth=false",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        `--client-ca-file=${pki.caCert}`,
        `--tls-cert-file=${pki.apiServerCert}`,
        `--tls-private-key-file=${pki.apiServerKey}`,
        `--kubelet-client-certificate=${pki.apiServerKubeletClientCert}`,
        `--kubelet-client-key=${pki.apiServerKubeletClientKey}`,
        `--kubelet-certificate-authority=${pki.caCert}`,
        `--service-cluster-ip-range=${config.serviceCIDR}`,
        `--service-account-issuer=https://kubernetes.default.svc.${config.clusterDomain}`,
        `--service-account-key-file=${pki.serviceAccountPub}`,
        `--service-account-signing-key-file=${pki.serviceAccountKey}`,
        `--proxy-client-cert-file=${pki.frontProxyClientCert}`,
        `--proxy-client-key-file=${pki.frontProxyClientKey}`,
        `--requestheader-client-ca-file=${pki.frontProxyCaCert}`,
        `--requestheader-allowed-names=${FRONT_PROXY_CLIENT_CN}`,
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(apiserver);
    apiserver.stdout?.pipe(log("kube-apiserver"));
    apiserver.stderr?.pipe(log("kube-apiserver.err"));

    const kubectl = (kubeconfig: string, ...args: string[]) =>
      runCommand([KUBECTL, "--kubeconfig", kubeconfig, ...args], { timeoutMs: 30_000 });

    // Readiness through the admin kubeconfig: certificate, SANs (127.0.0.1) and system:masters.
    const deadline = Date.now() + 120_000;
    let ready = await kubectl(kubeconfigs.admin, "get", "--raw", "/readyz");
    while (ready.stdout.trim() !== "ok") {
      const tail = async () =>
        (await readFile(join(dir, "kube-apiserver.err.log"), "utf8").catch(() => "")).slice(-2000);
      assert.equal(apiserver.exitCode, null, `kube-apiserver exited:\n${await tail()}`);
      assert.equal(etcd.exitCode, null, "etcd exited");
      assert.ok(
        Date.now() < deadline,
        `no /readyz ok within 120 s:\n${ready.stderr}${await tail()}`,
      );
      await new Promise((resolve) => setTimeout(resolve, 1000));
      ready = await kubectl(kubeconfigs.admin, "get", "--raw", "/readyz");
    }
    assert.equal(apiServerUrl(config), `https://127.0.0.1:${securePort}`);

    const ca = await readFile(pki.caCert, "utf8");
    const base = apiServerUrl(config);

    const anonymous = await get(`${base}/api`, { ca });
    assert.equal(anonymous.status, 401, `unauthenticated /api: ${anonymous.body}`);
    const anonymousReadyz = await get(`${base}/readyz`, { ca });
    assert.equal(anonymousReadyz.status, 401, "anonymous auth is off for health too");

    const kubelet = currentEntries(await readFile(kubeconfigs.kubelet, "utf8"));
    assert.ok(kubelet);
    const asKubelet = {
      ca,
      cert: decode(kubelet.user["client-certificate-data"]),
      key: decode(kubelet.user["client-key-data"]),
    };
    const secrets = await get(`${base}/api/v1/secrets`, asKubelet);
    assert.equal(secrets.status, 403, `kubelet listing every secret: ${secrets.body}`);
    assert.match(secrets.body, /User \\"system:node:sandkube-test\\" cannot list resource/);
    // The same identity is authenticated and sees what the Node authorizer grants it.
    const ownNode = await get(`${base}/api/v1/nodes/${config.nodeName}`, asKubelet);
    assert.equal(ownNode.status, 404, `kubelet reading its own (absent) Node: ${ownNode.body}`);

    // The other component identities authenticate as themselves.
    for (const [file, user] of [
      [kubeconfigs.controllerManager, "system:kube-controller-manager"],
      [kubeconfigs.scheduler, "system:kube-scheduler"],
      [kubeconfigs.admin, "kubernetes-admin"],
    ] as const) {
      const whoami = ensureSuccess(await kubectl(file, "auth", "whoami", "-o", "json")).stdout;
      assert.equal(
        (JSON.parse(whoami) as { status: { userInfo: { username: string } } }).status.userInfo
          .username,
        user,
      );
    }

    // A service account token is signed with sa.key (ES256) and checked with sa.pub.
    ensureSuccess(await kubectl(kubeconfigs.admin, "create", "serviceaccount", "pki-test"));
    const token = ensureSuccess(
      await kubectl(kubeconfigs.admin, "create", "token", "pki-test"),
    ).stdout.trim();
    const header = JSON.parse(
      Buffer.from(token.split(".")[0] ?? "", "base64url").toString("utf8"),
    ) as { alg: string };
    assert.equal(header.alg, "ES256");
    const withToken = await get(`${base}/api`, { ca, token });
    assert.equal(withToken.status, 200, `service account token: ${withToken.body}`);
    const forged = await get(`${base}/api`, { ca, token: `${token.slice(0, -4)}AAAA` });
    assert.equal(forged.status, 401, "a token with a broken signature is refused");
  },
);
