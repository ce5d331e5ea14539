import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { access, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { constants } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { ensureSuccess, runCommand, type CommandResult } from "../../src/common/exec.js";
import { linkNames } from "../../src/cni/plan.js";
import { repoRootOfScript } from "../../lab/gvisor-run.js";

/**
 * The compiled dist/bin/sandkube-cni on this machine's kernel, invoked as containerd invokes it
 * (CNI_* environment, network configuration on stdin). The "node" is a network namespace of the
 * test's own, so that ip_forward, the pods' veths and routes never touch this machine's own
 * namespace; the plugin runs inside it through `ip netns exec`, as it would run in a node's.
 */

const PLUGIN = join(repoRootOfScript(), "dist/bin/sandkube-cni");
const BUSYBOX = "/usr/bin/busybox";
// Not routed from this machine; the addresses live only in the test's namespaces.
const SUBNET = "10.253.0.0/24";
const GATEWAY = "10.253.0.1";
const MTU = 1400;

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "SKIPPED: needs root to create network namespaces";
  for (const path of [PLUGIN, BUSYBOX, "/usr/bin/nsenter"]) {
    try {
      await access(path, constants.X_OK);
    } catch {
      return `SKIPPED: ${path} is missing${path === PLUGIN ? "; run npm run build:cni" : ""}`;
    }
  }
  return undefined;
}

async function canRun(t: TestContext): Promise<boolean> {
  const reason = await skipReason();
  if (reason === undefined) return true;
  process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
  t.skip(reason);
  return false;
}

async function sh(argv: readonly string[]): Promise<CommandResult> {
  return ensureSuccess(await runCommand(argv, { timeoutMs: 15_000 }));
}

/** A node namespace with forwarding on, pod namespaces, an IPAM folder; all removed after `t`. */
class Lab {
  readonly tag = `${process.pid.toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  readonly node = `skcni-node-${this.tag}`;
  readonly namespaces: string[] = [];
  readonly children: ChildProcess[] = [];
  ipamDir = "";
  scratch = "";

  static async create(t: TestContext): Promise<Lab> {
    const lab = new Lab();
    t.after(() => lab.cleanup());
    lab.scratch = await mkdtemp(join(tmpdir(), "sk-cni-host-"));
    lab.ipamDir = join(lab.scratch, "ipam");
    await lab.addNamespace(lab.node);
    await sh(["ip", "-n", lab.node, "link", "set", "lo", "up"]);
    // Per namespace on Linux: this turns forwarding on for the test's node only.
    await sh([
      "ip",
      "netns",
      "exec",
      lab.node,
      "sh",
      "-c",
      "echo 1 > /proc/sys/net/ipv4/ip_forward",
    ]);
    return lab;
  }

  async addNamespace(name: string): Promise<string> {
    await sh(["ip", "netns", "add", name]);
    this.namespaces.push(name);
    return `/var/run/netns/${name}`;
  }

  async deleteNamespace(name: string): Promise<void> {
    await sh(["ip", "netns", "delete", name]);
    this.namespaces.splice(this.namespaces.indexOf(name), 1);
  }

  conf(): string {
    return JSON.stringify({
      cniVersion: "1.1.0",
      name: "sandkube",
      type: "sandkube-cni",
      subnet: SUBNET,
      gateway: GATEWAY,
      mtu: MTU,
      ipamDir: this.ipamDir,
    });
  }

  /** Exactly what containerd passes: CNI_* in the environment, the configuration on stdin. */
  plugin(
    command: string,
    containerId: string,
    netns: string,
    conf = this.conf(),
  ): Promise<CommandResult> {
    return runCommand(["ip", "netns", "exec", this.node, PLUGIN], {
      input: conf,
      timeoutMs: 20_000,
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: containerId,
        CNI_NETNS: netns,
        CNI_IFNAME: "eth0",
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${containerId}`,
        CNI_PATH: join(repoRootOfScript(), "dist/bin"),
      },
    });
  }

  async httpd(namespace: string, token: string): Promise<void> {
    const root = join(this.scratch, `www-${namespace}`);
    await mkdir(root, { recursive: true });
    await writeFile(join(root, "index.html"), `${token}\n`);
    const child = spawn(
      "ip",
      ["netns", "exec", namespace, BUSYBOX, "httpd", "-f", "-p", "8080", "-h", root],
      { stdio: "ignore" },
    );
    this.children.push(child);
    // Ready when it listens; busybox's netstat reads this namespace's /proc/net/tcp.
    for (let i = 0; i < 100; i++) {
      const listening = await runCommand([
        "ip",
        "netns",
        "exec",
        namespace,
        BUSYBOX,
        "netstat",
        "-ltn",
      ]);
      if (listening.stdout.includes(":8080 ")) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`busybox httpd in ${namespace} never listened`);
  }

  fetch(namespace: string, address: string): Promise<CommandResult> {
    return runCommand(
      [
        "ip",
        "netns",
        "exec",
        namespace,
        BUSYBOX,
        "wget",
        "-q",
        "-O",
        "-",
        `http://${address}:8080/`,
      ],
      { timeoutMs: 10_000 },
    );
  }

  /** The node's links and routes by name, so a leak shows as a difference. */
  async nodeState(): Promise<string[]> {
    const links = await sh(["ip", "-n", this.node, "-o", "link", "show"]);
    const routes = await sh(["ip", "-n", this.node, "route", "show"]);
    return [
      ...links.stdout.split("\n").map((line) => line.replace(/^\d+: /, "").split(":")[0] ?? ""),
      ...routes.stdout.split("\n"),
    ].filter((line) => line.trim() !== "");
  }

  async addressFiles(): Promise<string[]> {
    return (await readdir(this.ipamDir).catch(() => [])).filter((name) => /^\d/.test(name));
  }

  async cleanup(): Promise<void> {
    for (const child of this.children) child.kill("SIGKILL");
    for (const name of [...this.namespaces].reverse()) {
      await runCommand(["ip", "netns", "delete", name]);
    }
    await rm(this.scratch, { recursive: true, force: true });
  }
}

