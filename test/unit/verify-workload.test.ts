import { test } from "node:test";
import assert from "node:assert/strict";
import { dumpYaml, loadAllYaml } from "@kubernetes/client-node";
import { parse, parseAllDocuments } from "yaml";
import {
  CONFIG_DIR,
  DEFAULT_VERIFY_IMAGE,
  HTTP_PORT,
  JOB_LOG_LINE,
  SECRET_ENV,
  SERVE_DIR,
  DEFAULT_DNS_IMAGE,
  DNS_PROBE_ADDRESS,
  DNS_PROBE_NAME,
  DNS_PROBE_PORT,
  HOSTNAME_PATH,
  PVC_FILE,
  PVC_MOUNT,
  SERVICE_PORT,
  dnsProbeCorefile,
  pvcReader,
  randomSuffix,
  renderWorkload,
  verifyNamespace,
  workloadYaml,
} from "../../src/verify/workload.js";

/** A parsed manifest, read loosely: the test checks the shape the API server will see. */
type Manifest = Record<string, unknown>;

function docs(text: string): Manifest[] {
  return parseAllDocuments(text).map((d) => {
    assert.deepEqual(d.errors, [], "every document parses");
    return d.toJS() as Manifest;
  });
}

function at(value: unknown, ...path: (string | number)[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string | number, unknown>)[key];
  }
  return v;
}

/** The base workload's own objects by kind; the optional parts have their own tests below. */
const BASE_NAMES: Record<string, string> = {
  ConfigMap: "web-content",
  Secret: "web-secret",
  Deployment: "web",
  Job: "done",
  Pod: "client",
};

function rendered(): {
  ns: Manifest[];
  rest: Manifest[];
  byKind: (kind: string) => Manifest;
  byName: (kind: string, name: string) => Manifest;
} {
  const yaml = workloadYaml(
    renderWorkload({ suffix: "abc123", secretValue: "hunter2", pvcToken: "tok-1" }),
  );
  const ns = docs(yaml.namespace);
  const rest = docs(yaml.rest);
  const byName = (kind: string, name: string): Manifest => {
    const found = rest.filter((m) => m["kind"] === kind && at(m, "metadata", "name") === name);
    assert.equal(found.length, 1, `exactly one ${kind} ${name}`);
    return found[0] as Manifest;
  };
  const byKind = (kind: string): Manifest => byName(kind, BASE_NAMES[kind] ?? "?");
  return { ns, rest, byKind, byName };
}

test("the namespace comes alone and first, and every other object lives in it", () => {
  const { ns, rest } = rendered();
  assert.equal(ns.length, 1);
  assert.equal(at(ns[0], "kind"), "Namespace");
  assert.equal(at(ns[0], "metadata", "name"), "sandkube-verify-abc123");
  assert.deepEqual(
    rest.map((m) => `${String(m["kind"])}/${String(at(m, "metadata", "name"))}`),
    [
      "ConfigMap/web-content",
      "Secret/web-secret",
      "Deployment/web",
      "Job/done",
      "Pod/client",
      "Service/web",
      "Service/web-nodeport",
      "ConfigMap/dns-probe-corefile",
      "Deployment/dns-probe",
      "Service/dns-probe",
      "PersistentVolumeClaim/data",
      "Pod/pvc-writer",
    ],
  );
  for (const m of rest) assert.equal(at(m, "metadata", "namespace"), "sandkube-verify-abc123");
});

test("the ConfigMap holds the index.html the checks compare against", () => {
  const w = renderWorkload({ suffix: "abc123" });
  const { byKind } = rendered();
  const html = at(byKind("ConfigMap"), "data", "index.html");
  assert.equal(typeof html, "string");
  assert.match(html as string, /sandkube verify abc123/);
  assert.equal(w.objects.configMap.data?.["index.html"], w.indexHtml);
});

test("the Secret carries the value exec reads back from the environment", () => {
  const { byKind } = rendered();
  const secret = byKind("Secret");
  assert.equal(at(secret, "stringData", "token"), "hunter2");
});

test("the Deployment: 3 replicas of the local busybox image, never pulled, serving on 8080", () => {
  const { byKind } = rendered();
  const dep = byKind("Deployment");
  assert.equal(at(dep, "apiVersion"), "apps/v1");
  assert.equal(at(dep, "spec", "replicas"), 3);
  const spec = at(dep, "spec", "template", "spec");
  const labels = at(dep, "spec", "template", "metadata", "labels");
  assert.deepEqual(at(dep, "spec", "selector", "matchLabels"), labels);
  const web = at(spec, "containers", 0);
  assert.equal(at(web, "image"), DEFAULT_VERIFY_IMAGE);
  assert.equal(at(web, "imagePullPolicy"), "Never");
  const script = (at(web, "command") as string[]).join(" ");
  assert.match(script, new RegExp(`httpd -f -p ${HTTP_PORT} -h ${SERVE_DIR}`));
  assert.equal(at(web, "ports", 0, "containerPort"), HTTP_PORT);
});

