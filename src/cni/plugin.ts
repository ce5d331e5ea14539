import type { CommandResult } from "../common/exec.js";
import {
  LATEST_VERSION,
  SUPPORTED_VERSIONS,
  decodeJson,
  parseAttachmentArgs,
  parseCommand,
  parsePluginConf,
  parseVersion,
  type Attachment,
  type CniArgs,
  type CniVersion,
  type PluginConf,
} from "./conf.js";
import { CNI_ERROR, CniError, errorJson } from "./errors.js";
import { FileIpam } from "./ipam.js";
import { CNI_COMMAND_TIMEOUT_MS, type CniIO } from "./io.js";
import { formatIpv4, parseIpv4 } from "./ipv4.js";
import {
  NODE_BATCH_ARGV,
  addResult,
  batchInput,
  failedStep,
  kernelMessage,
  linkNames,
  parseMac,
  planAdd,
  planDel,
  podBatchArgv,
  type AddInputs,
  type CniResult,
  type LinkStep,
} from "./plan.js";

/** What the plugin prints and its exit status: 0 with a result (or nothing), 1 with an error. */
export interface PluginOutcome {
  readonly stdout: string;
  readonly exitCode: number;
}

export type Environment = Readonly<Record<string, string | undefined>>;

function succeeded(result: CommandResult): boolean {
  return result.exitCode === 0 && result.failure === undefined;
}

function commandStory(result: CommandResult): string {
  const status = result.failure ?? `exit status ${result.exitCode}`;
  return `${result.argv.join(" ")}: ${status}: ${result.stderr.trim()}`;
}

function ipamOf(conf: PluginConf): FileIpam {
  return new FileIpam(conf.ipamDir, conf.subnet, conf.gateway);
}

const PODS_NEED_HOST_NETWORK =
  "pods can only use the node's network here (hostNetwork: true); see docs/cni.md";

/**
 * containerd, the stock plugins and this one open the netns file; statfs is what the stock code
 * calls first, and gVisor 2023 has no nsfs, so there it fails with ENOSYS (gvisor-blockers B10).
 */
async function requireNetns(io: CniIO, netns: string): Promise<void> {
  const found = await io.statfs(netns);
  if (found.ok) return;
  if (found.code === "ENOENT") {
    throw new CniError(
      CNI_ERROR.invalidEnvironment,
      `CNI_NETNS ${netns} does not exist`,
      found.message,
    );
  }
  if (found.code === "ENOSYS") {
    throw new CniError(
      CNI_ERROR.kernelCannotConnectPods,
      `this kernel cannot give a pod its own network: statfs(2) on the network namespace file ${netns} is not implemented (ENOSYS; gVisor before nsfs, e.g. runsc 2023-07, docs/gvisor-blockers.md B10); ${PODS_NEED_HOST_NETWORK}`,
      found.message,
    );
  }
  throw new CniError(
    CNI_ERROR.ioFailure,
    `statfs(2) on CNI_NETNS ${netns} failed: ${found.code}`,
    found.message,
  );
}

function runBatch(
  io: CniIO,
  argv: readonly string[],
  steps: readonly LinkStep[],
): Promise<CommandResult> {
  return io.run(argv, { input: batchInput(steps), timeoutMs: CNI_COMMAND_TIMEOUT_MS });
}

/** Turns a failed `ip -batch` into an error that names the step and the kernel's answer. */
function batchError(
  result: CommandResult,
  steps: readonly LinkStep[],
  where: "node" | "pod",
  netns: string,
): CniError {
  const failed = failedStep(steps, result.stderr);
  const answer = kernelMessage(result.stderr) || (result.failure ?? `exit ${result.exitCode}`);
  if (where === "node" && (failed?.index === 0 || kernelLacksNewLink(result))) {
    const create = steps[0]?.words.join(" ") ?? "link add";
    return new CniError(
      CNI_ERROR.kernelCannotConnectPods,
      `this kernel cannot create a veth pair (\`ip ${create}\`: ${answer}); gVisor has veth only since 2024-05-30 (runsc 2023-07 has none, docs/gvisor-blockers.md B9); ${PODS_NEED_HOST_NETWORK}`,
      commandStory(result),
    );
  }
  if (where === "pod" && failed === undefined && result.stderr.startsWith("nsenter:")) {
    return new CniError(
      CNI_ERROR.kernelCannotConnectPods,
      `cannot enter the pod's network namespace ${netns} with setns(2) (${answer}); ${PODS_NEED_HOST_NETWORK}`,
      commandStory(result),
    );
  }
  const what = failed === undefined ? `set up the ${where} side` : failed.step.what;
  return new CniError(
    CNI_ERROR.linkSetupFailed,
    `could not ${what}: ${answer}`,
    commandStory(result),
  );
}

