import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Deployment,
  type V1Service,
  type V1StorageClass,
} from "@kubernetes/client-node";
import { labBinary } from "../../lab/paths.js";
import { AddonError, applyAddons, FIELD_MANAGER } from "../../src/addons/apply.js";
import { DEFAULT_COREDNS_PORTS, renderCorefile } from "../../src/addons/corefile.js";
import { renderAddons, type AddonParams } from "../../src/addons/manifests.js";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { writeComponentKubeconfigs } from "../../src/node/kubeconfig.js";
import { nodeLayout } from "../../src/node/layout.js";
import { ensurePki } from "../../src/node/pki.js";
import { kubeconfigFiles, pkiFiles } from "../../src/plan/pki-files.js";
import { pkiTestConfig } from "../unit/pki-fixture.js";

// The add-ons, applied by sandkube's own code to the real kube-apiserver and etcd the lab builds:
// the apiserver accepts every object, a second apply changes nothing, an edit by someone else is
// taken back, and the wait for Deployments gives up with words that name the Deployment. There is
// no kubelet or controller-manager here, so no pod ever runs; the lead's node tests cover that.
// Everything listens on 127.0.0.1 and every request goes there.

const ETCD = labBinary("etcd");
const APISERVER = labBinary("kube-apiserver");
const KUBECTL = labBinary("kubectl");
const HELM = labBinary("helm");
const missing = [ETCD, APISERVER, KUBECTL].find((binary) => !existsSync(binary));
const CHART = fileURLToPath(
  new URL("../../../test/fixtures/charts/sandkube-demo", import.meta.url),
);

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

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(force);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

function key(object: KubernetesObject): string {
  return `${object.kind} ${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? ""}`;
}

