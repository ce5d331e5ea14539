import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureSuccess, runCommand } from "../../src/common/exec.js";
import { sleep } from "../../src/node/process-identity.js";

/**
 * A stand-in for "what the sandbox reaches": a network namespace behind a veth, with an HTTP
 * server and a DNS server (CoreDNS, `hosts` plugin) of its own. Nothing in it routes back to the
 * pod range, so a pod reaches it only when the node rewrites the pod's source address (SNAT or
 * MASQUERADE), and an outside name resolves only through the resolver `up --resolv-conf` names.
 * Test traffic never leaves the machine: the range is a documentation range (RFC 5737) that no
 * address or route of this machine uses (some VMs number their real uplink from TEST-NET-1), and
 * the route to the server is checked to go through this veth before any test uses it.
 */
export interface OutsideWorld {
  /** The uplink as the node sees it: the root side of the veth. */
  readonly uplink: { readonly name: string; readonly address: string };
  readonly httpUrl: string;
  /** Answered only by the outside DNS server. */
  readonly name: string;
  readonly nameAddress: string;
  /** A resolv.conf naming the outside DNS server, for `up --resolv-conf`. */
  readonly resolvConf: string;
  close(): Promise<void>;
}

const NETNS = "sk-outside";
const LINK = "skout0";
const PEER = "skout0p";
/** RFC 5737 documentation ranges, as their first three octets; the first one unused here wins. */
const CANDIDATE_RANGES = ["198.51.100", "203.0.113", "192.0.2"];
const HTTP_PORT = 8080;
export const OUTSIDE_NAME = "outside.sandkube.test";
/** What the HTTP server says, followed by the address it saw the request come from. */
export const OUTSIDE_GREETING = "sandkube-outside: request from";

const httpServer = (address: string): string => `require("node:http").createServer((req, res) => {
  res.end("${OUTSIDE_GREETING} " + req.socket.remoteAddress + "\\n");
}).listen(${HTTP_PORT}, "${address}");`;

/** Pure: the first candidate /24 that no address or route in `ip -j` output mentions. */
export function unusedRange(
  candidates: readonly string[],
  addressesJson: string,
  routesJson: string,
): string | undefined {
  const addresses = (JSON.parse(addressesJson) as { addr_info?: { local?: string }[] }[]).flatMap(
    (link) => (link.addr_info ?? []).map((info) => info.local ?? ""),
  );
  const routes = (JSON.parse(routesJson) as { dst?: string; gateway?: string }[]).flatMap((r) => [
    r.dst ?? "",
    r.gateway ?? "",
  ]);
  return candidates.find(
    (prefix) => ![...addresses, ...routes].some((used) => used.startsWith(`${prefix}.`)),
  );
}

async function pickRange(): Promise<string> {
  const addresses = await runCommand(["ip", "-j", "-4", "addr", "show"]);
  const routes = await runCommand(["ip", "-j", "-4", "route", "show", "table", "all"]);
  const range = unusedRange(
    CANDIDATE_RANGES,
    ensureSuccess(addresses).stdout || "[]",
    ensureSuccess(routes).stdout || "[]",
  );
  if (range === undefined) {
    throw new Error(
      `every documentation range (${CANDIDATE_RANGES.join(", ")}) is in use on this machine; no outside world`,
    );
  }
  return range;
}

async function run(argv: readonly string[]): Promise<void> {
  ensureSuccess(await runCommand(argv, { timeoutMs: 30_000 }));
}

async function removeNetwork(): Promise<void> {
  await runCommand(["ip", "link", "del", LINK]);
  await runCommand(["ip", "netns", "del", NETNS]);
}

function startIn(argv: readonly string[], log: string): ChildProcess {
  const child = spawn("ip", ["netns", "exec", NETNS, ...argv], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    void writeFile(log, chunk, { flag: "a" });
  });
  return child;
}

async function answers(argv: readonly string[]): Promise<boolean> {
  const result = await runCommand(["ip", "netns", "exec", NETNS, ...argv], { timeoutMs: 5_000 });
  return result.exitCode === 0;
}

export async function openOutsideWorld(coredns: string): Promise<OutsideWorld> {
  await removeNetwork();
  const range = await pickRange();
  const NODE_SIDE = `${range}.2`;
  const OUTSIDE = `${range}.1`;
  const dir = await mkdtemp(join(tmpdir(), "sk-outside-"));
  const children: ChildProcess[] = [];
  const close = async (): Promise<void> => {
    for (const child of children) child.kill("SIGKILL");
    await removeNetwork();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await run(["ip", "netns", "add", NETNS]);
    await run(["ip", "link", "add", LINK, "type", "veth", "peer", "name", PEER]);
    await run(["ip", "link", "set", PEER, "netns", NETNS]);
    await run(["ip", "addr", "add", `${NODE_SIDE}/24`, "dev", LINK]);
    await run(["ip", "link", "set", LINK, "up"]);
    const inside = (argv: readonly string[]) => run(["ip", "netns", "exec", NETNS, ...argv]);
    await inside(["ip", "addr", "add", `${OUTSIDE}/24`, "dev", PEER]);
    await inside(["ip", "link", "set", PEER, "up"]);
    await inside(["ip", "link", "set", "lo", "up"]);
    const route = ensureSuccess(await runCommand(["ip", "-j", "route", "get", OUTSIDE])).stdout;
    const device = (JSON.parse(route) as { dev?: string }[])[0]?.dev;
    if (device !== LINK) {
      throw new Error(
        `${OUTSIDE} routes through ${device ?? "nothing"}, not ${LINK}; refusing to send test traffic there`,
      );
    }

    const corefile = join(dir, "Corefile");
    await writeFile(
      corefile,
      `. {\n  bind ${OUTSIDE}\n  hosts {\n    ${OUTSIDE} ${OUTSIDE_NAME}\n  }\n}\n`,
    );
    children.push(startIn([process.execPath, "-e", httpServer(OUTSIDE)], join(dir, "http.log")));
    children.push(startIn([coredns, "-conf", corefile], join(dir, "coredns.log")));
    const resolvConf = join(dir, "resolv.conf");
    await writeFile(resolvConf, `nameserver ${OUTSIDE}\n`);

    for (let i = 0; i < 100; i++) {
      const http = await answers(["curl", "-sf", "-m", "2", `http://${OUTSIDE}:${HTTP_PORT}/`]);
      const dns = await answers(["busybox", "nslookup", OUTSIDE_NAME, OUTSIDE]);
      if (http && dns) {
        return {
          uplink: { name: LINK, address: NODE_SIDE },
          httpUrl: `http://${OUTSIDE}:${HTTP_PORT}/`,
          name: OUTSIDE_NAME,
          nameAddress: OUTSIDE,
          resolvConf,
          close,
        };
      }
      await sleep(200);
    }
    throw new Error(`the outside world's HTTP or DNS server did not answer; logs in ${dir}`);
  } catch (error) {
    await close();
    throw error;
  }
}
