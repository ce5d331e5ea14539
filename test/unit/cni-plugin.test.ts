import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import type { CommandResult, RunOptions } from "../../src/common/exec.js";
import { CNI_ERROR } from "../../src/cni/errors.js";
import type { CniIO } from "../../src/cni/io.js";
import { linkNames } from "../../src/cni/plan.js";
import { runPlugin } from "../../src/cni/plugin.js";

/**
 * The plugin's decisions (which commands, in which order, what it answers, what it undoes) driven
 * through a recording CniIO, because creating links needs root and a kernel. The same flows run
 * for real in test/host/cni-plugin.test.ts (host kernel) and test/gvisor/cni.test.ts (runsc).
 */

interface Call {
  readonly argv: readonly string[];
  readonly input?: string;
}

type Reply = (call: Call) => Partial<CommandResult> | undefined;

class RecordingCniIO implements CniIO {
  readonly calls: Call[] = [];
  statfsCode: string | undefined;
  ipForward: string | undefined = "1\n";
  constructor(private readonly reply: Reply = () => undefined) {}

  run = async (argv: readonly string[], options?: RunOptions): Promise<CommandResult> => {
    const call = { argv, ...(options?.input === undefined ? {} : { input: options.input }) };
    this.calls.push(call);
    return { argv, exitCode: 0, stdout: "", stderr: "", ...this.reply(call) };
  };

  statfs = async (path: string) =>
    this.statfsCode === undefined
      ? { ok: true as const }
      : {
          ok: false as const,
          code: this.statfsCode,
          message: `${this.statfsCode}, statfs '${path}'`,
        };

  readText = async (path: string) =>
    path === "/proc/sys/net/ipv4/ip_forward" ? this.ipForward : undefined;

  commands(): string[] {
    return this.calls.map((call) => call.argv.join(" "));
  }
}

const ID = "f00dcafe";
const NETNS = "/var/run/netns/cni-0001";
const HOST = linkNames({ containerId: ID, ifname: "eth0" }).host;
const PEER = linkNames({ containerId: ID, ifname: "eth0" }).peer;

async function ipamDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "sk-cni-plugin-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, "ipam");
}

function netConf(dir: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    cniVersion: "1.1.0",
    name: "sandkube",
    type: "sandkube-cni",
    subnet: "10.244.0.0/24",
    gateway: "10.244.0.1",
    mtu: 1400,
    ipamDir: dir,
    ...extra,
  });
}

function env(command: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: ID,
    CNI_NETNS: NETNS,
    CNI_IFNAME: "eth0",
    CNI_PATH: "/opt/cni/bin",
    ...extra,
  };
}

async function addressFiles(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [])).filter((name) => /^\d+\.\d+\.\d+\.\d+$/.test(name));
}

/** What `ip link show dev NAME` prints at the end of each batch (iproute2 6.1, host kernel). */
function linkShow(call: Call): Partial<CommandResult> | undefined {
  if (call.argv[0] === "ip" && call.argv[1] === "-batch") {
    return {
      stdout: `7: ${HOST}@if6: <UP> mtu 1400\n    link/ether 02:aa:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n`,
    };
  }
  if (call.argv[0] === "nsenter") {
    return {
      stdout:
        "6: eth0@if7: <UP> mtu 1400\n    link/ether 02:bb:00:00:00:02 brd ff:ff:ff:ff:ff:ff\n",
    };
  }
  return undefined;
}

function parsed(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout) as Record<string, unknown>;
}

