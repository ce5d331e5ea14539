import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import { nodeLayout } from "../../src/node/layout.js";
import { planAdaptations } from "../../src/plan/adaptations.js";
import type { ClusterConfig } from "../../src/plan/cluster-config.js";
import { DEFAULT_API_SERVER_PORT, DEFAULT_NETWORK } from "../../src/plan/cluster-config.js";
import { renderCniConflist } from "../../src/plan/cni-config.js";
import type { SandkubeCniNetConf } from "../../src/plan/cni-config.js";
import { componentArgs } from "../../src/plan/component-flags.js";
import {
  containerdFactSettings,
  renderContainerdConfig,
} from "../../src/plan/containerd-config.js";
import { renderKubeletConfig } from "../../src/plan/kubelet-config.js";
import { kubeconfigFiles, pkiFiles } from "../../src/plan/pki-files.js";
import type { Facts } from "../../src/probe/facts.js";
import type { DoctorFixture } from "../fixtures/doctor-fixtures.js";
import { replayFacts } from "../fixtures/doctor-fixtures.js";

// Every renderer runs on the three recorded machines; the output is parsed back with the same
// libraries and the fact-driven differences are asserted, then compared byte for byte with
// test/fixtures/golden/<fixture>/. SANDKUBE_UPDATE_GOLDEN=1 rewrites the golden files.

const FIXTURES: readonly DoctorFixture[] = ["host-kernel", "gvisor-runsc-new", "gvisor-runsc-old"];
const DATA_DIR = "/var/lib/sandkube";
const LAYOUT = nodeLayout(DATA_DIR);
const PLATFORM = "linux/amd64";

type DeepMutable<T> = T extends readonly (infer U)[]
  ? DeepMutable<U>[]
  : T extends object
    ? { -readonly [K in keyof T]: DeepMutable<T[K]> }
    : T;

const factsCache = new Map<DoctorFixture, Facts>();
async function factsOf(name: DoctorFixture): Promise<DeepMutable<Facts>> {
  let facts = factsCache.get(name);
  if (facts === undefined) {
    facts = await replayFacts(name);
    factsCache.set(name, facts);
  }
  return structuredClone(facts) as DeepMutable<Facts>;
}

/**
 * A fixed node. The snapshotter and runtime are what `up` would choose (not this slice's
 * decision): native where the doctor says overlayfs fails, sandkube-runtime inside gVisor.
 */
function testConfig(facts: Facts): ClusterConfig {
  const ids = planAdaptations(facts).map((a) => a.id);
  const runtime = facts.kernel.gvisor.verdict ? "sandkube" : "runc";
  return {
    dataDir: DATA_DIR,
    nodeName: "sandkube",
    ...DEFAULT_NETWORK,
    bindAddress: "127.0.0.1",
    apiServerBindAddress: DEFAULT_NETWORK.nodeIP,
    apiServerPort: DEFAULT_API_SERVER_PORT,
    runtime,
    serviceProxy: "kube-proxy",
    mtu: 1500,
    snapshotter: ids.includes("native-snapshotter") ? "native" : "overlayfs",
    imageUnpack: ids.includes("no-recursive-bind") ? "without-mounts" : "containerd",
    nodeLink: ids.includes("cni-host-network") ? "lo" : "sandkube0",
    hostNetworkOnly: ids.includes("cni-host-network"),
    sandboxImage: "registry.k8s.io/pause:3.10.2-sandkube",
    binaries: {
      etcd: "/opt/sandkube/bin/etcd",
      kubeApiserver: "/opt/sandkube/bin/kube-apiserver",
      kubeControllerManager: "/opt/sandkube/bin/kube-controller-manager",
      kubeScheduler: "/opt/sandkube/bin/kube-scheduler",
      kubelet: "/opt/sandkube/bin/kubelet",
      kubectl: "/opt/sandkube/bin/kubectl",
      containerd: "/opt/sandkube/bin/containerd",
      containerdShim: "/opt/sandkube/bin/containerd-shim-runc-v2",
      ctr: "/opt/sandkube/bin/ctr",
      ociRuntime:
        runtime === "sandkube" ? "/opt/sandkube/bin/sandkube-runtime" : "/opt/sandkube/bin/runc",
      cniBinDir: "/opt/sandkube/cni",
      kubeProxy: null,
    },
  };
}

