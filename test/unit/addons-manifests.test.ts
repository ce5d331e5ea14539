import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import {
  dumpYaml,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Deployment,
  type V1Pod,
  type V1Service,
  type V1StorageClass,
} from "@kubernetes/client-node";
import { parse, stringify } from "yaml";
import { DEFAULT_COREDNS_PORTS, renderCorefile } from "../../src/addons/corefile.js";
import {
  DEFAULT_CLASS_ANNOTATION,
  LOCAL_PATH_CONFIG_MAP,
  localPathStorageDir,
} from "../../src/addons/local-path.js";
import {
  ADDON_LABEL,
  addonParamsFor,
  type AddonParams,
  COREDNS_ADDON,
  renderAddons,
  STORAGE_ADDON,
} from "../../src/addons/manifests.js";
import { pkiTestConfig } from "./pki-fixture.js";

const PARAMS: AddonParams = {
  clusterDNS: "10.96.0.10",
  clusterDomain: "cluster.local",
  nodeIP: "10.244.0.1",
  dataDir: "/var/lib/sandkube",
  images: {
    coredns: "sandkube.local/coredns:v1.13.2",
    localPathProvisioner: "sandkube.local/local-path-provisioner:v0.0.37",
    busybox: "sandkube.local/busybox:latest",
  },
  ports: DEFAULT_COREDNS_PORTS,
  storage: true,
};

/** Every value differs from the defaults, so a literal hiding in a renderer shows up. */
const OTHER: AddonParams = {
  clusterDNS: "10.100.0.53",
  clusterDomain: "corp.internal",
  nodeIP: "10.7.0.1",
  dataDir: "/srv/kube",
  images: {
    coredns: "example.local/dns:1",
    localPathProvisioner: "example.local/lpp:2",
    busybox: "example.local/bb:3",
  },
  ports: { dns: 5353, metrics: 9253, health: 9280, ready: 9281 },
  apiServer: { host: "10.7.0.1", port: 7443 },
  storage: true,
};

function allObjects(params: AddonParams): KubernetesObject[] {
  return renderAddons(params).flatMap((addon) => [...addon.objects]);
}

function find<T extends KubernetesObject>(
  objects: readonly KubernetesObject[],
  kind: string,
  name: string,
): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata?.name === name);
  assert.equal(found.length, 1, `exactly one ${kind} ${name}`);
  return found[0] as T;
}

function coreDnsPieces(params: AddonParams) {
  const objects = allObjects(params);
  const deployment = find<V1Deployment>(objects, "Deployment", "coredns");
  const podSpec = deployment.spec?.template.spec;
  assert.ok(podSpec);
  const container = podSpec.containers[0];
  assert.ok(container);
  return {
    objects,
    deployment,
    podSpec,
    container,
    service: find<V1Service>(objects, "Service", "kube-dns"),
    corefile: find<V1ConfigMap>(objects, "ConfigMap", "coredns").data?.["Corefile"] ?? "",
  };
}