test(
  "the add-ons apply to the real kube-apiserver, idempotently, and a stuck wait names the Deployment",
  { skip: missing === undefined ? false : `SKIPPED: ${missing} is missing; run npm run lab:build` },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "sandkube-addons-apiserver-"));
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
    const admin = kubeconfigFiles(layout).admin;

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
    // A hand-written minimal set of flags; src/plan/component-flags.ts renders the product's.
    const apiserver = spawn(
      APISERVER,
      [
        `--etcd-servers=${etcdUrl}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${securePort}`,
        `--advertise-address=${config.nodeIP}`,
        "--anonymous-auth=false",
        "--authorization-mode=Node,RBAC",
        `--client-ca-file=${pki.caCert}`,
        `--tls-cert-file=${pki.apiServerCert}`,
        `--tls-private-key-file=${pki.apiServerKey}`,
        `--service-cluster-ip-range=${config.serviceCIDR}`,
        `--service-account-issuer=https://kubernetes.default.svc.${config.clusterDomain}`,
        `--service-account-key-file=${pki.serviceAccountPub}`,
        `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(apiserver);
    apiserver.stdout?.pipe(log("kube-apiserver"));
    apiserver.stderr?.pipe(log("kube-apiserver.err"));

    const kubectl = (...args: string[]) =>
      runCommand([KUBECTL, "--kubeconfig", admin, ...args], { timeoutMs: 30_000 });
    const deadline = Date.now() + 120_000;
    let ready = await kubectl("get", "--raw", "/readyz");
    while (ready.stdout.trim() !== "ok") {
      const tail = async () =>
        (await readFile(join(dir, "kube-apiserver.err.log"), "utf8").catch(() => "")).slice(-2000);
      assert.equal(apiserver.exitCode, null, `kube-apiserver exited:\n${await tail()}`);
      assert.equal(etcd.exitCode, null, "etcd exited");
      assert.ok(Date.now() < deadline, `no /readyz ok within 120 s:\n${await tail()}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      ready = await kubectl("get", "--raw", "/readyz");
    }

    const params: AddonParams = {
      clusterDNS: config.clusterDNS,
      clusterDomain: config.clusterDomain,
      nodeIP: config.nodeIP,
      dataDir: dir,
      images: {
        coredns: "sandkube.local/coredns:v1.13.2",
        localPathProvisioner: "sandkube.local/local-path-provisioner:v0.0.37",
        busybox: "sandkube.local/busybox:latest",
      },
      ports: DEFAULT_COREDNS_PORTS,
      apiServer: { host: config.nodeIP, port: securePort },
      storage: true,
    };
    const addons = renderAddons(params);
    const objects = addons.flatMap((addon) => [...addon.objects]);

    const lines: string[] = [];
    await applyAddons(admin, addons, {
      timeoutMs: 60_000,
      waitForAvailable: false,
      onProgress: (line) => lines.push(line),
    });
    assert.deepEqual(lines, [
      "applied coredns (6 objects)",
      "applied local-path-storage (9 objects)",
    ]);

    const kubeconfig = new KubeConfig();
    kubeconfig.loadFromFile(admin);
    const client = KubernetesObjectApi.makeApiClient(kubeconfig);
    const readAll = async () => {
      const versions = new Map<string, string>();
      for (const object of objects) {
        const stored = await client.read({
          apiVersion: object.apiVersion ?? "",
          kind: object.kind ?? "",
          metadata: { name: object.metadata?.name ?? "", namespace: object.metadata?.namespace },
        });
        const managers = (stored.metadata?.managedFields ?? []).filter(
          (m) => m.manager === FIELD_MANAGER && m.operation === "Apply",
        );
        assert.equal(managers.length, 1, `${key(object)} is applied by ${FIELD_MANAGER}`);
        versions.set(key(object), stored.metadata?.resourceVersion ?? "");
      }
      return versions;
    };
    const first = await readAll();
    assert.equal(first.size, objects.length);

    // What the apiserver kept is what was rendered.
    const read = <T extends KubernetesObject>(
      kind: string,
      apiVersion: string,
      name: string,
      namespace?: string,
    ) => client.read({ apiVersion, kind, metadata: { name, namespace } }) as Promise<T>;
    const service = await read<V1Service>("Service", "v1", "kube-dns", "kube-system");
    assert.equal(service.spec?.clusterIP, "10.96.0.10");
    assert.deepEqual(
      service.spec?.ports?.map((p) => `${p.name}:${p.port}/${p.protocol}->${String(p.targetPort)}`),
      ["dns:53/UDP->53", "dns-tcp:53/TCP->53", "metrics:9153/TCP->9153"],
    );
    const corefile = await read<V1ConfigMap>("ConfigMap", "v1", "coredns", "kube-system");
    assert.equal(corefile.data?.["Corefile"], renderCorefile(params));
    const coredns = await read<V1Deployment>("Deployment", "apps/v1", "coredns", "kube-system");
    assert.equal(coredns.spec?.template.spec?.hostNetwork, true);
    assert.equal(coredns.spec?.template.spec?.dnsPolicy, "Default");
    const storageClass = await read<V1StorageClass>(
      "StorageClass",
      "storage.k8s.io/v1",
      "local-path",
    );
    assert.equal(
      storageClass.metadata?.annotations?.["storageclass.kubernetes.io/is-default-class"],
      "true",
    );
    const classes = ensureSuccess(await kubectl("get", "storageclass")).stdout;
    assert.match(
      classes,
      /local-path \(default\)\s+rancher\.io\/local-path\s+Delete\s+WaitForFirstConsumer/,
    );

    // A second apply of the same objects writes nothing.
    await applyAddons(admin, addons, { timeoutMs: 60_000, waitForAvailable: false });
    assert.deepEqual(await readAll(), first);

    // An edit by another field manager is taken back by the next apply.
    ensureSuccess(
      await kubectl(
        "patch",
        "configmap",
        "coredns",
        "-n",
        "kube-system",
        "--type=merge",
        "-p",
        '{"data":{"Corefile":".:53 {\\n    whoami\\n}\\n"}}',
      ),
    );
    const edited = await read<V1ConfigMap>("ConfigMap", "v1", "coredns", "kube-system");
    assert.match(edited.data?.["Corefile"] ?? "", /whoami/);
    await applyAddons(admin, addons, { timeoutMs: 60_000, waitForAvailable: false });
    const restored = await read<V1ConfigMap>("ConfigMap", "v1", "coredns", "kube-system");
    assert.equal(restored.data?.["Corefile"], renderCorefile(params));

    // The demo chart renders with the real helm, and the apiserver accepts every object; its
    // claim, which names no class, gets the default class the add-on made.
    await t.test(
      "the sandkube-demo chart renders and the apiserver accepts it (server-side dry run)",
      { skip: existsSync(HELM) ? false : `SKIPPED: ${HELM} is missing; run sandkube install` },
      async () => {
        // The ServiceAccount admission plugin wants the namespace's `default` account for the
        // test Pod; the controller-manager that would make it is not running here.
        ensureSuccess(await kubectl("create", "serviceaccount", "default", "-n", "default"));
        const rendered = ensureSuccess(
          await runCommand([HELM, "template", "demo", CHART, "--namespace", "default"], {
            timeoutMs: 60_000,
          }),
        ).stdout;
        const applied = ensureSuccess(
          await runCommand(
            [KUBECTL, "--kubeconfig", admin, "apply", "--dry-run=server", "-o", "json", "-f", "-"],
            { input: rendered, timeoutMs: 60_000 },
          ),
        ).stdout;
        const items = (
          JSON.parse(applied) as {
            items: { kind: string; spec?: { storageClassName?: string } }[];
          }
        ).items;
        assert.deepEqual(
          items.map((item) => item.kind),
          ["ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "Pod"],
        );
        const claim = items.find((item) => item.kind === "PersistentVolumeClaim");
        assert.equal(claim?.spec?.storageClassName, "local-path");
      },
    );

    // No controller-manager, no kubelet: the Deployment never becomes available, and the bounded
    // wait says which one and what it saw.
    await assert.rejects(applyAddons(admin, addons, { timeoutMs: 2_000 }), (error: unknown) => {
      assert.ok(error instanceof AddonError, String(error));
      assert.match(
        error.message,
        /^timed out waiting for Deployment kube-system\/coredns has 0\/1 available; no pods$/,
      );
      return true;
    });
  },
);
