import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { labBinary, labBinDir, labCniDir } from "../../lab/paths.js";
import { runCommand, type CommandResult } from "../../src/common/exec.js";
import { busyboxRootfs, DEBIAN_BUSYBOX } from "../../src/images/busybox.js";
import { isStaticElf } from "../../src/images/elf.js";
import { nodeLayout, type NodeLayout } from "../../src/node/layout.js";
import { DEFAULT_NETWORK, SANDBOX_IMAGE } from "../../src/plan/cluster-config.js";
import { registryHostsDir, renderContainerdConfig } from "../../src/plan/containerd-config.js";
import { collectCoreFacts } from "../../src/probe/facts.js";
import { systemIO } from "../../src/probe/io.js";
import { writeRegistryFiles } from "../../src/registry/credentials.js";
import {
  DEBIAN_DOCKER_REGISTRY,
  startLocalRegistry,
  writeHtpasswd,
  type LocalRegistry,
} from "../../src/registry/local.js";
import type { RegistryConfig } from "../../src/registry/options.js";
import { containerdProxyEnv } from "../../src/registry/proxy-env.js";
import { issueRegistryTls } from "../../src/registry/tls.js";
import { freeLoopbackPort } from "../../src/common/net.js";

/**
 * Pulls from a real registry on this kernel (test/gvisor/registry-pull.test.ts runs this same file
 * inside runsc): Debian's docker-registry on loopback with TLS
 * from a CA made here and htpasswd logins, and a scratch containerd 2.4 laid out as a node's,
 * configured by sandkube's renderers (config.toml, hosts.toml, the proxy environment). The
 * `sandkube images push/pull` CLI and the CRI (crictl, with the credentials kubelet would send)
 * pull from it; a second name for the same registry is reachable only through an HTTP CONNECT
 * proxy on loopback. Nothing leaves loopback.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const CLI = join(REPO, "dist/src/cli/main.js");
const STACK = ["containerd", "containerd-shim-runc-v2", "ctr", "crictl"];
/** A name nothing resolves; only the test's proxy knows it means 127.0.0.1. */
const PROXIED_NAME = "registry.sandkube.test";
const USER = "alice";
const PASSWORD = "correct horse: battery";

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "SKIPPED: registry host tests need root (containerd)";
  const missing = STACK.map((b) => labBinary(b)).filter((b) => !existsSync(b));
  if (missing.length > 0)
    return `SKIPPED: lab not built, missing ${missing.join(", ")}; run npm run lab:build`;
  if (!existsSync(DEBIAN_DOCKER_REGISTRY))
    return `SKIPPED: ${DEBIAN_DOCKER_REGISTRY} missing; apt-get install docker-registry`;
  if (!existsSync("/usr/bin/script")) return "SKIPPED: util-linux script missing";
  if (!(await isStaticElf(DEBIAN_BUSYBOX).catch(() => false)))
    return "SKIPPED: no static busybox; apt-get install -y busybox-static";
  return undefined;
}