function result(outcome: CommandResult): {
  interfaces: { name: string; mac?: string; mtu?: number; sandbox?: string }[];
  ips: { address: string; gateway: string; interface: number }[];
} {
  assert.equal(outcome.exitCode, 0, `${outcome.stdout}${outcome.stderr}`);
  return JSON.parse(outcome.stdout) as ReturnType<typeof result>;
}

async function hostNamespaces(): Promise<string[]> {
  return (await sh(["ip", "netns", "list"])).stdout
    .split("\n")
    .filter((line) => line.startsWith("skcni-"));
}

test("ADD two pods: pod to pod and node to pod over HTTP, MTU on both ends, CHECK, DEL leaves nothing", async (t) => {
  if (!(await canRun(t))) return;
  const lab = await Lab.create(t);
  const before = await lab.nodeState();
  const nsA = await lab.addNamespace(`skcni-a-${lab.tag}`);
  const nsB = await lab.addNamespace(`skcni-b-${lab.tag}`);
  const a = result(await lab.plugin("ADD", `pod-a-${lab.tag}`, nsA));
  const b = result(await lab.plugin("ADD", `pod-b-${lab.tag}`, nsB));
  assert.equal(a.ips[0]?.address, "10.253.0.2/32");
  assert.equal(b.ips[0]?.address, "10.253.0.3/32");
  assert.equal(a.interfaces[1]?.sandbox, nsA);
  assert.match(a.interfaces[0]?.mac ?? "", /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);

  // The MACs the result names are the links' own, and both ends carry the configured MTU.
  const podLink = (await sh(["ip", "-n", `skcni-a-${lab.tag}`, "link", "show", "eth0"])).stdout;
  assert.ok(podLink.includes(` mtu ${MTU} `), podLink);
  assert.ok(podLink.includes(`link/ether ${a.interfaces[1]?.mac ?? "?"}`), podLink);
  const hostName = a.interfaces[0]?.name ?? "";
  assert.equal(hostName, linkNames({ containerId: `pod-a-${lab.tag}`, ifname: "eth0" }).host);
  const hostLink = (await sh(["ip", "-n", lab.node, "link", "show", hostName])).stdout;
  assert.ok(hostLink.includes(` mtu ${MTU} `), hostLink);

  await lab.httpd(`skcni-a-${lab.tag}`, `hello-from-a-${lab.tag}`);
  await lab.httpd(`skcni-b-${lab.tag}`, `hello-from-b-${lab.tag}`);
  const aToB = await lab.fetch(`skcni-a-${lab.tag}`, "10.253.0.3");
  assert.equal(aToB.stdout, `hello-from-b-${lab.tag}\n`, aToB.stderr);
  const bToA = await lab.fetch(`skcni-b-${lab.tag}`, "10.253.0.2");
  assert.equal(bToA.stdout, `hello-from-a-${lab.tag}\n`, bToA.stderr);
  for (const [address, pod] of [
    ["10.253.0.2", "a"],
    ["10.253.0.3", "b"],
  ] as const) {
    const fromNode = await lab.fetch(lab.node, address);
    assert.equal(fromNode.stdout, `hello-from-${pod}-${lab.tag}\n`, fromNode.stderr);
  }

  const missingNetns = JSON.parse((await lab.plugin("ADD", "unused", "/nonexistent")).stdout) as {
    code: number;
    msg: string;
  };
  assert.deepEqual(
    [missingNetns.code, missingNetns.msg],
    [4, "CNI_NETNS /nonexistent does not exist"],
  );
  assert.deepEqual(await lab.addressFiles(), ["10.253.0.2", "10.253.0.3"].sort());

  const checkConf = JSON.stringify({ ...JSON.parse(lab.conf()), prevResult: a });
  const checked = await lab.plugin("CHECK", `pod-a-${lab.tag}`, nsA, checkConf);
  assert.deepEqual([checked.exitCode, checked.stdout], [0, ""], checked.stderr);

  for (const [id, ns] of [
    [`pod-a-${lab.tag}`, nsA],
    [`pod-b-${lab.tag}`, nsB],
  ] as const) {
    const deleted = await lab.plugin("DEL", id, ns);
    assert.deepEqual([deleted.exitCode, deleted.stdout], [0, ""], deleted.stderr);
    // A second DEL of the same pod, as the runtime may send, succeeds too.
    const again = await lab.plugin("DEL", id, ns);
    assert.deepEqual([again.exitCode, again.stdout], [0, ""], again.stderr);
  }
  assert.deepEqual(await lab.nodeState(), before);
  assert.deepEqual(await lab.addressFiles(), []);
  const podLinks = (await sh(["ip", "-n", `skcni-a-${lab.tag}`, "-o", "link", "show"])).stdout;
  assert.deepEqual(
    podLinks
      .trim()
      .split("\n")
      .map((line) => line.split(":")[1]?.trim()),
    ["lo"],
  );
  const checkAfterDel = await lab.plugin("CHECK", `pod-a-${lab.tag}`, nsA, checkConf);
  assert.equal(checkAfterDel.exitCode, 1);
});