test("the Deployment mounts the ConfigMap as a volume and takes the Secret as env", () => {
  const { byKind } = rendered();
  const spec = at(byKind("Deployment"), "spec", "template", "spec");
  const volumes = at(spec, "volumes") as Manifest[];
  const cmVolume = volumes.find((v) => at(v, "configMap", "name") === "web-content");
  assert.ok(cmVolume, "a configMap volume of web-content");
  const web = at(spec, "containers", 0);
  const mounts = at(web, "volumeMounts") as Manifest[];
  assert.ok(mounts.some((m) => m["name"] === cmVolume["name"] && m["mountPath"] === CONFIG_DIR));
  const env = (at(web, "env") as Manifest[]).find((e) => e["name"] === SECRET_ENV);
  assert.deepEqual(at(env, "valueFrom", "secretKeyRef"), { name: "web-secret", key: "token" });
});

test("an initContainer writes into the emptyDir that the main container serves", () => {
  const { byKind } = rendered();
  const spec = at(byKind("Deployment"), "spec", "template", "spec");
  const volumes = at(spec, "volumes") as Manifest[];
  const emptyDir = volumes.find((v) => v["emptyDir"] !== undefined);
  assert.ok(emptyDir, "an emptyDir volume");
  const init = at(spec, "initContainers", 0);
  const initMount = (at(init, "volumeMounts") as Manifest[]).find(
    (m) => m["name"] === emptyDir["name"],
  );
  assert.ok(initMount, "the initContainer mounts the emptyDir");
  assert.notEqual(initMount["readOnly"], true, "and may write to it");
  const initScript = (at(init, "command") as string[]).join(" ");
  assert.match(initScript, new RegExp(`> ?${SERVE_DIR}/|${SERVE_DIR}/index.html`));
  const web = at(spec, "containers", 0);
  const webMount = (at(web, "volumeMounts") as Manifest[]).find(
    (m) => m["name"] === emptyDir["name"],
  );
  assert.equal(at(webMount, "mountPath"), SERVE_DIR);
  assert.match((at(web, "command") as string[]).join(" "), new RegExp(`-h ${SERVE_DIR}`));
});

test("every container is non-root, read-only, without capabilities or privilege escalation", () => {
  const { byKind, byName } = rendered();
  const podSpecs = [
    at(byKind("Deployment"), "spec", "template", "spec"),
    at(byKind("Job"), "spec", "template", "spec"),
    at(byKind("Pod"), "spec"),
    at(byName("Deployment", "dns-probe"), "spec", "template", "spec"),
    at(byName("Pod", "pvc-writer"), "spec"),
    at(pvcReader(renderWorkload({ suffix: "abc123" })), "spec"),
  ];
  let containers = 0;
  for (const spec of podSpecs) {
    assert.equal(at(spec, "securityContext", "runAsNonRoot"), true);
    for (const c of [
      ...((at(spec, "initContainers") as Manifest[] | undefined) ?? []),
      ...(at(spec, "containers") as Manifest[]),
    ]) {
      containers++;
      const sc = at(c, "securityContext");
      assert.equal(at(sc, "runAsNonRoot"), true, `${String(c["name"])} runAsNonRoot`);
      const uid = at(sc, "runAsUser");
      assert.ok(uid === 1000 || uid === 65534, `${String(c["name"])} runs as 1000 or 65534`);
      assert.equal(at(sc, "readOnlyRootFilesystem"), true);
      assert.equal(at(sc, "allowPrivilegeEscalation"), false);
      assert.deepEqual(at(sc, "capabilities", "drop"), ["ALL"]);
      assert.equal(at(sc, "capabilities", "add"), undefined);
      assert.equal(at(c, "imagePullPolicy"), "Never");
    }
  }
  assert.equal(
    containers,
    7,
    "web, its initContainer, the job's, the client's, CoreDNS's, the PVC writer's and reader's",
  );
});

test("the web container has an httpGet readiness probe on the port it serves", () => {
  const { byKind } = rendered();
  const web = at(byKind("Deployment"), "spec", "template", "spec", "containers", 0);
  assert.equal(at(web, "readinessProbe", "httpGet", "port"), HTTP_PORT);
  assert.equal(at(web, "readinessProbe", "httpGet", "path"), "/");
});

test("the Job runs `echo done` once and does not restart", () => {
  const { byKind } = rendered();
  const job = byKind("Job");
  assert.equal(at(job, "apiVersion"), "batch/v1");
  const spec = at(job, "spec", "template", "spec");
  assert.equal(at(spec, "restartPolicy"), "Never");
  assert.deepEqual(at(spec, "containers", 0, "command"), ["sh", "-c", `echo ${JOB_LOG_LINE}`]);
});

