import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { generateKeyPairSync } from "node:crypto";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { nodeLayout, type NodeLayout } from "../../src/node/layout.js";
import {
  ensurePki,
  nodePkiIO,
  pairPaths,
  planCertificates,
  type CertificateId,
  type PkiIO,
} from "../../src/node/pki.js";
import { pkiFiles } from "../../src/plan/pki-files.js";
import { hasOpenssl, pkiTestConfig, temporaryDir } from "./pki-fixture.js";

const LEAVES_SIGNED_BY_CA: CertificateId[] = [
  "apiserver",
  "apiserver-kubelet-client",
  "kubelet-serving",
];

async function openssl(...args: string[]): Promise<string> {
  return ensureSuccess(await runCommand(["openssl", ...args])).stdout;
}

/** The certificate as `openssl x509 -text` prints it: the independent reading of our files. */
function certText(path: string): Promise<string> {
  return openssl("x509", "-in", path, "-noout", "-text");
}

function subjectAltNames(text: string): string[] {
  const match = /X509v3 Subject Alternative Name:.*\n\s*(.+)\n/.exec(text);
  return (match?.[1] ?? "").split(", ").map((name) => name.trim());
}

async function verifyWithOpenssl(caPath: string, certPath: string): Promise<boolean> {
  const result = await runCommand(["openssl", "verify", "-CAfile", caPath, certPath]);
  return result.exitCode === 0 && result.stdout.includes(": OK");
}

async function snapshot(layout: NodeLayout): Promise<Map<string, string>> {
  const files = Object.values(pkiFiles(layout));
  return new Map(
    await Promise.all(files.map(async (path) => [path, await readFile(path, "utf8")] as const)),
  );
}

/** Asserts a complete, consistent PKI: every leaf verifies against its CA, every key fits. */
async function assertConsistent(layout: NodeLayout): Promise<void> {
  const files = pkiFiles(layout);
  for (const id of LEAVES_SIGNED_BY_CA) {
    assert.ok(await verifyWithOpenssl(files.caCert, pairPaths(layout, id).cert), `${id} vs ca`);
  }
  assert.ok(await verifyWithOpenssl(files.frontProxyCaCert, files.frontProxyClientCert));
  for (const id of [
    ...LEAVES_SIGNED_BY_CA,
    "ca",
    "front-proxy-ca",
    "front-proxy-client",
  ] as const) {
    const pair = pairPaths(layout, id);
    const fromCert = await openssl("x509", "-in", pair.cert, "-noout", "-pubkey");
    const fromKey = await openssl("pkey", "-in", pair.key, "-pubout");
    assert.equal(fromKey, fromCert, `${id}: key matches certificate`);
  }
  const saFromKey = await openssl("pkey", "-in", files.serviceAccountKey, "-pubout");
  assert.equal(saFromKey, await readFile(files.serviceAccountPub, "utf8"));
}

/** A PkiIO that stands for a process killed after `writes` files: the next write never happens. */
function crashingIO(writes: number): PkiIO {
  let left = writes;
  return {
    ...nodePkiIO,
    writeFile: async (path, data, mode) => {
      if (left-- <= 0) throw new Error("simulated crash");
      await nodePkiIO.writeFile(path, data, mode);
    },
  };
}

test("the plan is kubeadm's set, with the apiserver names the config implies", () => {
  const config = pkiTestConfig("/data");
  const plan = new Map(planCertificates(config).map((request) => [request.id, request]));
  assert.deepEqual([...plan.keys()].sort(), [
    "admin",
    "apiserver",
    "apiserver-kubelet-client",
    "ca",
    "controller-manager",
    "front-proxy-ca",
    "front-proxy-client",
    "kube-proxy",
    "kubelet-client",
    "kubelet-serving",
    "scheduler",
  ]);
  const apiserver = plan.get("apiserver");
  assert.deepEqual(apiserver?.dnsNames, [
    "sandkube-test",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
  ]);
  // The bind address is nodeIP here, which is listed once.
  assert.deepEqual(apiserver?.ipAddresses, ["10.96.0.1", "10.244.0.1", "127.0.0.1"]);
  assert.equal(plan.get("ca")?.validityDays, 3650);
  assert.equal(apiserver?.validityDays, 365);
  assert.deepEqual(plan.get("admin")?.organizations, ["system:masters"]);
  assert.equal(plan.get("kubelet-client")?.commonName, "system:node:sandkube-test");
  assert.deepEqual(plan.get("kubelet-client")?.organizations, ["system:nodes"]);
  assert.equal(plan.get("front-proxy-client")?.signer, "front-proxy-ca");
  assert.equal(plan.get("controller-manager")?.commonName, "system:kube-controller-manager");
  assert.equal(plan.get("scheduler")?.commonName, "system:kube-scheduler");

  const wildcard = planCertificates(pkiTestConfig("/data", { apiServerBindAddress: "0.0.0.0" }));
  const extra = planCertificates(pkiTestConfig("/data", { apiServerBindAddress: "192.0.2.7" }));
  assert.ok(!wildcard.find((r) => r.id === "apiserver")?.ipAddresses.includes("0.0.0.0"));
  assert.ok(extra.find((r) => r.id === "apiserver")?.ipAddresses.includes("192.0.2.7"));
});