test("100 pod creates and deletes leave no address file, link, route or netns", async (t) => {
  if (!(await canRun(t))) return;
  const lab = await Lab.create(t);
  const nodeBefore = await lab.nodeState();
  const namespacesBefore = await hostNamespaces();
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const name = `skcni-c${i}-${lab.tag}`;
    const netns = await lab.addNamespace(name);
    const id = `cycle-${i}-${lab.tag}`;
    const added = result(await lab.plugin("ADD", id, netns));
    seen.add(added.ips[0]?.address ?? "");
    // Every third pod's namespace goes first, as when a runtime tears the sandbox down before
    // the DEL: the kernel then destroys the pair itself and DEL must still succeed.
    if (i % 3 === 0) await lab.deleteNamespace(name);
    const deleted = await lab.plugin("DEL", id, i % 3 === 0 ? "" : netns);
    assert.deepEqual([deleted.exitCode, deleted.stdout], [0, ""], `cycle ${i}: ${deleted.stderr}`);
    if (i % 3 !== 0) await lab.deleteNamespace(name);
  }
  assert.deepEqual(await lab.addressFiles(), []);
  assert.deepEqual(await lab.nodeState(), nodeBefore);
  assert.deepEqual(await hostNamespaces(), namespacesBefore);
  // Released addresses are handed out last (host-local's rotation), so 100 pods walked the range.
  assert.equal(seen.size, 100);
});

test("eight ADDs at once get eight different addresses (link(2) claims each address file)", async (t) => {
  if (!(await canRun(t))) return;
  const lab = await Lab.create(t);
  const nodeBefore = await lab.nodeState();
  const pods = await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      const netns = await lab.addNamespace(`skcni-p${i}-${lab.tag}`);
      return { id: `parallel-${i}-${lab.tag}`, netns };
    }),
  );
  const added = await Promise.all(pods.map((pod) => lab.plugin("ADD", pod.id, pod.netns)));
  const addresses = added.map((outcome) => result(outcome).ips[0]?.address);
  assert.equal(new Set(addresses).size, 8, addresses.join(" "));
  assert.equal((await lab.addressFiles()).length, 8);
  const deleted = await Promise.all(pods.map((pod) => lab.plugin("DEL", pod.id, pod.netns)));
  assert.deepEqual(
    deleted.map((outcome) => outcome.exitCode),
    Array(8).fill(0),
  );
  assert.deepEqual(await lab.addressFiles(), []);
  assert.deepEqual(await lab.nodeState(), nodeBefore);
});

test("VERSION and STATUS as the runtime asks; STATUS fails while the node does not forward", async (t) => {
  if (!(await canRun(t))) return;
  const lab = await Lab.create(t);
  const version = await lab.plugin("VERSION", "", "", '{"cniVersion":"1.1.0"}');
  assert.deepEqual(JSON.parse(version.stdout), {
    cniVersion: "1.1.0",
    supportedVersions: ["1.0.0", "1.1.0"],
  });
  const ready = await lab.plugin("STATUS", "", "");
  assert.deepEqual([ready.exitCode, ready.stdout], [0, ""], ready.stderr);
  await sh(["ip", "netns", "exec", lab.node, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
  const notReady = await lab.plugin("STATUS", "", "");
  assert.equal(notReady.exitCode, 1);
  assert.equal((JSON.parse(notReady.stdout) as { code: number }).code, 50);
});