const reason = await skipReason();
if (reason !== undefined) process.stderr.write(`\n*** registry-pull: ${reason}\n`);

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe(
  "images from a TLS + htpasswd registry on loopback (host kernel)",
  { skip: reason },
  () => {
    let scratch: string;
    let layout: NodeLayout;
    let registry: LocalRegistry | undefined;
    let containerd: ChildProcess | undefined;
    let proxy: http.Server | undefined;
    const tunnels: string[] = [];
    let port = 0;
    let ca = "";
    let caPem = "";
    let good = "";
    let bad = "";
    let ref = "";
    let proxiedRef = "";

    const sandkube = (args: string[]): Promise<CommandResult> =>
      runCommand(["node", CLI, "images", ...args, "--data-dir", layout.dataDir], {
        timeoutMs: 300_000,
      });
    const ctr = (args: string[]): Promise<CommandResult> =>
      runCommand([labBinary("ctr"), "-a", layout.containerdSocket, "-n", "k8s.io", ...args], {
        timeoutMs: 60_000,
      });
    const crictl = (args: string[]): Promise<CommandResult> =>
      runCommand(
        [labBinary("crictl"), "--image-endpoint", `unix://${layout.containerdSocket}`, ...args],
        { timeoutMs: 120_000 },
      );
    const registries = (withCa: boolean): RegistryConfig[] =>
      [`127.0.0.1:${port}`, `${PROXIED_NAME}:${port}`].map((host) => ({
        host,
        mirrors: [],
        ...(withCa ? { ca } : {}),
        insecureSkipVerify: false,
        credentialsFile: good,
      }));
    const configure = (withCa: boolean) =>
      writeRegistryFiles(
        { hostsDir: registryHostsDir(layout), kubeletRoot: layout.kubeletRoot },
        { registries: registries(withCa) },
      );

    before(async () => {
      scratch = mkdtempSync(join(tmpdir(), "sk-registry-"));
      layout = nodeLayout(join(scratch, "node"));
      port = await freeLoopbackPort();
      ref = `127.0.0.1:${port}/sk/busybox:reg`;
      proxiedRef = `${PROXIED_NAME}:${port}/sk/busybox:reg`;

      // The registry: TLS from a CA made here, htpasswd with one bcrypt login.
      const regDir = join(scratch, "registry");
      mkdirSync(regDir, { recursive: true });
      const tls = await issueRegistryTls({
        dnsNames: [PROXIED_NAME],
        ipAddresses: ["127.0.0.1"],
      });
      caPem = tls.caPem;
      ca = join(scratch, "ca.pem");
      await writeFile(ca, tls.caPem);
      await writeFile(join(regDir, "cert.pem"), tls.certPem);
      await writeFile(join(regDir, "key.pem"), tls.keyPem, { mode: 0o600 });
      await writeHtpasswd(join(regDir, "htpasswd"), [{ username: USER, password: PASSWORD }]);
      registry = await startLocalRegistry({
        dir: regDir,
        address: `127.0.0.1:${port}`,
        tls: { cert: join(regDir, "cert.pem"), key: join(regDir, "key.pem") },
        htpasswd: join(regDir, "htpasswd"),
      });

      // Credentials files: docker config.json, one right, one wrong.
      const auth = (password: string) => Buffer.from(`${USER}:${password}`).toString("base64");
      good = join(scratch, "good.json");
      bad = join(scratch, "bad.json");
      const dockerConfig = (password: string) =>
        JSON.stringify({
          auths: {
            [`127.0.0.1:${port}`]: { auth: auth(password) },
            [`${PROXIED_NAME}:${port}`]: { auth: auth(password) },
          },
        });
      await writeFile(good, dockerConfig(PASSWORD), { mode: 0o600 });
      await writeFile(bad, dockerConfig("wrong password"), { mode: 0o600 });

      // The smallest honest HTTP CONNECT proxy: knows PROXIED_NAME, refuses everything else.
      proxy = http.createServer((_request, response) => {
        response.writeHead(405);
        response.end();
      });
      proxy.on("connect", (request: http.IncomingMessage, client: net.Socket, head: Buffer) => {
        const authority = request.url ?? "";
        const [host, targetPort] = authority.split(":");
        if (host !== PROXIED_NAME) {
          client.end("HTTP/1.1 403 Forbidden\r\n\r\n");
          return;
        }
        tunnels.push(authority);
        const upstream = net.connect(Number(targetPort), "127.0.0.1", () => {
          client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
          upstream.write(head);
          upstream.pipe(client);
          client.pipe(upstream);
        });
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
      });
      await new Promise<void>((resolve) => proxy?.listen(0, "127.0.0.1", resolve));
      const proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;

      // The node's containerd, rendered as `up` renders it (config_path = the node's certs.d).
      mkdirSync(dirname(layout.containerdConfig), { recursive: true });
      mkdirSync(layout.cniConfDir, { recursive: true });
      const facts = await collectCoreFacts(systemIO(), { dataDir: layout.dataDir });
      await writeFile(
        layout.containerdConfig,
        renderContainerdConfig(
          {
            snapshotter: "overlayfs",
            sandboxImage: SANDBOX_IMAGE,
            binaries: { ociRuntime: labBinary("runc"), cniBinDir: labCniDir() },
          },
          facts,
          layout,
        ),
      );
      await configure(true);
      // Stands in for the node record `up` writes: `images` reads only the snapshotter and ctr.
      await writeFile(
        layout.stateFile,
        JSON.stringify({
          schema: "sandkube.node/v1",
          config: { snapshotter: "overlayfs", binaries: { ctr: labBinary("ctr") } },
        }),
      );
      const inherited = Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !/^(https?|no)_proxy$/i.test(k)),
      );
      const log = openSync(join(scratch, "containerd.log"), "w");
      containerd = spawn(labBinary("containerd"), ["--config", layout.containerdConfig], {
        stdio: ["ignore", log, log],
        env: {
          ...inherited,
          PATH: `${labBinDir()}:${process.env["PATH"] ?? ""}`,
          ...containerdProxyEnv({ HTTPS_PROXY: proxyUrl }, DEFAULT_NETWORK),
        },
      });
      closeSync(log);
      await waitFor(
        async () => existsSync(layout.containerdSocket) && (await ctr(["version"])).exitCode === 0,
        "containerd",
      );
    });

    after(async () => {
      if (containerd?.pid !== undefined && containerd.exitCode === null) {
        const exited = new Promise((r) => containerd?.once("exit", r));
        containerd.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (containerd.exitCode === null) containerd.kill("SIGKILL");
      }
      await registry?.stop();
      proxy?.closeAllConnections();
      await new Promise((resolve) =>
        proxy === undefined ? resolve(undefined) : proxy.close(resolve),
      );
      if (scratch !== undefined) {
        const mounts = readFileSync("/proc/self/mountinfo", "utf8")
          .split("\n")
          .map((line) => line.split(" ")[4] ?? "")
          .filter((point) => point.startsWith(scratch))
          .reverse();
        for (const point of mounts) await runCommand(["umount", "-l", point]);
        rmSync(scratch, { recursive: true, force: true });
      }
    });

    /** The registry's tags for sk/busybox, asked over TLS with the CA and the right login. */
    async function registryTags(): Promise<string[]> {
      return new Promise((resolve, reject) => {
        https
          .get(
            `https://127.0.0.1:${port}/v2/sk/busybox/tags/list`,
            { ca: caPem, auth: `${USER}:${PASSWORD}` },
            (response) => {
              let body = "";
              response.on("data", (chunk: Buffer) => (body += chunk.toString()));
              response.on("end", () => {
                if (response.statusCode !== 200)
                  reject(new Error(`${response.statusCode} ${body}`));
                else resolve((JSON.parse(body) as { tags: string[] }).tags);
              });
            },
          )
          .on("error", reject);
      });
    }

    async function removeLocal(name: string): Promise<void> {
      await ctr(["images", "rm", "--sync", name]);
      const listed = await ctr(["images", "ls", "-q"]);
      assert.ok(!listed.stdout.split("\n").includes(name), `${name} still in containerd`);
    }

    test("build, then push with the login from a credentials file; the registry has the tag", async () => {
      const rootfs = join(scratch, "busybox");
      await busyboxRootfs(rootfs);
      const built = await sandkube([
        "build",
        "--from-dir",
        rootfs,
        "--name",
        ref,
        "--cmd",
        "/bin/sh",
      ]);
      assert.equal(built.exitCode, 0, built.stderr);
      const pushed = await sandkube(["push", ref, "--credentials", good]);
      assert.equal(pushed.exitCode, 0, pushed.stderr);
      assert.equal(pushed.stdout, `pushed ${ref} (as ${USER})\n`);
      assert.deepEqual(await registryTags(), ["reg"]);
    });

    test("pull with the node's own login (kubelet's config.json) and the CA from hosts.toml", async () => {
      assert.ok(existsSync(join(layout.kubeletRoot, "config.json")));
      await removeLocal(ref);
      const pulled = await sandkube(["pull", ref]);
      assert.equal(pulled.exitCode, 0, pulled.stderr);
      assert.equal(pulled.stdout, `pulled ${ref} (as ${USER})\n`);
      const listed = await sandkube(["ls", "--json"]);
      const names = (JSON.parse(listed.stdout) as { images: { name: string }[] }).images.map(
        (i) => i.name,
      );
      assert.ok(names.includes(ref), names.join(", "));
    });

    test("CRI pull with the credentials kubelet sends (pull secret or config.json) works", async () => {
      await removeLocal(ref);
      const pulled = await crictl(["pull", "--creds", `${USER}:${PASSWORD}`, ref]);
      assert.equal(pulled.exitCode, 0, pulled.stderr);
      assert.match(pulled.stdout, /Image is up to date for sha256:[0-9a-f]{64}/);
    });

    test("a wrong password is refused with 401 Unauthorized, by the CLI and the CRI", async () => {
      await removeLocal(ref);
      const cli = await sandkube(["pull", ref, "--credentials", bad]);
      assert.equal(cli.exitCode, 1);
      assert.match(cli.stderr, /^sandkube: images pull: containerd refused: .*401 Unauthorized/m);
      assert.ok(!cli.stderr.includes("wrong password"), "the password leaked into the message");
      process.stderr.write(`# wrong password, as the CLI reports it: ${cli.stderr}`);
      const cri = await crictl(["pull", "--creds", `${USER}:wrong password`, ref]);
      assert.notEqual(cri.exitCode, 0);
      assert.match(cri.stderr, /failed to pull and unpack image .*401 Unauthorized/);
      const anonymous = await crictl(["pull", ref]);
      assert.notEqual(anonymous.exitCode, 0);
      assert.match(anonymous.stderr, /authorization failed: no basic auth credentials/);
    });

    test("without the CA in hosts.toml the pull fails on the certificate (x509)", async () => {
      await configure(false);
      try {
        const cli = await sandkube(["pull", ref]);
        assert.equal(cli.exitCode, 1);
        assert.match(cli.stderr, /x509: certificate signed by unknown authority/);
        process.stderr.write(`# no CA, as the CLI reports it: ${cli.stderr}`);
        const cri = await crictl(["pull", "--creds", `${USER}:${PASSWORD}`, ref]);
        assert.notEqual(cri.exitCode, 0);
        assert.match(cri.stderr, /x509: certificate signed by unknown authority/);
      } finally {
        await configure(true);
      }
    });

    test("a registry name only the proxy resolves is reached through HTTPS_PROXY", async () => {
      tunnels.length = 0;
      const cli = await sandkube(["pull", proxiedRef]);
      assert.equal(cli.exitCode, 0, cli.stderr);
      assert.ok(tunnels.includes(`${PROXIED_NAME}:${port}`), `tunnels: ${tunnels.join(", ")}`);
      tunnels.length = 0;
      await removeLocal(proxiedRef);
      const cri = await crictl(["pull", "--creds", `${USER}:${PASSWORD}`, proxiedRef]);
      assert.equal(cri.exitCode, 0, cri.stderr);
      assert.ok(tunnels.includes(`${PROXIED_NAME}:${port}`), `tunnels: ${tunnels.join(", ")}`);
    });
  },
);