test("ensurePki writes a PKI that openssl verifies, with kubeadm's names and modes", async (t) => {
  if (!(await hasOpenssl())) return t.skip("SKIPPED: the openssl CLI is not installed");
  const layout = nodeLayout(await temporaryDir(t, "pki"));
  const config = pkiTestConfig(layout.dataDir);
  const report = await ensurePki(config, layout);
  assert.equal(report.kept.length, 0);
  assert.equal(report.written.length, 14);
  await assertConsistent(layout);

  const files = pkiFiles(layout);
  // front-proxy-client must not pass as a client of the cluster CA: the two CAs are separate.
  assert.ok(!(await verifyWithOpenssl(files.caCert, files.frontProxyClientCert)));

  const apiserver = await certText(files.apiServerCert);
  assert.deepEqual(subjectAltNames(apiserver).sort(), [
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "DNS:localhost",
    "DNS:sandkube-test",
    "IP Address:10.244.0.1",
    "IP Address:10.96.0.1",
    "IP Address:127.0.0.1",
  ]);
  assert.match(apiserver, /TLS Web Server Authentication/);
  assert.match(apiserver, /ASN1 OID: prime256v1/);
  assert.match(await certText(files.caCert), /Subject: CN = kubernetes\n[\s\S]*CA:TRUE/);
  assert.match(
    await certText(files.apiServerKubeletClientCert),
    /Subject: O = system:masters, CN = kube-apiserver-kubelet-client\n[\s\S]*TLS Web Client Authentication/,
  );
  assert.match(await certText(files.frontProxyClientCert), /Subject: CN = front-proxy-client\n/);
  const kubelet = await certText(files.kubeletServingCert);
  assert.match(kubelet, /Subject: O = system:nodes, CN = system:node:sandkube-test\n/);
  assert.deepEqual(subjectAltNames(kubelet).sort(), [
    "DNS:localhost",
    "DNS:sandkube-test",
    "IP Address:10.244.0.1",
    "IP Address:127.0.0.1",
  ]);

  const days = async (path: string) => {
    const end = (await openssl("x509", "-in", path, "-noout", "-enddate")).split("=")[1] ?? "";
    return Math.round((Date.parse(end) - Date.now()) / 86_400_000);
  };
  assert.equal(await days(files.caCert), 3650);
  assert.equal(await days(files.apiServerCert), 365);

  assert.match(await readFile(files.caKey, "utf8"), /^-----BEGIN EC PRIVATE KEY-----\n/);
  for (const [name, path] of Object.entries(files)) {
    const mode = (await stat(path)).mode & 0o777;
    const secret = name.endsWith("Key") && name !== "serviceAccountPub";
    assert.equal(mode, secret ? 0o600 : 0o644, `${name} mode ${mode.toString(8)}`);
  }
  assert.equal((await stat(layout.pkiDir)).mode & 0o777, 0o700);
});

test("a second ensurePki with the same config changes nothing, the CA above all", async (t) => {
  const layout = nodeLayout(await temporaryDir(t, "pki"));
  const config = pkiTestConfig(layout.dataDir);
  await ensurePki(config, layout);
  const before = await snapshot(layout);
  const again = await ensurePki(config, layout);
  assert.deepEqual(again.written, []);
  assert.equal(again.kept.length, 14);
  assert.deepEqual(await snapshot(layout), before);
});

test("a new node IP reissues the certificates that name it and keeps the CA", async (t) => {
  if (!(await hasOpenssl())) return t.skip("SKIPPED: the openssl CLI is not installed");
  const layout = nodeLayout(await temporaryDir(t, "pki"));
  await ensurePki(pkiTestConfig(layout.dataDir), layout);
  const before = await snapshot(layout);
  const moved = pkiTestConfig(layout.dataDir, {
    nodeIP: "10.245.0.1",
    apiServerBindAddress: "10.245.0.1",
  });
  const report = await ensurePki(moved, layout);
  const files = pkiFiles(layout);
  assert.deepEqual(report.written.map((change) => change.path).sort(), [
    files.apiServerCert,
    files.apiServerKey,
    files.kubeletServingCert,
    files.kubeletServingKey,
  ]);
  assert.match(
    report.written[0]?.reason ?? "",
    /names changed \(lacks IP:10\.245\.0\.1; has extra IP:10\.244\.0\.1\)/,
  );
  const after = await snapshot(layout);
  for (const path of [
    files.caCert,
    files.caKey,
    files.apiServerKubeletClientCert,
    files.serviceAccountKey,
  ]) {
    assert.equal(after.get(path), before.get(path), `${path} kept`);
  }
  assert.ok(subjectAltNames(await certText(files.apiServerCert)).includes("IP Address:10.245.0.1"));
  await assertConsistent(layout);
});