interface Rendered {
  readonly "config.toml": string;
  readonly "kubelet-config.yaml": string;
  readonly "flags.json": string;
  readonly "conflist.json": string;
}

function renderAll(facts: Facts): Rendered {
  const config = testConfig(facts);
  return {
    "config.toml": renderContainerdConfig(config, facts, LAYOUT, { platform: PLATFORM }),
    "kubelet-config.yaml": renderKubeletConfig(config, facts, LAYOUT),
    "flags.json": `${JSON.stringify(componentArgs(config, LAYOUT), null, 2)}\n`,
    "conflist.json": renderCniConflist(config, LAYOUT),
  };
}

/** Walks a parsed document; fails the test when a key on the way is missing. */
function at(doc: unknown, ...path: string[]): unknown {
  let here = doc;
  for (const key of path) {
    assert.ok(typeof here === "object" && here !== null, `${path.join(".")}: ${key} has no parent`);
    here = (here as Record<string, unknown>)[key];
  }
  return here;
}

const CRI_RUNTIME = "io.containerd.cri.v1.runtime";
const CRI_IMAGES = "io.containerd.cri.v1.images";

/** smol-toml's tables have no prototype; a JSON round trip makes them plain for deepEqual. */
function containerd(text: string): Record<string, unknown> {
  return JSON.parse(JSON.stringify(parseToml(text))) as Record<string, unknown>;
}

function kubelet(text: string): Record<string, unknown> {
  return parseYaml(text) as Record<string, unknown>;
}

/** The kubelet settings docs/gvisor-blockers.md's "research configuration" adds to stock. */
const RESEARCH_KUBELET_KEYS = [
  "failCgroupV1",
  "cgroupsPerQOS",
  "enforceNodeAllocatable",
  "localStorageCapacityIsolation",
  "makeIPTablesUtilChains",
  "protectKernelDefaults",
  "cpuCFSQuota",
];

function researchKeys(doc: Record<string, unknown>): string[] {
  return RESEARCH_KUBELET_KEYS.filter((k) => k in doc);
}