test("the client pod stays up for pod-to-pod checks", () => {
  const { byKind } = rendered();
  const pod = byKind("Pod");
  assert.equal(at(pod, "metadata", "name"), "client");
  assert.match((at(pod, "spec", "containers", 0, "command") as string[]).join(" "), /sleep/);
});

test("the image and uid are parameters", () => {
  const w = renderWorkload({ suffix: "x", image: "example.local/bb:1", uid: 1000 });
  const web = w.objects.deployment.spec?.template.spec?.containers[0];
  assert.equal(web?.image, "example.local/bb:1");
  assert.equal(web?.securityContext?.runAsUser, 1000);
  assert.throws(() => renderWorkload({ suffix: "x", uid: 0 }), /uid must be a positive integer/);
});

test("namespace suffixes must make a DNS label", () => {
  assert.equal(verifyNamespace("a1-b2"), "sandkube-verify-a1-b2");
  assert.throws(() => verifyNamespace("Upper"), /lower-case/);
  assert.throws(() => verifyNamespace("-x"), /lower-case/);
  assert.throws(() => verifyNamespace("x".repeat(48)), /at most 47/);
  const s = randomSuffix();
  assert.match(s, /^[a-z0-9]{10}$/);
  assert.equal(verifyNamespace(s), `sandkube-verify-${s}`);
});

test("every field is one Kubernetes 1.34's API knows: the typed models keep them all", () => {
  // client-node's models are generated from the 1.34 OpenAPI schema and drop any field they do not
  // know, so a misspelled or misplaced field would be missing after this round trip.
  const yaml = workloadYaml(renderWorkload({ suffix: "schema" }));
  const text = `${yaml.namespace}---\n${yaml.rest}`;
  const plain = docs(text);
  const typed = loadAllYaml(text) as object[];
  assert.equal(typed.length, plain.length);
  typed.forEach((object, i) => assert.deepEqual(parse(dumpYaml(object)), plain[i]));
  const misspelled = loadAllYaml(
    "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containerz: []}\n",
  );
  assert.notDeepEqual(
    parse(dumpYaml(misspelled[0])),
    docs("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containerz: []}\n")[0],
  );
});

test("each web replica serves its own pod name, written by the initContainer from the downward API", () => {
  const { byKind } = rendered();
  const spec = at(byKind("Deployment"), "spec", "template", "spec");
  const init = (at(spec, "initContainers", 0, "command") as string[]).join(" ");
  assert.match(init, new RegExp(`echo "\\$POD_NAME" > ${SERVE_DIR}${HOSTNAME_PATH}`));
  assert.deepEqual(at(spec, "initContainers", 0, "env", 0), {
    name: "POD_NAME",
    valueFrom: { fieldRef: { fieldPath: "metadata.name" } },
  });
  assert.equal(
    at(spec, "terminationGracePeriodSeconds"),
    2,
    "a deleted replica serves one second longer than a proxy gets to follow",
  );
});

test("the Services: web (ClusterIP) and web-nodeport (NodePort) over the web pods' named port", () => {
  const { byKind, byName } = rendered();
  const labels = at(byKind("Deployment"), "spec", "template", "metadata", "labels");
  for (const [name, type] of [
    ["web", "ClusterIP"],
    ["web-nodeport", "NodePort"],
  ] as const) {
    const svc = byName("Service", name);
    assert.equal(at(svc, "spec", "type"), type);
    assert.deepEqual(at(svc, "spec", "selector"), labels);
    assert.equal(at(svc, "spec", "ports", 0, "port"), SERVICE_PORT);
    assert.equal(at(svc, "spec", "ports", 0, "targetPort"), "http");
    assert.equal(at(svc, "spec", "ports", 0, "nodePort"), undefined, "the API server picks it");
  }
  const web = at(byKind("Deployment"), "spec", "template", "spec", "containers", 0);
  assert.equal(at(web, "ports", 0, "name"), "http");
});