/**
 * iproute2 answers `Command "add" is unknown` (or "del") and stops the whole batch when the kernel
 * does not implement RTM_NEWLINK (iplink.c, iplink_have_newlink): seen in runsc 2023-07 in
 * lab/gvisor-scenarios/cni.sh, where no link of ours can therefore exist either.
 */
function kernelLacksNewLink(result: CommandResult): boolean {
  return /Command "(add|del)" is unknown/.test(result.stderr);
}

function linkIsGone(result: CommandResult): boolean {
  return /Cannot find device|does not exist/i.test(result.stderr) || kernelLacksNewLink(result);
}

async function deleteHostLink(io: CniIO, attachment: Attachment): Promise<CommandResult> {
  const step = planDel(attachment);
  return io.run(["ip", ...step.words], { timeoutMs: CNI_COMMAND_TIMEOUT_MS });
}

export async function add(io: CniIO, conf: PluginConf, args: CniArgs): Promise<CniResult> {
  await requireNetns(io, args.netns);
  const attachment: Attachment = { containerId: args.containerId, ifname: args.ifname };
  const names = linkNames(attachment);
  const ipam = ipamOf(conf);
  const podAddress = await ipam.allocate(attachment, `.pending-${names.key}`);
  const inputs: AddInputs = { conf, attachment, netns: args.netns, podAddress };
  const plan = planAdd(inputs);
  try {
    let node = await runBatch(io, NODE_BATCH_ARGV, plan.node);
    // Names are derived from the attachment, so a link of that name is this attachment's, left by
    // an ADD that died before it could answer; the runtime will not call DEL for it.
    if (!succeeded(node) && failedStep(plan.node, node.stderr)?.index === 0) {
      if (/File exists/.test(node.stderr)) {
        await deleteHostLink(io, attachment);
        node = await runBatch(io, NODE_BATCH_ARGV, plan.node);
      }
    }
    if (!succeeded(node)) throw batchError(node, plan.node, "node", args.netns);
    const pod = await runBatch(io, podBatchArgv(args.netns), plan.pod);
    if (!succeeded(pod)) throw batchError(pod, plan.pod, "pod", args.netns);
    return addResult(inputs, {
      host: parseMac(node.stdout, names.host),
      pod: parseMac(pod.stdout, args.ifname),
    });
  } catch (error) {
    // Whatever part of the pair exists goes with the node's end; then the address is free again.
    await deleteHostLink(io, attachment);
    await ipam.release(attachment);
    throw error;
  }
}

/**
 * Idempotent, as SPEC.md asks: a link already gone (the netns was deleted first, which destroys the
 * pair, or an earlier DEL) and an address never allocated are both success.
 */
export async function del(io: CniIO, conf: PluginConf, args: CniArgs): Promise<void> {
  const attachment: Attachment = { containerId: args.containerId, ifname: args.ifname };
  const deleted = await deleteHostLink(io, attachment);
  // The address stays reserved while its route may still exist: a new pod given it would fail.
  if (!succeeded(deleted) && !linkIsGone(deleted)) {
    throw new CniError(
      CNI_ERROR.linkRemovalFailed,
      `could not delete ${linkNames(attachment).host}: ${deleted.stderr.trim() || deleted.failure}`,
      commandStory(deleted),
    );
  }
  await ipamOf(conf).release(attachment);
}

function prevAddress(prevResult: unknown): string {
  const ips = (prevResult as { ips?: unknown } | undefined)?.ips;
  const first: unknown = Array.isArray(ips) ? ips[0] : undefined;
  const address = (first as { address?: unknown } | undefined)?.address;
  if (typeof address !== "string" || parseIpv4(address.split("/")[0] ?? "") === undefined) {
    throw new CniError(
      CNI_ERROR.invalidConfig,
      "CHECK needs prevResult with the ADD result's ips[0].address",
    );
  }
  return address.split("/")[0] ?? "";
}

