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
 * Test traffic never leaves the machine: 192.0.2.0/24 is TEST-NET-1 and lives only in here.
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
const NODE_SIDE = "192.0.2.2";
const OUTSIDE = "192.0.2.1";
const HTTP_PORT = 8080;
export const OUTSIDE_NAME = "outside.sandkube.test";
/** What the HTTP server says, followed by the address it saw the request come from. */
export const OUTSIDE_GREETING = "sandkube-outside: request from";

const HTTP_SERVER = `require("node:http").createServer((req, res) => {
  res.end("${OUTSIDE_GREETING} " + req.socket.remoteAddress + "\\n");
}).listen(${HTTP_PORT}, "${OUTSIDE}");`;

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

    const corefile = join(dir, "Corefile");
    await writeFile(
      corefile,
      `. {\n  bind ${OUTSIDE}\n  hosts {\n    ${OUTSIDE} ${OUTSIDE_NAME}\n  }\n}\n`,
    );
    children.push(startIn([process.execPath, "-e", HTTP_SERVER], join(dir, "http.log")));
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