test("the Corefile is kubeadm's, with every listener on the node's address", () => {
  assert.equal(
    renderCorefile(PARAMS),
    [
      ".:53 {",
      "    bind 10.244.0.1",
      "    errors",
      "    health 10.244.0.1:9180 {",
      "       lameduck 5s",
      "    }",
      "    ready 10.244.0.1:9181",
      "    kubernetes cluster.local in-addr.arpa ip6.arpa {",
      "       pods insecure",
      "       fallthrough in-addr.arpa ip6.arpa",
      "       ttl 30",
      "    }",
      "    prometheus 10.244.0.1:9153",
      "    forward . /etc/resolv.conf {",
      "       max_concurrent 1000",
      "    }",
      "    cache 30",
      "    loop",
      "    reload",
      "    loadbalance",
      "}",
      "",
    ].join("\n"),
  );
  const other = renderCorefile(OTHER);
  assert.match(other, /^\.:5353 \{\n {4}bind 10\.7\.0\.1\n/);
  assert.match(other, /\n {4}health 10\.7\.0\.1:9280 \{\n/);
  assert.match(other, /\n {4}ready 10\.7\.0\.1:9281\n/);
  assert.match(other, /\n {4}prometheus 10\.7\.0\.1:9253\n/);
  assert.match(other, /\n {4}kubernetes corp\.internal in-addr\.arpa ip6\.arpa \{\n/);
  assert.doesNotMatch(other, /10\.244|cluster\.local|9180|9181|:53 /);
});

test("kube-dns sits at the cluster DNS address with kubeadm's ports, in front of CoreDNS's pods", () => {
  for (const params of [PARAMS, OTHER]) {
    const { service, deployment, container } = coreDnsPieces(params);
    assert.equal(service.metadata?.namespace, "kube-system");
    assert.equal(service.spec?.clusterIP, params.clusterDNS);
    assert.deepEqual(
      service.spec?.ports?.map((p) => [p.name, p.port, p.protocol, p.targetPort]),
      [
        ["dns", 53, "UDP", params.ports.dns],
        ["dns-tcp", 53, "TCP", params.ports.dns],
        ["metrics", 9153, "TCP", params.ports.metrics],
      ],
    );
    assert.deepEqual(service.spec?.selector, { "k8s-app": "kube-dns" });
    assert.deepEqual(deployment.spec?.template.metadata?.labels, service.spec?.selector);
    assert.deepEqual(deployment.spec?.selector.matchLabels, service.spec?.selector);
    // Every target port is a port the container declares with the same protocol.
    for (const port of service.spec?.ports ?? []) {
      assert.ok(
        container.ports?.some(
          (c) => c.containerPort === port.targetPort && c.protocol === port.protocol,
        ),
        `container port for ${port.name}`,
      );
    }
  }
});

test("CoreDNS runs in the sandbox's netns, and binds and is probed where it listens", () => {
  for (const params of [PARAMS, OTHER]) {
    const { deployment, podSpec, container, corefile } = coreDnsPieces(params);
    assert.equal(deployment.metadata?.namespace, "kube-system");
    assert.equal(deployment.spec?.replicas, 1);
    assert.equal(podSpec.hostNetwork, true);
    assert.equal(podSpec.dnsPolicy, "Default");
    assert.equal(podSpec.priorityClassName, "system-cluster-critical");
    assert.equal(podSpec.serviceAccountName, "coredns");

    const bind = /\n {4}bind (\S+)\n/.exec(corefile)?.[1];
    assert.equal(bind, params.nodeIP);
    const listener = (plugin: string) => {
      const match = new RegExp(`\\n {4}${plugin} (\\S+):(\\d+)`).exec(corefile);
      assert.ok(match, `${plugin} has an address in the Corefile`);
      return { host: match[1], port: Number(match[2]) };
    };
    const health = listener("health");
    const ready = listener("ready");
    assert.deepEqual(health, { host: params.nodeIP, port: params.ports.health });
    assert.deepEqual(ready, { host: params.nodeIP, port: params.ports.ready });
    assert.deepEqual(listener("prometheus"), { host: params.nodeIP, port: params.ports.metrics });
    assert.match(corefile, new RegExp(`^\\.:${params.ports.dns} \\{`));

    const live = container.livenessProbe?.httpGet;
    const readiness = container.readinessProbe?.httpGet;
    assert.deepEqual([live?.host, live?.port, live?.path], [health.host, health.port, "/health"]);
    assert.deepEqual(
      [readiness?.host, readiness?.port, readiness?.path],
      [ready.host, ready.port, "/ready"],
    );

    assert.deepEqual(container.args, ["-conf", "/etc/coredns/Corefile"]);
    assert.equal(container.image, params.images.coredns);
    assert.deepEqual(container.securityContext?.capabilities, {
      add: ["NET_BIND_SERVICE"],
      drop: ["ALL"],
    });
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    // The Corefile reaches the container: the volume names the ConfigMap holding it.
    const volume = podSpec.volumes?.find((v) => v.name === container.volumeMounts?.[0]?.name);
    assert.equal(volume?.configMap?.name, "coredns");
    assert.equal(container.volumeMounts?.[0]?.mountPath, "/etc/coredns");
    assert.deepEqual(
      podSpec.tolerations?.map((t) => t.key),
      [
        "CriticalAddonsOnly",
        "node-role.kubernetes.io/control-plane",
        "node.kubernetes.io/not-ready",
      ],
    );
  }
});

test("CoreDNS reaches kube-apiserver directly only when told where", () => {
  const direct = coreDnsPieces(OTHER).container.env;
  assert.deepEqual(direct, [
    { name: "KUBERNETES_SERVICE_HOST", value: "10.7.0.1" },
    { name: "KUBERNETES_SERVICE_PORT", value: "7443" },
  ]);
  assert.equal(coreDnsPieces(PARAMS).container.env, undefined);
});

test("CoreDNS's RBAC is kubeadm's system:coredns, bound to its service account", () => {
  const objects = allObjects(PARAMS);
  const role = find<KubernetesObject & { rules: { resources: string[]; verbs: string[] }[] }>(
    objects,
    "ClusterRole",
    "system:coredns",
  );
  assert.deepEqual(
    role.rules.map((r) => [r.resources, r.verbs]),
    [
      [
        ["endpoints", "services", "pods", "namespaces"],
        ["list", "watch"],
      ],
      [["endpointslices"], ["list", "watch"]],
    ],
  );
  const binding = find<
    KubernetesObject & {
      subjects: { name: string; namespace: string }[];
      roleRef: { name: string };
    }
  >(objects, "ClusterRoleBinding", "system:coredns");
  assert.equal(binding.roleRef.name, "system:coredns");
  assert.deepEqual(
    binding.subjects.map((s) => `${s.namespace}/${s.name}`),
    ["kube-system/coredns"],
  );
  find(objects, "ServiceAccount", "coredns");
});

test("local-path is the one default StorageClass, provisioning per pod and deleting with the claim", () => {
  const classes = allObjects(PARAMS).filter((o) => o.kind === "StorageClass") as V1StorageClass[];
  assert.equal(classes.length, 1);
  const [storageClass] = classes;
  assert.equal(storageClass?.metadata?.name, "local-path");
  assert.equal(storageClass?.metadata?.annotations?.[DEFAULT_CLASS_ANNOTATION], "true");
  assert.equal(storageClass?.provisioner, "rancher.io/local-path");
  assert.equal(storageClass?.volumeBindingMode, "WaitForFirstConsumer");
  assert.equal(storageClass?.reclaimPolicy, "Delete");
});

test("volumes live under the data dir, made and removed by helper pods from the local busybox", () => {
  for (const params of [PARAMS, OTHER]) {
    const objects = allObjects(params);
    const config = find<V1ConfigMap>(objects, "ConfigMap", LOCAL_PATH_CONFIG_MAP);
    assert.equal(config.metadata?.namespace, "local-path-storage");
    const parsed = JSON.parse(config.data?.["config.json"] ?? "") as {
      nodePathMap: { node: string; paths: string[] }[];
    };
    assert.deepEqual(parsed.nodePathMap, [
      { node: "DEFAULT_PATH_FOR_NON_LISTED_NODES", paths: [join(params.dataDir, "storage")] },
    ]);
    assert.equal(localPathStorageDir(params.dataDir), join(params.dataDir, "storage"));
    assert.ok(parsed.nodePathMap[0]?.paths[0]?.startsWith(`${params.dataDir}/`));

    assert.match(config.data?.["setup"] ?? "", /^#!\/bin\/sh\n[^]*mkdir -m 0777 -p "\$VOL_DIR"/);
    assert.match(config.data?.["teardown"] ?? "", /^#!\/bin\/sh\n[^]*rm -rf "\$VOL_DIR"/);

    const helper = parse(config.data?.["helperPod.yaml"] ?? "") as V1Pod;
    assert.equal(helper.kind, "Pod");
    const containers = helper.spec?.containers ?? [];
    assert.equal(containers.length, 1, "the provisioner wants exactly one helper container");
    assert.equal(containers[0]?.image, params.images.busybox);
    assert.equal(containers[0]?.imagePullPolicy, "Never");
    // What upstream's validateHelperPodTemplate (util.go) refuses without an unsafe flag.
    assert.equal(helper.spec?.volumes, undefined);
    assert.equal(helper.spec?.nodeName, undefined);
    assert.equal(helper.spec?.serviceAccountName, undefined);
    assert.equal(helper.spec?.hostNetwork, undefined);
    assert.equal(containers[0]?.volumeMounts, undefined);

    const provisioner = find<V1Deployment>(objects, "Deployment", "local-path-provisioner");
    const container = provisioner.spec?.template.spec?.containers[0];
    assert.equal(container?.image, params.images.localPathProvisioner);
    assert.deepEqual(container?.command, [
      "local-path-provisioner",
      "--debug",
      "start",
      "--config",
      "/etc/config/config.json",
    ]);
    const volume = provisioner.spec?.template.spec?.volumes?.[0];
    assert.equal(volume?.configMap?.name, LOCAL_PATH_CONFIG_MAP);
    assert.equal(container?.volumeMounts?.[0]?.mountPath, "/etc/config/");
  }
});

test("every object is complete, labelled with its add-on, and comes after its namespace", () => {
  const addons = renderAddons(PARAMS);
  assert.deepEqual(
    addons.map((a) => a.name),
    [COREDNS_ADDON, STORAGE_ADDON],
  );
  const clusterScoped = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass"]);
  const namespaces = new Set(["kube-system"]);
  for (const addon of addons) {
    for (const object of addon.objects) {
      const what = `${object.kind} ${object.metadata?.name}`;
      assert.ok(object.apiVersion, `${what} has an apiVersion`);
      assert.ok(object.kind, `${what} has a kind`);
      assert.ok(object.metadata?.name, `${what} has a name`);
      assert.equal(object.metadata?.labels?.[ADDON_LABEL], addon.name, `${what} label`);
      if (object.kind === "Namespace") namespaces.add(object.metadata?.name ?? "");
      if (clusterScoped.has(object.kind ?? "")) {
        assert.equal(object.metadata?.namespace, undefined, `${what} is cluster-scoped`);
      } else {
        const namespace = object.metadata?.namespace ?? "";
        assert.ok(namespaces.has(namespace), `${what} comes after its namespace ${namespace}`);
      }
    }
  }
});

test("every container runs a local image, never pulled", () => {
  for (const object of allObjects(OTHER)) {
    if (object.kind !== "Deployment") continue;
    for (const container of (object as V1Deployment).spec?.template.spec?.containers ?? []) {
      assert.equal(
        container.imagePullPolicy,
        "Never",
        `${object.metadata?.name}/${container.name}`,
      );
      assert.ok(Object.values(OTHER.images).includes(container.image ?? ""));
    }
  }
});

test("the client sends every field: its serializer drops nothing sandkube wrote", () => {
  // KubernetesObjectApi.patch serializes with the same ObjectSerializer that dumpYaml uses, and
  // that serializer keeps only the attributes its typed models know.
  for (const object of allObjects(OTHER)) {
    assert.deepEqual(
      parse(dumpYaml(object)),
      JSON.parse(JSON.stringify(object)),
      `${object.kind} ${object.metadata?.name}`,
    );
  }
});

test("rendering is deterministic", () => {
  assert.deepEqual(renderAddons(PARAMS), renderAddons(PARAMS));
  assert.equal(stringify(renderAddons(OTHER)), stringify(renderAddons(OTHER)));
  assert.notEqual(stringify(renderAddons(PARAMS)), stringify(renderAddons(OTHER)));
});

test("parameters that would break the add-ons later are refused now, by name", () => {
  const bad: [Partial<AddonParams>, RegExp][] = [
    [{ nodeIP: "10.244.0.256" }, /nodeIP "10\.244\.0\.256" is not an IPv4 address/],
    [{ clusterDNS: "kube-dns" }, /clusterDNS "kube-dns" is not an IPv4 address/],
    [{ clusterDomain: "Cluster.Local" }, /cluster domain "Cluster\.Local"/],
    [{ dataDir: "var/lib/sandkube" }, /data dir "var\/lib\/sandkube" is not an absolute path/],
    [{ ports: { ...DEFAULT_COREDNS_PORTS, ready: 9180 } }, /ports health and ready are both 9180/],
    [{ ports: { ...DEFAULT_COREDNS_PORTS, dns: 0 } }, /port dns is 0/],
    [{ images: { ...PARAMS.images, busybox: "" } }, /image busybox "" is not an image reference/],
  ];
  for (const [change, message] of bad) {
    assert.throws(() => renderAddons({ ...PARAMS, ...change }), message);
  }
});

test("a node's parameters come from its ClusterConfig, with the API server where clients reach it", () => {
  const images = PARAMS.images;
  const onNode = addonParamsFor(pkiTestConfig("/var/lib/sandkube"), images);
  assert.deepEqual(onNode, { ...PARAMS, apiServer: { host: "10.244.0.1", port: 6443 } });
  const wildcard = addonParamsFor(
    pkiTestConfig("/srv/k", { apiServerBindAddress: "0.0.0.0", apiServerPort: 7443 }),
    images,
  );
  assert.deepEqual(wildcard.apiServer, { host: "127.0.0.1", port: 7443 });
  assert.equal(wildcard.dataDir, "/srv/k");
});

test("where pods share the node's network only, the storage add-on is left out (its helper pods need their own)", () => {
  const names = renderAddons({ ...PARAMS, storage: false }).map((addon) => addon.name);
  assert.deepEqual(names, [COREDNS_ADDON]);
  const hostOnly = addonParamsFor(
    { ...pkiTestConfig("/var/lib/sandkube"), hostNetworkOnly: true, nodeLink: "lo" },
    PARAMS.images,
  );
  assert.equal(hostOnly.storage, false);
  assert.equal(addonParamsFor(pkiTestConfig("/var/lib/sandkube"), PARAMS.images).storage, true);
});