test("the UDP Service: port 53/UDP to a non-root CoreDNS on 5353 that knows one name", () => {
  const { byName } = rendered();
  const svc = byName("Service", "dns-probe");
  assert.deepEqual(at(svc, "spec", "ports"), [
    { name: "dns", port: 53, targetPort: DNS_PROBE_PORT, protocol: "UDP" },
  ]);
  const dep = byName("Deployment", "dns-probe");
  assert.equal(at(dep, "spec", "replicas"), 1);
  assert.deepEqual(at(svc, "spec", "selector"), at(dep, "spec", "template", "metadata", "labels"));
  const c = at(dep, "spec", "template", "spec", "containers", 0);
  assert.equal(at(c, "image"), DEFAULT_DNS_IMAGE);
  assert.equal(at(c, "imagePullPolicy"), "Never");
  assert.deepEqual(at(c, "args"), ["-conf", "/etc/coredns/Corefile"]);
  assert.equal(at(c, "securityContext", "runAsNonRoot"), true);
  const corefile = at(byName("ConfigMap", "dns-probe-corefile"), "data", "Corefile");
  assert.equal(corefile, dnsProbeCorefile());
  assert.match(corefile as string, new RegExp(`^\\.:${DNS_PROBE_PORT} \\{`));
  assert.match(
    corefile as string,
    new RegExp(`hosts \\{\\n\\s+${DNS_PROBE_ADDRESS.replace(/\./g, "\\.")} ${DNS_PROBE_NAME}\\n`),
  );
  assert.doesNotMatch(
    corefile as string,
    /forward/,
    "an answer can only come from the hosts block",
  );
  const image = renderWorkload({ suffix: "x", dnsImage: "example.local/coredns:1" });
  assert.equal(
    image.objects.udpService?.deployment.spec?.template.spec?.containers[0]?.image,
    "example.local/coredns:1",
  );
});

test("the PVC: no storageClassName; the writer stores the token, the reader reads it back", () => {
  const { byName } = rendered();
  const claim = byName("PersistentVolumeClaim", "data");
  assert.equal(at(claim, "spec", "storageClassName"), undefined, "the default StorageClass");
  assert.deepEqual(at(claim, "spec", "accessModes"), ["ReadWriteOnce"]);
  const writer = byName("Pod", "pvc-writer");
  assert.equal(at(writer, "spec", "restartPolicy"), "Never");
  assert.equal(at(writer, "spec", "volumes", 0, "persistentVolumeClaim", "claimName"), "data");
  assert.deepEqual(at(writer, "spec", "containers", 0, "command"), [
    "sh",
    "-c",
    `echo tok-1 > ${PVC_MOUNT}/${PVC_FILE}`,
  ]);
  const reader = pvcReader(renderWorkload({ suffix: "abc123" }));
  assert.equal(reader.metadata?.name, "pvc-reader");
  assert.equal(reader.metadata?.namespace, "sandkube-verify-abc123");
  assert.deepEqual(reader.spec?.containers[0]?.command, [
    "sh",
    "-c",
    `cat ${PVC_MOUNT}/${PVC_FILE}`,
  ]);
  assert.equal(reader.spec?.volumes?.[0]?.persistentVolumeClaim?.claimName, "data");
  assert.throws(
    () => renderWorkload({ suffix: "x", pvcToken: "a;rm" }),
    /must be \[A-Za-z0-9._-\]/,
  );
});

test("parts leave out what the chosen checks do not need; replicas are a parameter", () => {
  const bare = renderWorkload({ suffix: "x", parts: [] });
  assert.deepEqual(
    docs(workloadYaml(bare).rest).map((m) => m["kind"]),
    ["ConfigMap", "Secret", "Deployment", "Job", "Pod"],
  );
  const pvcOnly = renderWorkload({ suffix: "x", parts: ["pvc"] });
  assert.equal(pvcOnly.objects.services, undefined);
  assert.notEqual(pvcOnly.objects.pvc, undefined);
  assert.equal(renderWorkload({ suffix: "x", replicas: 5 }).objects.deployment.spec?.replicas, 5);
  assert.throws(() => renderWorkload({ suffix: "x", replicas: 1 }), /at least 2/);
});

test("the client pod has a writable scratch dir for the request loop's markers", () => {
  const { byKind } = rendered();
  const pod = byKind("Pod");
  const mount = at(pod, "spec", "containers", 0, "volumeMounts", 0);
  assert.equal(at(mount, "mountPath"), "/tmp");
  const volume = (at(pod, "spec", "volumes") as Manifest[]).find(
    (v) => v["name"] === at(mount, "name"),
  );
  assert.deepEqual(at(volume, "emptyDir"), {});
});

test("hostNetwork: one web replica, and every pod on the node's network with the cluster's DNS", () => {
  const workload = renderWorkload({ suffix: "host1", replicas: 3, hostNetwork: true });
  assert.equal(workload.replicas, 1, "two replicas would want one port of the node");
  assert.equal(workload.hostNetwork, true);
  const { objects } = workload;
  const specs = [
    objects.deployment.spec?.template.spec,
    objects.client.spec,
    objects.job.spec?.template.spec,
    objects.udpService?.deployment.spec?.template.spec,
  ];
  for (const spec of specs) {
    assert.equal(spec?.hostNetwork, true);
    assert.equal(spec?.dnsPolicy, "ClusterFirstWithHostNet");
  }
  assert.equal(objects.deployment.spec?.replicas, 1);
  const normal = renderWorkload({ suffix: "pods1" });
  assert.equal(normal.objects.client.spec?.hostNetwork, undefined);
  assert.equal(normal.replicas, 3);
});