describe("containerd config.toml from the recorded machines", () => {
  test("host kernel: stock CRI options except restrict_oom_score_adj (no CAP_SYS_RESOURCE)", async () => {
    const facts = await factsOf("host-kernel");
    assert.equal(facts.identity.effectiveCapabilities, "000001fffeffffff");
    const doc = containerd(renderAll(facts as Facts)["config.toml"]);
    const runtime = at(doc, "plugins", CRI_RUNTIME) as Record<string, unknown>;
    assert.equal("enable_unprivileged_ports" in runtime, false);
    assert.equal("enable_unprivileged_icmp" in runtime, false);
    assert.equal(runtime["restrict_oom_score_adj"], true);
    assert.deepEqual(at(runtime, "containerd", "runtimes", "runc", "options"), {
      BinaryName: "/opt/sandkube/bin/runc",
      Root: "/var/lib/sandkube/run/containerd/runc",
      SystemdCgroup: false,
    });
  });

  test("runsc new: unprivileged ports and ICMP off (sysctls missing); keyrings work", async () => {
    const facts = await factsOf("gvisor-runsc-new");
    const doc = containerd(renderAll(facts as Facts)["config.toml"]);
    const runtime = at(doc, "plugins", CRI_RUNTIME) as Record<string, unknown>;
    assert.equal(runtime["enable_unprivileged_ports"], false);
    assert.equal(runtime["enable_unprivileged_icmp"], false);
    assert.equal("restrict_oom_score_adj" in runtime, false, "gVisor's root has every capability");
    assert.deepEqual(at(runtime, "containerd", "runtimes", "runc", "options"), {
      BinaryName: "/opt/sandkube/bin/sandkube-runtime",
      Root: "/var/lib/sandkube/run/containerd/runc",
      SystemdCgroup: false,
    });
  });

  test("runsc old: also NoNewKeyring (keyctl answers EACCES)", async () => {
    const facts = await factsOf("gvisor-runsc-old");
    const doc = containerd(renderAll(facts as Facts)["config.toml"]);
    const runtime = at(doc, "plugins", CRI_RUNTIME) as Record<string, unknown>;
    assert.equal(runtime["enable_unprivileged_ports"], false);
    assert.equal(runtime["enable_unprivileged_icmp"], false);
    assert.equal(at(runtime, "containerd", "runtimes", "runc", "options", "NoNewKeyring"), true);
  });

  test("every machine: paths from the layout, pinned sandbox image, loopback streaming", async () => {
    for (const name of FIXTURES) {
      const facts = (await factsOf(name)) as Facts;
      const config = testConfig(facts);
      const doc = containerd(renderAll(facts)["config.toml"]);
      assert.equal(doc["version"], 3);
      assert.equal(doc["root"], "/var/lib/sandkube/containerd/root");
      assert.equal(doc["state"], "/var/lib/sandkube/run/containerd");
      assert.equal(at(doc, "grpc", "address"), LAYOUT.containerdSocket);
      assert.equal(at(doc, "plugins", CRI_IMAGES, "pinned_images", "sandbox"), config.sandboxImage);
      assert.equal(at(doc, "plugins", CRI_IMAGES, "snapshotter"), config.snapshotter);
      assert.deepEqual(at(doc, "plugins", "io.containerd.transfer.v1.local", "unpack_config"), [
        { platform: PLATFORM, snapshotter: config.snapshotter },
      ]);
      assert.deepEqual(at(doc, "plugins", CRI_RUNTIME, "cni"), {
        bin_dirs: ["/opt/sandkube/cni"],
        conf_dir: "/var/lib/sandkube/cni/net.d",
      });
      assert.equal(
        at(doc, "plugins", "io.containerd.grpc.v1.cri", "stream_server_address"),
        "127.0.0.1",
      );
      assert.equal(at(doc, "plugins", CRI_RUNTIME, "containerd", "default_runtime_name"), "runc");
      assert.deepEqual(at(doc, "plugins", CRI_IMAGES, "registry"), {
        config_path: "/var/lib/sandkube/containerd/certs.d",
      });
    }
  });

  test("the containerd settings agree with the doctor's adaptations on every machine", async () => {
    for (const name of FIXTURES) {
      const facts = (await factsOf(name)) as Facts;
      const ids = planAdaptations(facts).map((a) => a.id);
      const settings = containerdFactSettings(facts);
      assert.equal(
        settings.noUnprivilegedPortsIcmp,
        ids.includes("no-unprivileged-ports-icmp"),
        name,
      );
      assert.equal(settings.noNewKeyring, ids.includes("no-new-keyring"), name);
    }
  });

  test("a kernel below 4.11 alone turns unprivileged ports and ICMP off (B3)", async () => {
    const facts = await factsOf("host-kernel");
    facts.kernel.release = "4.4.0";
    assert.equal(containerdFactSettings(facts as Facts).noUnprivilegedPortsIcmp, true);
    facts.kernel.release = "4.11.0";
    assert.equal(containerdFactSettings(facts as Facts).noUnprivilegedPortsIcmp, false);
  });

  test("native snapshotter: CRI and the transfer service's unpack_config both use it (B7)", async () => {
    const facts = await factsOf("host-kernel");
    facts.overlay.onDataDir = { result: "no", code: "EINVAL", detail: "mount" };
    const config = testConfig(facts as Facts);
    assert.equal(config.snapshotter, "native");
    const doc = containerd(renderContainerdConfig(config, facts as Facts, LAYOUT));
    assert.equal(at(doc, "plugins", CRI_IMAGES, "snapshotter"), "native");
    const unpack = at(doc, "plugins", "io.containerd.transfer.v1.local", "unpack_config");
    assert.ok(Array.isArray(unpack));
    assert.equal(at(unpack[0], "snapshotter"), "native");
    assert.match(String(at(unpack[0], "platform")), /^linux\/\w+$/);
  });

  test("extra runtime handlers get the same fact-driven options; a registry config_path", async () => {
    const facts = (await factsOf("gvisor-runsc-old")) as Facts;
    const doc = containerd(
      renderContainerdConfig(testConfig(facts), facts, LAYOUT, {
        extraRuntimes: { sandkube: "/x/sandkube-runtime", other: "/x/runc" },
        registryConfigPath: "/x/certs.d",
        platform: PLATFORM,
      }),
    );
    const runtimes = at(doc, "plugins", CRI_RUNTIME, "containerd", "runtimes");
    assert.deepEqual(Object.keys(runtimes as object), ["runc", "sandkube", "other"]);
    assert.deepEqual(at(runtimes, "sandkube"), {
      runtime_type: "io.containerd.runc.v2",
      options: {
        BinaryName: "/x/sandkube-runtime",
        Root: "/var/lib/sandkube/run/containerd/runc",
        SystemdCgroup: false,
        NoNewKeyring: true,
      },
    });
    assert.equal(at(doc, "plugins", CRI_IMAGES, "registry", "config_path"), "/x/certs.d");
  });
});