test("a deleted file is made again and only its pair is touched", async (t) => {
  if (!(await hasOpenssl())) return t.skip("SKIPPED: the openssl CLI is not installed");
  const layout = nodeLayout(await temporaryDir(t, "pki"));
  const config = pkiTestConfig(layout.dataDir);
  await ensurePki(config, layout);
  const files = pkiFiles(layout);
  const before = await snapshot(layout);
  await rm(files.apiServerCert);
  const report = await ensurePki(config, layout);
  assert.deepEqual(report.written, [
    { path: files.apiServerKey, reason: "certificate missing" },
    { path: files.apiServerCert, reason: "certificate missing" },
  ]);
  const after = await snapshot(layout);
  assert.equal(after.get(files.caCert), before.get(files.caCert));
  assert.notEqual(after.get(files.apiServerKey), before.get(files.apiServerKey));
  await assertConsistent(layout);
});

test("a process killed after any write leaves a state the next call completes", async (t) => {
  if (!(await hasOpenssl())) return t.skip("SKIPPED: the openssl CLI is not installed");
  const config = (dir: string) => pkiTestConfig(dir);
  for (const writes of [1, 4, 9, 13]) {
    const layout = nodeLayout(await temporaryDir(t, `pki-crash${writes}`));
    await assert.rejects(
      ensurePki(config(layout.dataDir), layout, crashingIO(writes)),
      /simulated crash/,
    );
    const report = await ensurePki(config(layout.dataDir), layout);
    assert.ok(report.written.length > 0, `after ${writes} writes there was work left`);
    await assertConsistent(layout);
  }
});

test("a CA replaced halfway (new key, old certificate) is redone with every leaf", async (t) => {
  if (!(await hasOpenssl())) return t.skip("SKIPPED: the openssl CLI is not installed");
  const layout = nodeLayout(await temporaryDir(t, "pki"));
  const config = pkiTestConfig(layout.dataDir);
  await ensurePki(config, layout);
  const files = pkiFiles(layout);
  const before = await snapshot(layout);
  // What a crash between writing ca.key and ca.crt leaves: a key the certificate does not hold.
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  await writeFile(files.caKey, privateKey.export({ type: "sec1", format: "pem" }));
  const report = await ensurePki(config, layout);
  const reasons = new Map(report.written.map((change) => [change.path, change.reason]));
  assert.equal(reasons.get(files.caCert), "key does not match the certificate");
  assert.equal(reasons.get(files.apiServerCert), "not signed by the current ca");
  assert.equal(reasons.has(files.frontProxyClientCert), false, "front proxy has its own CA");
  assert.notEqual((await snapshot(layout)).get(files.caCert), before.get(files.caCert));
  await assertConsistent(layout);
});

test("leaves near their end are renewed; the CA is not", async (t) => {
  const layout = nodeLayout(await temporaryDir(t, "pki"));
  const config = pkiTestConfig(layout.dataDir);
  await ensurePki(config, layout);
  const later: PkiIO = { ...nodePkiIO, now: () => new Date(Date.now() + 340 * 86_400_000) };
  const report = await ensurePki(config, layout, later);
  const files = pkiFiles(layout);
  const renewed = new Set(report.written.map((change) => change.path));
  assert.ok(renewed.has(files.apiServerCert));
  assert.ok(renewed.has(files.frontProxyClientCert));
  assert.ok(!renewed.has(files.caCert));
  assert.ok(!renewed.has(files.serviceAccountKey));
  assert.match(report.written[0]?.reason ?? "", /^expires /);
});

test("an RSA CA made elsewhere (as kubeadm makes it) is kept and signs the leaves", async (t) => {
  if (!(await hasOpenssl())) return t.skip("SKIPPED: the openssl CLI is not installed");
  const layout = nodeLayout(await temporaryDir(t, "pki"));
  const files = pkiFiles(layout);
  await ensurePki(pkiTestConfig(layout.dataDir), layout);
  await openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=kubernetes",
    "-days",
    "3650",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
    "-keyout",
    files.caKey,
    "-out",
    files.caCert,
  );
  const rsaCa = await readFile(files.caCert, "utf8");
  const report = await ensurePki(pkiTestConfig(layout.dataDir), layout);
  assert.equal(await readFile(files.caCert, "utf8"), rsaCa);
  assert.ok(report.kept.includes(files.caCert));
  assert.equal(
    new Map(report.written.map((c) => [c.path, c.reason])).get(files.apiServerCert),
    "not signed by the current ca",
  );
  assert.match(await certText(files.apiServerCert), /Signature Algorithm: sha256WithRSAEncryption/);
  await assertConsistent(layout);
});
