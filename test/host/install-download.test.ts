/**
 * The release-download path of `sandkube install`, against a loopback HTTPS server that STANDS IN
 * FOR THE REAL RELEASE SITE (dl.k8s.io, GitHub releases): this machine cannot reach those, so the
 * test makes its own CA with the openssl CLI, serves pinned files over real TLS on 127.0.0.1, and
 * runs a real HTTP CONNECT proxy on loopback for HTTPS_PROXY. Nothing leaves loopback.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir, stat } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tar from "tar";
import { installMissing } from "../../src/install/install.js";
import { downloadVerified, Sha256MismatchError } from "../../src/install/download.js";
import type { ReleaseDownload } from "../../src/install/download-plan.js";
import { parseStamp } from "../../src/install/build-plan.js";

let work = "";
let ca = "";
let release: https.Server;
let releaseBase = "";
let proxy: http.Server;
let proxyUrl = "";
const tunnels: string[] = [];
const files = new Map<string, Buffer>();

/** Stand-in payloads: shell scripts that answer `--version` as the pinned releases do. */
function script(line: string): Buffer {
  return Buffer.from(`#!/bin/sh\necho '${line}'\n`);
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

async function allFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { cwd: work, stdio: "pipe" });
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "sandkube-install-download-"));
  // A CA and a server certificate for 127.0.0.1, as a release site's would be for its name.
  openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=sandkube test CA",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
  ]);
  openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
  ]);
  await writeFile(join(work, "san.ext"), "subjectAltName=IP:127.0.0.1\n");
  openssl([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    "san.ext",
    "-out",
    "server.pem",
  ]);
  ca = await readFile(join(work, "ca.pem"), "utf8");

  files.set("/release/v1.34.4/bin/linux/amd64/kubelet", script("Kubernetes v1.34.4"));
  const archiveDir = join(work, "archive");
  await mkdir(join(archiveDir, "bin"), { recursive: true });
  for (const [name, line] of [
    ["containerd", "containerd github.com/containerd/containerd/v2 v2.4.2 0"],
    ["containerd-shim-runc-v2", "containerd-shim-runc-v2:\n  Version:  v2.4.2"],
    ["ctr", "ctr github.com/containerd/containerd/v2 v2.4.2"],
  ] as const)
    await writeFile(join(archiveDir, "bin", name), script(line), { mode: 0o755 });
  await tar.c({ gzip: true, file: join(work, "containerd.tar.gz"), cwd: archiveDir }, ["bin"]);
  files.set(
    "/containerd-2.4.2-linux-amd64.tar.gz",
    await readFile(join(work, "containerd.tar.gz")),
  );

  release = https.createServer(
    {
      key: await readFile(join(work, "server.key")),
      cert: await readFile(join(work, "server.pem")),
    },
    (request, response) => {
      const path = request.url ?? "";
      if (path === "/moved") {
        response.writeHead(302, { location: "/release/v1.34.4/bin/linux/amd64/kubelet" });
        response.end();
        return;
      }
      if (path === "/truncated") {
        // Promises 4096 bytes, sends 100, then drops the connection: a download cut off midway.
        response.writeHead(200, { "content-length": "4096" });
        response.write(Buffer.alloc(100, 1), () => response.socket?.destroy());
        return;
      }
      const body = files.get(path);
      if (body === undefined) {
        response.writeHead(404);
        response.end();
        return;
      }
      response.writeHead(200, { "content-length": String(body.length) });
      response.end(body);
    },
  );
  await new Promise<void>((resolve) => release.listen(0, "127.0.0.1", resolve));
  releaseBase = `https://127.0.0.1:${(release.address() as net.AddressInfo).port}`;

  // The smallest honest HTTP CONNECT proxy: tunnels to loopback only, and records each tunnel.
  proxy = http.createServer((_request, response) => {
    response.writeHead(405);
    response.end();
  });
  proxy.on("connect", (request: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const authority = request.url ?? "";
    const [host, port] = authority.split(":");
    if (host !== "127.0.0.1") {
      client.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      return;
    }
    tunnels.push(authority);
    const upstream = net.connect(Number(port), host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
});

after(async () => {
  release?.closeAllConnections();
  proxy?.closeAllConnections();
  await Promise.all([
    new Promise((resolve) => release?.close(resolve)),
    new Promise((resolve) => proxy?.close(resolve)),
  ]);
  if (work !== "") await rm(work, { recursive: true, force: true });
});

function kubeletDownload(
  pin: string,
  path = "/release/v1.34.4/bin/linux/amd64/kubelet",
): ReleaseDownload {
  return {
    component: "kubelet",
    artifacts: [
      {
        url: `${releaseBase}${path}`,
        sha256: pin,
        format: "binary",
        members: { kubelet: "kubelet" },
      },
    ],
  };
}

function kubeletSha(): string {
  const body = files.get("/release/v1.34.4/bin/linux/amd64/kubelet");
  assert.ok(body);
  return sha256(body);
}

/** No PATH: nothing outside the cache may satisfy the install. No Go builds: only downloads. */
const NO_PATH_ENV: NodeJS.ProcessEnv = { PATH: "/nonexistent" };

test("stand-in release site: a pinned binary whose sha256 matches lands in the cache, stamped and in the manifest", async () => {
  const cacheDir = join(work, "cache-happy");
  const lines: string[] = [];
  const { resolution, outcomes } = await installMissing({
    env: NO_PATH_ENV,
    cacheDir,
    only: ["kubelet"],
    downloads: [kubeletDownload(kubeletSha())],
    build: false,
    ca,
    onProgress: (line) => lines.push(line),
  });
  assert.deepEqual(resolution.missing, []);
  const kubelet = join(cacheDir, "bin", "kubelet");
  assert.equal(resolution.paths["kubelet"], kubelet);
  assert.equal(resolution.found[0]?.source, "cache");
  assert.equal(outcomes[0]?.status, "built");
  assert.ok(
    lines.some((line) => /^downloading kubelet v1\.34\.4/.test(line)),
    lines.join("\n"),
  );
  assert.ok(
    lines.some((line) => /^done kubelet in /.test(line)),
    lines.join("\n"),
  );
  // The file is whole and executable: it runs and answers as the pinned release.
  assert.equal(
    execFileSync(kubelet, ["--version"], { encoding: "utf8" }).trim(),
    "Kubernetes v1.34.4",
  );
  assert.equal((await stat(kubelet)).mode & 0o777, 0o755);
  const stamp = parseStamp(await readFile(join(cacheDir, "stamps", "kubelet.json"), "utf8"));
  assert.equal(stamp?.source, "download");
  assert.equal(stamp?.binaries[0]?.sha256, kubeletSha());
  const manifest = JSON.parse(await readFile(join(cacheDir, "manifest.json"), "utf8")) as {
    components: { name: string; source: string; binaries: { sha256: string }[] }[];
  };
  const entry = manifest.components.find((component) => component.name === "kubelet");
  assert.equal(entry?.source, "download");
  assert.equal(entry?.binaries[0]?.sha256, kubeletSha());

  // A second install finds it in the cache and downloads nothing.
  const again: string[] = [];
  const second = await installMissing({
    env: NO_PATH_ENV,
    cacheDir,
    only: ["kubelet"],
    downloads: [kubeletDownload(kubeletSha(), "/gone")],
    build: false,
    ca,
    onProgress: (line) => again.push(line),
  });
  assert.deepEqual(second.outcomes, []);
  assert.deepEqual(again, [`have kubelet: ${kubelet} (cache)`]);
});

test("stand-in release site: a tar.gz artifact yields every member binary (containerd, shim, ctr)", async () => {
  const cacheDir = join(work, "cache-archive");
  const body = files.get("/containerd-2.4.2-linux-amd64.tar.gz");
  assert.ok(body);
  const { resolution } = await installMissing({
    env: NO_PATH_ENV,
    cacheDir,
    only: ["containerd"],
    downloads: [
      {
        component: "containerd",
        artifacts: [
          {
            url: `${releaseBase}/containerd-2.4.2-linux-amd64.tar.gz`,
            sha256: sha256(body),
            format: "tar.gz",
            members: {
              containerd: "bin/containerd",
              "containerd-shim-runc-v2": "bin/containerd-shim-runc-v2",
              ctr: "bin/ctr",
            },
          },
        ],
      },
    ],
    build: false,
    ca,
  });
  assert.deepEqual(resolution.missing, []);
  assert.deepEqual(Object.keys(resolution.paths).sort(), [
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
  ]);
  // Only the binaries stay: no archive, no extraction folder, no partial file.
  assert.deepEqual(
    (await allFiles(cacheDir))
      .filter((path) => !path.includes("/stamps/") && !path.endsWith("manifest.json"))
      .sort(),
    ["containerd", "containerd-shim-runc-v2", "ctr"].map((name) => join(cacheDir, "bin", name)),
  );
});

test("stand-in release site: a sha256 other than the pin is refused and nothing is left in the cache", async () => {
  const cacheDir = join(work, "cache-mismatch");
  const wrongPin = "0".repeat(64);
  const { resolution, outcomes } = await installMissing({
    env: NO_PATH_ENV,
    cacheDir,
    only: ["kubelet"],
    downloads: [kubeletDownload(wrongPin)],
    build: false,
    ca,
  });
  assert.deepEqual(resolution.missing, ["kubelet"]);
  const outcome = outcomes[0];
  assert.equal(outcome?.status, "failed");
  assert.ok(outcome?.status === "failed" && outcome.step === "download");
  assert.match(
    outcome.message,
    new RegExp(`sha256 is ${kubeletSha()}, the pinned one is ${wrongPin}; refused`),
  );
  await assert.rejects(
    downloadVerified(
      `${releaseBase}/release/v1.34.4/bin/linux/amd64/kubelet`,
      wrongPin,
      join(cacheDir, "direct", "kubelet"),
      { env: {}, ca },
    ),
    (error: unknown) => error instanceof Sha256MismatchError && error.actual === kubeletSha(),
  );
  const left = (await allFiles(cacheDir)).filter((path) => !path.endsWith("manifest.json"));
  assert.deepEqual(left, [], `left behind: ${left.join(", ")}`);
});

test("stand-in release site, through an HTTP CONNECT proxy on loopback named by HTTPS_PROXY", async () => {
  const cacheDir = join(work, "cache-proxy");
  const before = tunnels.length;
  const { resolution } = await installMissing({
    env: { ...NO_PATH_ENV, HTTPS_PROXY: proxyUrl },
    cacheDir,
    only: ["kubelet"],
    // Through a redirect, so the second request also goes through the proxy.
    downloads: [kubeletDownload(kubeletSha(), "/moved")],
    build: false,
    ca,
  });
  assert.deepEqual(resolution.missing, []);
  const authority = new URL(releaseBase).host;
  assert.deepEqual(tunnels.slice(before), [authority, authority]);

  // And the proxy is really in the path: one that is not listening makes the download fail.
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const deadPort = (closed.address() as net.AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  await assert.rejects(
    downloadVerified(
      `${releaseBase}/release/v1.34.4/bin/linux/amd64/kubelet`,
      kubeletSha(),
      join(work, "via-dead-proxy"),
      {
        env: { HTTPS_PROXY: `http://127.0.0.1:${deadPort}` },
        ca,
      },
    ),
    /proxy 127\.0\.0\.1:\d+: connect ECONNREFUSED/,
  );
  // NO_PROXY for the host bypasses the dead proxy.
  const direct = join(work, "no-proxy", "kubelet");
  await downloadVerified(
    `${releaseBase}/release/v1.34.4/bin/linux/amd64/kubelet`,
    kubeletSha(),
    direct,
    {
      env: { HTTPS_PROXY: `http://127.0.0.1:${deadPort}`, NO_PROXY: "localhost,127.0.0.1" },
      ca,
    },
  );
  assert.equal(sha256(await readFile(direct)), kubeletSha());
});

test("stand-in release site: an interrupted download leaves no partial binary", async () => {
  const dir = join(work, "interrupted");
  const dest = join(dir, "kubelet");
  await assert.rejects(
    downloadVerified(`${releaseBase}/truncated`, "1".repeat(64), dest, { env: {}, ca }),
    (error: unknown) => error instanceof Error && /interrupted/.test(error.message),
  );
  assert.deepEqual(await allFiles(dir), []);
});

test("a server whose certificate no trusted CA signed is refused", async () => {
  const dir = join(work, "untrusted");
  await assert.rejects(
    downloadVerified(
      `${releaseBase}/release/v1.34.4/bin/linux/amd64/kubelet`,
      kubeletSha(),
      join(dir, "kubelet"),
      {
        env: {},
      },
    ),
    /unable to verify the first certificate|self-signed certificate|unable to get local issuer certificate/,
  );
  assert.deepEqual(await allFiles(dir), []);
});