describe("kubelet configuration from the recorded machines", () => {
  test("host kernel: stock, except failCgroupV1: false (cgroups are hybrid)", async () => {
    const doc = kubelet(renderAll((await factsOf("host-kernel")) as Facts)["kubelet-config.yaml"]);
    assert.deepEqual(researchKeys(doc), ["failCgroupV1"]);
    assert.equal(doc["failCgroupV1"], false);
  });

  test("gVisor (both runsc): the research configuration, each from a fact", async () => {
    for (const name of ["gvisor-runsc-new", "gvisor-runsc-old"] as const) {
      const doc = kubelet(renderAll((await factsOf(name)) as Facts)["kubelet-config.yaml"]);
      assert.deepEqual(
        researchKeys(doc),
        RESEARCH_KUBELET_KEYS.filter((k) => k !== "cpuCFSQuota"),
        name,
      );
      assert.equal(doc["failCgroupV1"], false);
      assert.equal(doc["cgroupsPerQOS"], false);
      assert.deepEqual(doc["enforceNodeAllocatable"], []);
      assert.equal(doc["localStorageCapacityIsolation"], false);
      assert.equal(doc["makeIPTablesUtilChains"], false);
      assert.equal(doc["protectKernelDefaults"], false);
    }
  });

  test("secure defaults and node paths on every machine", async () => {
    for (const name of FIXTURES) {
      const doc = kubelet(renderAll((await factsOf(name)) as Facts)["kubelet-config.yaml"]);
      assert.equal(doc["apiVersion"], "kubelet.config.k8s.io/v1beta1");
      assert.equal(doc["kind"], "KubeletConfiguration");
      assert.equal(at(doc, "authentication", "anonymous", "enabled"), false);
      assert.equal(at(doc, "authentication", "webhook", "enabled"), true);
      assert.equal(
        at(doc, "authentication", "x509", "clientCAFile"),
        "/var/lib/sandkube/pki/ca.crt",
      );
      assert.equal(at(doc, "authorization", "mode"), "Webhook");
      assert.equal(doc["readOnlyPort"], 0);
      // The API server dials kubelet at the node's InternalIP for logs, exec and port-forward.
      assert.equal(doc["address"], "10.244.0.1");
      assert.equal(doc["healthzBindAddress"], "127.0.0.1");
      assert.equal(doc["tlsCertFile"], pkiFiles(LAYOUT).kubeletServingCert);
      assert.equal(doc["tlsPrivateKeyFile"], pkiFiles(LAYOUT).kubeletServingKey);
      assert.deepEqual(doc["clusterDNS"], ["10.96.0.10"]);
      assert.equal(doc["clusterDomain"], "cluster.local");
      assert.equal(doc["cgroupDriver"], "cgroupfs");
      assert.equal(doc["failSwapOn"], false);
      assert.equal(doc["serializeImagePulls"], false);
      assert.equal(
        doc["containerRuntimeEndpoint"],
        "unix:///var/lib/sandkube/run/containerd/containerd.sock",
      );
      assert.equal(doc["imageGCHighThresholdPercent"], 100);
      assert.equal(doc["imageGCLowThresholdPercent"], 99);
      assert.equal(at(doc, "evictionHard", "nodefs.available"), "0%");
      assert.equal(doc["resolvConf"], "/var/lib/sandkube/resolv.conf");
    }
  });

  test("no cpu controller mounted or mountable: cpuCFSQuota: false", async () => {
    const facts = await factsOf("gvisor-runsc-new");
    facts.cgroups.scratchV1Mounts = facts.cgroups.scratchV1Mounts.filter(
      (m) => !m.controllers.includes("cpu"),
    );
    const doc = kubelet(renderKubeletConfig(testConfig(facts as Facts), facts as Facts, LAYOUT));
    assert.equal(doc["cpuCFSQuota"], false);
  });

  test("per-QoS cgroups off on a normal kernel only when cgroups cannot be created", async () => {
    const facts = await factsOf("host-kernel");
    const memory = facts.cgroups.hierarchies.find((h) => h.mountPoint === "/sys/fs/cgroup/memory");
    assert.ok(memory);
    memory.createChild = { result: "no", code: "EACCES", detail: "mkdir" };
    const doc = kubelet(renderKubeletConfig(testConfig(facts as Facts), facts as Facts, LAYOUT));
    assert.equal(doc["cgroupsPerQOS"], false);
    assert.deepEqual(doc["enforceNodeAllocatable"], []);
  });

  test("iptables without conntrack: no util chains; not probed (not root): kubelet's default", async () => {
    const facts = await factsOf("host-kernel");
    const nft = facts.iptables.nfTables;
    assert.ok(nft);
    nft.capabilities.conntrack = { result: "no", code: "EINVAL", detail: "" };
    let doc = kubelet(renderKubeletConfig(testConfig(facts as Facts), facts as Facts, LAYOUT));
    assert.equal(doc["makeIPTablesUtilChains"], false);
    facts.identity.isRoot = false;
    doc = kubelet(renderKubeletConfig(testConfig(facts as Facts), facts as Facts, LAYOUT));
    assert.equal("makeIPTablesUtilChains" in doc, false);
  });
});

