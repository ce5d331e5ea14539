import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { parse as parseToml } from "smol-toml";
import { labBinary } from "../../lab/paths.js";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { nodeLayout, type NodeLayout } from "../../src/node/layout.js";
import type { ClusterConfig } from "../../src/plan/cluster-config.js";
import { DEFAULT_API_SERVER_PORT, DEFAULT_NETWORK } from "../../src/plan/cluster-config.js";
import { renderContainerdConfig } from "../../src/plan/containerd-config.js";
import type { CoreFacts } from "../../src/probe/facts.js";
import { collectCoreFacts } from "../../src/probe/facts.js";
import { systemIO } from "../../src/probe/io.js";
import type { DoctorFixture } from "../fixtures/doctor-fixtures.js";
import { replayFacts } from "../fixtures/doctor-fixtures.js";

// The rendered containerd config must be one the real containerd (the lab's pinned 2.4.2) reads:
// `config dump` decodes every plugin's section into containerd's own config types and prints
// them, so a misspelt key vanishes from the dump and a wrong type fails it. Then one real start
// on this machine's probed facts shows that the CRI plugins load with the plugins sandkube turns
// off turned off.

const CONTAINERD = labBinary("containerd");
const CTR = labBinary("ctr");
const missing = [CONTAINERD, CTR].find((b) => !existsSync(b));
const reason =
  missing === undefined
    ? process.getuid?.() === 0
      ? undefined
      : "SKIPPED: starting containerd needs root"
    : `SKIPPED: ${missing} is missing; run npm run lab:build`;

const work = mkdtempSync(join(tmpdir(), "skrender-"));

function configFor(layout: NodeLayout, snapshotter: ClusterConfig["snapshotter"]): ClusterConfig {
  return {
    dataDir: layout.dataDir,
    nodeName: "sandkube",
    ...DEFAULT_NETWORK,
    bindAddress: "127.0.0.1",
    apiServerBindAddress: DEFAULT_NETWORK.nodeIP,
    apiServerPort: DEFAULT_API_SERVER_PORT,
    runtime: "runc",
    serviceProxy: "kube-proxy",
    mtu: 1500,
    snapshotter,
    imageUnpack: "containerd",
    nodeLink: "sandkube0",
    hostNetworkOnly: false,
    sandboxImage: "registry.k8s.io/pause:3.10.2-sandkube",
    binaries: {
      etcd: labBinary("etcd"),
      kubeApiserver: labBinary("kube-apiserver"),
      kubeControllerManager: labBinary("kube-controller-manager"),
      kubeScheduler: labBinary("kube-scheduler"),
      kubelet: labBinary("kubelet"),
      kubectl: labBinary("kubectl"),
      containerd: CONTAINERD,
      containerdShim: labBinary("containerd-shim-runc-v2"),
      ctr: CTR,
      ociRuntime: labBinary("runc"),
      cniBinDir: join(layout.dataDir, "cni-bin"),
      kubeProxy: null,
    },
  };
}

function at(doc: unknown, ...path: string[]): unknown {
  let here = doc;
  for (const key of path) {
    assert.ok(typeof here === "object" && here !== null, `${path.join(".")}: no ${key}`);
    here = (here as Record<string, unknown>)[key];
  }
  return here;
}

/** `containerd config dump` of the rendered file, parsed. */
async function dump(configFile: string): Promise<Record<string, unknown>> {
  const r = ensureSuccess(
    await runCommand([CONTAINERD, "--config", configFile, "config", "dump"], {
      timeoutMs: 60_000,
    }),
  );
  return parseToml(r.stdout) as Record<string, unknown>;
}

const CRI_RUNTIME = "io.containerd.cri.v1.runtime";