test("ADD: two processes, node side then pod side, and the spec's result", async (t) => {
  const dir = await ipamDir(t);
  const io = new RecordingCniIO(linkShow);
  const outcome = await runPlugin(env("ADD"), netConf(dir), io);
  assert.equal(outcome.exitCode, 0, outcome.stdout);
  assert.deepEqual(io.commands(), ["ip -batch -", `nsenter --net=${NETNS} ip -batch -`]);
  assert.match(
    io.calls[0]?.input ?? "",
    new RegExp(`^link add ${HOST} type veth peer name ${PEER}\n`),
  );
  assert.match(io.calls[0]?.input ?? "", /\nroute add 10\.244\.0\.2\/32 dev sk/);
  assert.match(io.calls[1]?.input ?? "", /\nroute add default via 10\.244\.0\.1 dev eth0\n/);
  assert.deepEqual(parsed(outcome.stdout), {
    cniVersion: "1.1.0",
    interfaces: [
      { name: HOST, mac: "02:aa:00:00:00:01", mtu: 1400 },
      { name: "eth0", mac: "02:bb:00:00:00:02", mtu: 1400, sandbox: NETNS },
    ],
    ips: [{ address: "10.244.0.2/32", gateway: "10.244.0.1", interface: 1 }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.244.0.1" }],
    dns: {},
  });
  assert.deepEqual(await addressFiles(dir), ["10.244.0.2"]);
});

test("ADD on a kernel without statfs on netns files (runsc 2023): clear error, nothing done", async (t) => {
  const dir = await ipamDir(t);
  const io = new RecordingCniIO();
  io.statfsCode = "ENOSYS";
  const outcome = await runPlugin(env("ADD"), netConf(dir), io);
  assert.equal(outcome.exitCode, 1);
  const error = parsed(outcome.stdout);
  assert.equal(error["code"], CNI_ERROR.kernelCannotConnectPods);
  assert.equal(error["cniVersion"], "1.1.0");
  assert.match(
    String(error["msg"]),
    /statfs\(2\) on the network namespace file .* not implemented \(ENOSYS/,
  );
  assert.match(String(error["msg"]), /B10.*hostNetwork/);
  assert.deepEqual(io.calls, []);
  assert.deepEqual(await addressFiles(dir), []);
});

test("ADD and DEL on a kernel without RTM_NEWLINK (runsc 2023): clear error, DEL succeeds", async (t) => {
  const dir = await ipamDir(t);
  // What iproute2 6.1 printed in runsc 2023-07 (lab/gvisor-scenarios/cni.sh): it stops the whole
  // batch with status 255 and no "Command failed" line.
  const io = new RecordingCniIO((call) => ({
    exitCode: 255,
    stderr: `Command "${call.argv[1] === "-batch" ? "add" : "del"}" is unknown, try "ip link help".\n`,
  }));
  const outcome = await runPlugin(env("ADD"), netConf(dir), io);
  assert.equal(outcome.exitCode, 1);
  const error = parsed(outcome.stdout);
  assert.equal(error["code"], CNI_ERROR.kernelCannotConnectPods);
  assert.match(
    String(error["msg"]),
    /^this kernel cannot create a veth pair \(`ip link add sk[0-9a-f]{11} type veth peer name sp[0-9a-f]{11}`: Command "add" is unknown.*B9.*hostNetwork/,
  );
  assert.match(String(error["details"]), /^ip -batch -: exit status 255/);
  assert.deepEqual(io.commands(), ["ip -batch -", `ip link del ${HOST}`]);
  assert.deepEqual(await addressFiles(dir), []);
  // No link can exist where links cannot be made, so DEL has nothing to undo and succeeds.
  assert.deepEqual(await runPlugin(env("DEL"), netConf(dir), io), { stdout: "", exitCode: 0 });
});

test("ADD: a step the kernel refuses on the node side is named", async (t) => {
  const dir = await ipamDir(t);
  const io = new RecordingCniIO((call) =>
    call.argv[1] === "-batch"
      ? { exitCode: 1, stderr: "RTNETLINK answers: Invalid argument\nCommand failed -:2\n" }
      : undefined,
  );
  const error = parsed((await runPlugin(env("ADD"), netConf(dir), io)).stdout);
  assert.equal(error["code"], CNI_ERROR.linkSetupFailed);
  assert.equal(
    error["msg"],
    "could not set the MTU of the pod's end: RTNETLINK answers: Invalid argument",
  );
});

test("ADD after a crashed ADD: the stale pair of the same name is replaced", async (t) => {
  const dir = await ipamDir(t);
  let batches = 0;
  const io = new RecordingCniIO((call) => {
    if (call.argv.join(" ") === "ip -batch -" && batches++ === 0) {
      return { exitCode: 1, stderr: "RTNETLINK answers: File exists\nCommand failed -:1\n" };
    }
    return linkShow(call);
  });
  const outcome = await runPlugin(env("ADD"), netConf(dir), io);
  assert.equal(outcome.exitCode, 0, outcome.stdout);
  assert.deepEqual(io.commands(), [
    "ip -batch -",
    `ip link del ${HOST}`,
    "ip -batch -",
    `nsenter --net=${NETNS} ip -batch -`,
  ]);
});

test("ADD failing in the pod: error names the step, the pair and the address are undone", async (t) => {
  const dir = await ipamDir(t);
  const io = new RecordingCniIO((call) =>
    call.argv[0] === "nsenter"
      ? { exitCode: 1, stderr: "RTNETLINK answers: Operation not supported\nCommand failed -:5\n" }
      : linkShow(call),
  );
  const outcome = await runPlugin(env("ADD"), netConf(dir), io);
  const error = parsed(outcome.stdout);
  assert.equal(error["code"], CNI_ERROR.linkSetupFailed);
  assert.equal(
    error["msg"],
    "could not route everything else through the gateway: RTNETLINK answers: Operation not supported",
  );
  assert.equal(io.commands().at(-1), `ip link del ${HOST}`);
  assert.deepEqual(await addressFiles(dir), []);
});

test("ADD: nsenter refused by the kernel is named as such", async (t) => {
  const dir = await ipamDir(t);
  const io = new RecordingCniIO((call) =>
    call.argv[0] === "nsenter"
      ? {
          exitCode: 1,
          stderr: "nsenter: reassociate to namespace 'ns/net' failed: Invalid argument\n",
        }
      : linkShow(call),
  );
  const error = parsed((await runPlugin(env("ADD"), netConf(dir), io)).stdout);
  assert.equal(error["code"], CNI_ERROR.kernelCannotConnectPods);
  assert.match(String(error["msg"]), /setns\(2\).*Invalid argument/);
});

test("ADD: a netns path that does not exist is the runtime's error, not ours", async (t) => {
  const dir = await ipamDir(t);
  const io = new RecordingCniIO();
  io.statfsCode = "ENOENT";
  const error = parsed((await runPlugin(env("ADD"), netConf(dir), io)).stdout);
  assert.equal(error["code"], CNI_ERROR.invalidEnvironment);
  assert.equal(error["msg"], `CNI_NETNS ${NETNS} does not exist`);
});

test("DEL: deletes the node's end and the address; again, and without netns, still succeeds", async (t) => {
  const dir = await ipamDir(t);
  const add = await runPlugin(env("ADD"), netConf(dir), new RecordingCniIO(linkShow));
  assert.equal(add.exitCode, 0);
  let present = true;
  const io = new RecordingCniIO(() => {
    if (present) {
      present = false;
      return undefined;
    }
    return { exitCode: 1, stderr: `Cannot find device "${HOST}"\n` };
  });
  for (const extra of [{}, {}, { CNI_NETNS: "" }] as Record<string, string>[]) {
    const outcome = await runPlugin(env("DEL", extra), netConf(dir), io);
    assert.deepEqual(outcome, { stdout: "", exitCode: 0 });
  }
  assert.deepEqual(io.commands(), Array(3).fill(`ip link del ${HOST}`));
  assert.deepEqual(await addressFiles(dir), []);
});

test("DEL: a link that cannot be deleted keeps its address reserved", async (t) => {
  const dir = await ipamDir(t);
  await runPlugin(env("ADD"), netConf(dir), new RecordingCniIO(linkShow));
  const io = new RecordingCniIO(() => ({
    exitCode: 2,
    stderr: "RTNETLINK answers: Device or resource busy\n",
  }));
  const error = parsed((await runPlugin(env("DEL"), netConf(dir), io)).stdout);
  assert.equal(error["code"], CNI_ERROR.linkRemovalFailed);
  assert.match(String(error["msg"]), /Device or resource busy/);
  assert.deepEqual(await addressFiles(dir), ["10.244.0.2"]);
});

test("CHECK: compares prevResult with the reservation and both ends", async (t) => {
  const dir = await ipamDir(t);
  const add = await runPlugin(env("ADD"), netConf(dir), new RecordingCniIO(linkShow));
  const prevResult = parsed(add.stdout);
  const healthy = new RecordingCniIO((call) =>
    call.argv[0] === "nsenter"
      ? { stdout: "6: eth0    inet 10.244.0.2/32 scope global eth0\\       valid_lft forever\n" }
      : {
          stdout: `7: ${HOST}    inet 10.244.0.1/32 scope global ${HOST}\\       valid_lft forever\n`,
        },
  );
  const ok = await runPlugin(env("CHECK"), netConf(dir, { prevResult }), healthy);
  assert.deepEqual(ok, { stdout: "", exitCode: 0 });
  assert.deepEqual(healthy.commands(), [
    `ip -o addr show dev ${HOST}`,
    `nsenter --net=${NETNS} ip -o addr show dev eth0`,
  ]);
  const podLostAddress = new RecordingCniIO((call) =>
    call.argv[0] === "nsenter"
      ? { stdout: "" }
      : { stdout: `7: ${HOST}    inet 10.244.0.1/32 scope global ${HOST}\n` },
  );
  const broken = parsed(
    (await runPlugin(env("CHECK"), netConf(dir, { prevResult }), podLostAddress)).stdout,
  );
  assert.equal(broken["code"], CNI_ERROR.checkFailed);
  assert.match(String(broken["msg"]), /eth0 in .* lacks 10\.244\.0\.2\/32/);
  const noPrev = parsed((await runPlugin(env("CHECK"), netConf(dir), healthy)).stdout);
  assert.equal(noPrev["code"], CNI_ERROR.invalidConfig);
  const otherId = parsed(
    (
      await runPlugin(
        env("CHECK", { CNI_CONTAINERID: "other" }),
        netConf(dir, { prevResult }),
        healthy,
      )
    ).stdout,
  );
  assert.match(String(otherId["msg"]), /not reserved for container other/);
});

test("STATUS: ready with a free address and forwarding on; 50 otherwise", async (t) => {
  const dir = await ipamDir(t);
  const io = new RecordingCniIO();
  assert.deepEqual(await runPlugin({ CNI_COMMAND: "STATUS" }, netConf(dir), io), {
    stdout: "",
    exitCode: 0,
  });
  io.ipForward = "0\n";
  const error = parsed((await runPlugin({ CNI_COMMAND: "STATUS" }, netConf(dir), io)).stdout);
  assert.equal(error["code"], CNI_ERROR.pluginNotAvailable);
  assert.match(String(error["msg"]), /ip_forward is 0/);
  io.ipForward = "1\n";
  const tiny = netConf(dir, { subnet: "10.9.0.0/30", gateway: "10.9.0.1" });
  assert.equal((await runPlugin(env("ADD"), tiny, new RecordingCniIO(linkShow))).exitCode, 0);
  const full = parsed((await runPlugin({ CNI_COMMAND: "STATUS" }, tiny, io)).stdout);
  assert.equal(full["code"], CNI_ERROR.pluginNotAvailable);
  assert.match(String(full["msg"]), /no free address/);
});

test("GC: attachments the runtime no longer lists lose their link and address", async (t) => {
  const dir = await ipamDir(t);
  for (const id of ["keep", "stale"]) {
    const outcome = await runPlugin(
      env("ADD", { CNI_CONTAINERID: id }),
      netConf(dir),
      new RecordingCniIO(linkShow),
    );
    assert.equal(outcome.exitCode, 0);
  }
  const io = new RecordingCniIO();
  const outcome = await runPlugin(
    { CNI_COMMAND: "GC" },
    netConf(dir, { "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }] }),
    io,
  );
  assert.deepEqual(outcome, { stdout: "", exitCode: 0 });
  assert.deepEqual(io.commands(), [
    `ip link del ${linkNames({ containerId: "stale", ifname: "eth0" }).host}`,
  ]);
  assert.deepEqual(await addressFiles(dir), ["10.244.0.2"]);
  const noList = parsed((await runPlugin({ CNI_COMMAND: "GC" }, netConf(dir), io)).stdout);
  assert.equal(noList["code"], CNI_ERROR.invalidConfig);
});

test("VERSION, bad input and unknown versions answer in the spec's shapes", async () => {
  const io = new RecordingCniIO();
  assert.deepEqual(
    parsed((await runPlugin({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.0.0"}', io)).stdout),
    {
      cniVersion: "1.0.0",
      supportedVersions: ["1.0.0", "1.1.0"],
    },
  );
  assert.equal(
    parsed((await runPlugin({ CNI_COMMAND: "VERSION" }, "", io)).stdout)["cniVersion"],
    "1.1.0",
  );
  const notJson = await runPlugin(env("ADD"), "{", io);
  assert.equal(notJson.exitCode, 1);
  assert.equal(parsed(notJson.stdout)["code"], CNI_ERROR.decodeFailure);
  const old = parsed(
    (await runPlugin(env("ADD"), '{"cniVersion":"0.3.1","type":"sandkube-cni"}', io)).stdout,
  );
  assert.deepEqual(Object.keys(old).sort(), ["cniVersion", "code", "msg"]);
  assert.equal(old["code"], CNI_ERROR.incompatibleVersion);
  const noCommand = parsed((await runPlugin({}, "{}", io)).stdout);
  assert.equal(noCommand["code"], CNI_ERROR.invalidEnvironment);
  assert.deepEqual(io.calls, []);
});