describe("component flags", () => {
  function flagMap(args: readonly string[]): Map<string, string> {
    return new Map(
      args.map((a) => {
        const m = /^--([^=]+)=(.*)$/.exec(a);
        assert.ok(m, `${a} is --name=value`);
        return [m[1] ?? "", m[2] ?? ""];
      }),
    );
  }

  test("secure by default: Node,RBAC, NodeRestriction, no anonymous, loopback etcd", async () => {
    const facts = (await factsOf("host-kernel")) as Facts;
    // Even when the user opens every other port, etcd (without TLS) stays on loopback.
    const config = { ...testConfig(facts), bindAddress: "0.0.0.0" };
    const args = componentArgs(config, LAYOUT);
    const api = flagMap(args.kubeApiserver);
    assert.equal(api.get("authorization-mode"), "Node,RBAC");
    assert.equal(api.get("anonymous-auth"), "false");
    assert.equal(api.get("enable-admission-plugins"), "NodeRestriction");
    assert.equal(api.get("bind-address"), "10.244.0.1");
    assert.equal(api.get("advertise-address"), "10.244.0.1");
    assert.equal(api.get("secure-port"), "6443");
    assert.equal(api.get("etcd-servers"), "http://127.0.0.1:2379");
    assert.equal(api.get("service-account-issuer"), "https://kubernetes.default.svc.cluster.local");
    assert.equal(api.get("kubelet-preferred-address-types"), "InternalIP");
    const etcd = flagMap(args.etcd);
    for (const key of [
      "listen-client-urls",
      "advertise-client-urls",
      "listen-peer-urls",
      "initial-advertise-peer-urls",
      "listen-metrics-urls",
    ])
      assert.match(etcd.get(key) ?? "", /^http:\/\/127\.0\.0\.1:\d+$/, key);
    assert.equal(flagMap(args.kubeControllerManager).get("bind-address"), "0.0.0.0");
    assert.equal(flagMap(args.kubeScheduler).get("bind-address"), "0.0.0.0");
  });

  test("controller-manager allocates the node's pod range; kubelet gets its identity", async () => {
    const facts = (await factsOf("host-kernel")) as Facts;
    const args = componentArgs(testConfig(facts), LAYOUT);
    const kcm = flagMap(args.kubeControllerManager);
    assert.equal(kcm.get("allocate-node-cidrs"), "true");
    assert.equal(kcm.get("cluster-cidr"), "10.244.0.0/16");
    assert.equal(kcm.get("node-cidr-mask-size"), "24");
    assert.equal(kcm.get("use-service-account-credentials"), "true");
    const kubeletFlags = flagMap(args.kubelet);
    assert.equal(kubeletFlags.get("config"), LAYOUT.kubeletConfig);
    assert.equal(kubeletFlags.get("kubeconfig"), kubeconfigFiles(LAYOUT).kubelet);
    assert.equal(kubeletFlags.get("root-dir"), LAYOUT.kubeletRoot);
    assert.equal(kubeletFlags.get("node-ip"), "10.244.0.1");
    assert.equal(kubeletFlags.get("hostname-override"), "sandkube");
  });

  test("every PKI and kubeconfig path a flag names is one pki-files.ts exports", async () => {
    const facts = (await factsOf("host-kernel")) as Facts;
    const args = componentArgs(testConfig(facts), LAYOUT);
    const known = new Set([
      ...Object.values(pkiFiles(LAYOUT)),
      ...Object.values(kubeconfigFiles(LAYOUT)),
    ]);
    const named = Object.values(args)
      .flat()
      .map((a: string) => a.slice(a.indexOf("=") + 1))
      .filter((v) => v.startsWith(LAYOUT.pkiDir) || v.startsWith(LAYOUT.kubeconfigDir));
    assert.ok(named.length > 20, `${named.length} paths`);
    for (const path of named) assert.ok(known.has(path), path);
  });
});