/** CHECK (SPEC.md): the address is still reserved for this attachment and both ends still hold it. */
export async function check(io: CniIO, conf: PluginConf, args: CniArgs): Promise<void> {
  const expected = prevAddress(conf.prevResult);
  await requireNetns(io, args.netns);
  const attachment: Attachment = { containerId: args.containerId, ifname: args.ifname };
  const reserved = (await ipamOf(conf).allocations()).find(
    (allocation) =>
      allocation.owner.containerId === attachment.containerId &&
      allocation.owner.ifname === attachment.ifname,
  );
  if (reserved === undefined || formatIpv4(reserved.address) !== expected) {
    throw new CniError(
      CNI_ERROR.checkFailed,
      `${expected} is not reserved for container ${attachment.containerId} ${attachment.ifname} in ${conf.ipamDir}`,
    );
  }
  const host = linkNames(attachment).host;
  const gateway = `${formatIpv4(conf.gateway)}/32`;
  const hostAddrs = await io.run(["ip", "-o", "addr", "show", "dev", host]);
  if (!succeeded(hostAddrs) || !hostAddrs.stdout.includes(` ${gateway} `)) {
    throw new CniError(
      CNI_ERROR.checkFailed,
      `the node's end ${host} is missing or lacks ${gateway}`,
      commandStory(hostAddrs),
    );
  }
  const podAddrs = await io.run([
    "nsenter",
    `--net=${args.netns}`,
    "ip",
    "-o",
    "addr",
    "show",
    "dev",
    args.ifname,
  ]);
  if (!succeeded(podAddrs) || !podAddrs.stdout.includes(` ${expected}/32 `)) {
    throw new CniError(
      CNI_ERROR.checkFailed,
      `${args.ifname} in ${args.netns} is missing or lacks ${expected}/32`,
      commandStory(podAddrs),
    );
  }
}

/**
 * STATUS (spec 1.1): ready when an address is free and the node forwards, without which pods could
 * reach the node but not each other (the node turns ip_forward on; the plugin never does).
 */
export async function status(io: CniIO, conf: PluginConf): Promise<void> {
  if (!(await ipamOf(conf).hasFreeAddress())) {
    throw new CniError(
      CNI_ERROR.pluginNotAvailable,
      `no free address left in ${conf.ipamDir} for a new pod`,
    );
  }
  const forward = (await io.readText("/proc/sys/net/ipv4/ip_forward"))?.trim();
  if (forward === "0") {
    throw new CniError(
      CNI_ERROR.pluginNotAvailable,
      "/proc/sys/net/ipv4/ip_forward is 0: the node would not forward between pods",
    );
  }
}

/** GC (spec 1.1): every attachment the runtime no longer knows loses its link and its address. */
export async function gc(io: CniIO, conf: PluginConf): Promise<void> {
  const valid = conf.validAttachments;
  if (valid === undefined) {
    throw new CniError(CNI_ERROR.invalidConfig, 'GC needs "cni.dev/valid-attachments"');
  }
  const keep = new Set(valid.map((entry) => `${entry.containerId}\0${entry.ifname}`));
  const ipam = ipamOf(conf);
  for (const { owner } of await ipam.allocations()) {
    if (keep.has(`${owner.containerId}\0${owner.ifname}`)) continue;
    const deleted = await deleteHostLink(io, owner);
    if (succeeded(deleted) || linkIsGone(deleted)) await ipam.release(owner);
  }
}

function versionReply(stdin: string): string {
  let requested: CniVersion = LATEST_VERSION;
  try {
    requested = parseVersion(decodeJson(stdin));
  } catch {
    // VERSION answers even without a usable configuration: that is how a runtime asks.
  }
  return JSON.stringify({ cniVersion: requested, supportedVersions: [...SUPPORTED_VERSIONS] });
}

function versionForErrors(stdin: string): string {
  try {
    return parseVersion(decodeJson(stdin));
  } catch {
    return LATEST_VERSION;
  }
}

/** One invocation, as containerd makes it: environment and stdin in, stdout and status out. */
export async function runPlugin(
  env: Environment,
  stdin: string,
  io: CniIO,
): Promise<PluginOutcome> {
  try {
    const command = parseCommand(env);
    if (command === "VERSION") return { stdout: `${versionReply(stdin)}\n`, exitCode: 0 };
    const conf = parsePluginConf(decodeJson(stdin));
    switch (command) {
      case "ADD": {
        const result = await add(io, conf, parseAttachmentArgs(command, env));
        return { stdout: `${JSON.stringify(result)}\n`, exitCode: 0 };
      }
      case "DEL":
        await del(io, conf, parseAttachmentArgs(command, env));
        return { stdout: "", exitCode: 0 };
      case "CHECK":
        await check(io, conf, parseAttachmentArgs(command, env));
        return { stdout: "", exitCode: 0 };
      case "STATUS":
        await status(io, conf);
        return { stdout: "", exitCode: 0 };
      case "GC":
        await gc(io, conf);
        return { stdout: "", exitCode: 0 };
    }
  } catch (error) {
    const cniError =
      error instanceof CniError
        ? error
        : new CniError(CNI_ERROR.ioFailure, (error as Error).message, (error as Error).stack);
    return {
      stdout: `${JSON.stringify(errorJson(versionForErrors(stdin), cniError))}\n`,
      exitCode: 1,
    };
  }
}