describe("rendered containerd config.toml read by the real containerd", { skip: reason }, () => {
  after(() => rmSync(work, { recursive: true, force: true }));

  const fixtures: readonly [DoctorFixture, ClusterConfig["snapshotter"]][] = [
    ["host-kernel", "overlayfs"],
    ["gvisor-runsc-new", "overlayfs"],
    ["gvisor-runsc-old", "native"],
  ];
  for (const [fixture, snapshotter] of fixtures) {
    test(`${fixture} (${snapshotter}): config dump keeps every setting`, async () => {
      const facts: CoreFacts = await replayFacts(fixture);
      const layout = nodeLayout(join(work, fixture));
      mkdirSync(join(layout.containerdConfig, ".."), { recursive: true });
      const config = configFor(layout, snapshotter);
      writeFileSync(
        layout.containerdConfig,
        renderContainerdConfig(config, facts, layout, {
          extraRuntimes: { sandkube: "/x/sandkube-runtime" },
          registryConfigPath: join(layout.dataDir, "certs.d"),
        }),
      );
      const doc = await dump(layout.containerdConfig);
      assert.equal(doc["root"], layout.containerdRoot);
      assert.equal(doc["state"], layout.containerdState);
      // containerd 2.4 migrates version 3 to 4, where the gRPC address is a plugin's setting.
      assert.equal(doc["version"], 4);
      const grpc = at(doc, "plugins", "io.containerd.server.v1.grpc");
      assert.equal(at(grpc, "address"), layout.containerdSocket);
      assert.deepEqual(doc["disabled_plugins"], ["io.containerd.internal.v1.opt"]);
      const images = at(doc, "plugins", "io.containerd.cri.v1.images");
      assert.equal(at(images, "snapshotter"), snapshotter);
      assert.equal(at(images, "pinned_images", "sandbox"), config.sandboxImage);
      assert.equal(at(images, "registry", "config_path"), join(layout.dataDir, "certs.d"));
      const runtime = at(doc, "plugins", CRI_RUNTIME);
      const oldKernel = fixture !== "host-kernel";
      assert.equal(at(runtime, "enable_unprivileged_ports"), !oldKernel);
      assert.equal(at(runtime, "enable_unprivileged_icmp"), !oldKernel);
      assert.equal(at(runtime, "restrict_oom_score_adj"), fixture === "host-kernel");
      for (const handler of ["runc", "sandkube"]) {
        const options = at(runtime, "containerd", "runtimes", handler, "options");
        assert.equal(at(options, "SystemdCgroup"), false, handler);
        // Handler options are kept as written (runc's also show defaults), so absent = off.
        assert.equal(at(options, "NoNewKeyring") === true, fixture === "gvisor-runsc-old", handler);
      }
      assert.deepEqual(at(runtime, "cni", "bin_dirs"), [config.binaries.cniBinDir]);
      assert.equal(at(runtime, "cni", "conf_dir"), layout.cniConfDir);
      const streaming = at(doc, "plugins", "io.containerd.grpc.v1.cri");
      assert.equal(at(streaming, "stream_server_address"), "127.0.0.1");
      const unpack = at(doc, "plugins", "io.containerd.transfer.v1.local", "unpack_config");
      assert.ok(Array.isArray(unpack));
      assert.deepEqual(
        unpack.map((u: unknown) => at(u, "snapshotter")),
        [snapshotter],
      );
      assert.equal(at(doc, "plugins", "io.containerd.nri.v1.nri", "disable"), true);
    });
  }

  test("this machine's facts: containerd starts and its CRI plugins load", async () => {
    const layout = nodeLayout(join(work, "live"));
    mkdirSync(join(layout.containerdConfig, ".."), { recursive: true });
    mkdirSync(layout.cniConfDir, { recursive: true });
    const facts = await collectCoreFacts(systemIO(), { dataDir: layout.dataDir });
    writeFileSync(
      layout.containerdConfig,
      renderContainerdConfig(configFor(layout, "overlayfs"), facts, layout),
    );
    const optBefore = existsSync("/opt/containerd");
    let containerd: ChildProcess | undefined;
    try {
      containerd = spawn(CONTAINERD, ["--config", layout.containerdConfig], {
        stdio: ["ignore", "ignore", "ignore"],
      });
      const end = Date.now() + 30_000;
      while (!existsSync(layout.containerdSocket)) {
        assert.ok(Date.now() < end, "containerd socket within 30 s");
        assert.equal(containerd.exitCode, null, "containerd exited");
        await new Promise((r) => setTimeout(r, 100));
      }
      const plugins = ensureSuccess(
        await runCommand([CTR, "--address", layout.containerdSocket, "plugins", "ls"], {
          timeoutMs: 30_000,
        }),
      ).stdout;
      // TYPE ID PLATFORMS STATUS
      const status = (type: string, id: string): string | undefined =>
        plugins
          .split("\n")
          .map((l) => l.trim().split(/\s+/))
          .find((cols) => cols[0] === type && cols[1] === id)
          ?.at(-1);
      assert.equal(status("io.containerd.grpc.v1", "cri"), "ok", plugins);
      assert.equal(status("io.containerd.cri.v1", "runtime"), "ok", plugins);
      assert.equal(status("io.containerd.cri.v1", "images"), "ok", plugins);
      assert.notEqual(status("io.containerd.internal.v1", "opt"), "ok", plugins);
      if (!optBefore) assert.equal(existsSync("/opt/containerd"), false, "/opt/containerd made");
    } finally {
      if (containerd?.pid !== undefined && containerd.exitCode === null) {
        containerd.kill("SIGTERM");
        await new Promise((r) => containerd?.once("exit", r));
      }
      const mounts = readFileSync("/proc/self/mounts", "utf8")
        .split("\n")
        .map((l) => l.split(" ")[1] ?? "")
        .filter((m) => m.startsWith(layout.dataDir))
        .sort((a, b) => b.length - a.length);
      for (const m of mounts) await runCommand(["umount", "-l", m]);
    }
  });
});

if (reason) test("rendered config read by the real containerd", { skip: reason }, () => undefined);