describe("CNI conflist", () => {
  test("one sandkube-cni entry with the node's range, gateway, MTU and IPAM folder", async () => {
    const facts = (await factsOf("gvisor-runsc-new")) as Facts;
    const doc = JSON.parse(renderAll(facts)["conflist.json"]) as {
      cniVersion: string;
      name: string;
      plugins: SandkubeCniNetConf[];
    };
    assert.equal(doc.cniVersion, "1.0.0");
    assert.equal(doc.name, "sandkube");
    const expected: SandkubeCniNetConf = {
      type: "sandkube-cni",
      subnet: "10.244.0.0/24",
      gateway: "10.244.0.1",
      mtu: 1500,
      ipamDir: "/var/lib/sandkube/cni/ipam",
    };
    assert.deepEqual(doc.plugins, [expected]);
  });
});

const UPDATE = process.env["SANDKUBE_UPDATE_GOLDEN"] === "1";

/** test/fixtures/golden/ in the source tree: dist/ holds no fixtures. */
function goldenPath(fixture: DoctorFixture, file: keyof Rendered): string {
  return fileURLToPath(
    new URL(`../../../test/fixtures/golden/${fixture}/${file}`, import.meta.url),
  );
}

describe("golden files (SANDKUBE_UPDATE_GOLDEN=1 rewrites them)", () => {
  for (const fixture of FIXTURES) {
    test(`${fixture}: rendered byte for byte as test/fixtures/golden/${fixture}/`, async () => {
      const rendered = renderAll((await factsOf(fixture)) as Facts);
      for (const [file, text] of Object.entries(rendered) as [keyof Rendered, string][]) {
        const path = goldenPath(fixture, file);
        if (UPDATE) {
          mkdirSync(dirname(path), { recursive: true });
          writeFileSync(path, text);
          continue;
        }
        let golden: string;
        try {
          golden = readFileSync(path, "utf8");
        } catch {
          assert.fail(`${path} is missing; run with SANDKUBE_UPDATE_GOLDEN=1 and review the diff`);
        }
        assert.equal(text, golden, `${file} differs from ${path}`);
      }
    });
  }
});
