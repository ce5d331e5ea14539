/**
 * Downloads a pinned release artifact over https, through HTTPS_PROXY when set, and lets it into
 * the cache only when its sha256 is the pinned one. Node 20's https and fetch ignore HTTPS_PROXY,
 * and undici (whose ProxyAgent would) is not a dependency here, so the proxy's HTTP CONNECT
 * tunnel is opened by hand and TLS runs inside it.
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chmod, mkdir, rename, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { isIP, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import tls from "node:tls";
import * as tar from "tar";
import { proxyFor, type ReleaseArtifact } from "./download-plan.js";

export interface DownloadOptions {
  readonly env: NodeJS.ProcessEnv;
  /**
   * Extra trusted CA certificates (PEM), added to Node's own. The tests' loopback release server
   * has a CA of their own making; real release sites need none.
   */
  readonly ca?: string;
  /** Longest silence on the connection before the download is abandoned. */
  readonly idleTimeoutMs?: number;
}

export class DownloadError extends Error {
  constructor(
    readonly url: string,
    detail: string,
  ) {
    super(`download ${url}: ${detail}`);
    this.name = "DownloadError";
  }
}

export class Sha256MismatchError extends DownloadError {
  constructor(
    url: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(url, `sha256 is ${actual}, the pinned one is ${expected}; refused, nothing was kept`);
    this.name = "Sha256MismatchError";
  }
}

const MAX_REDIRECTS = 5;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;

function caOption(options: DownloadOptions): { ca?: string[] } {
  return options.ca === undefined ? {} : { ca: [...tls.rootCertificates, options.ca] };
}

function portOf(url: URL): number {
  return url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
}

/** An HTTP CONNECT tunnel to host:port through `proxy` (RFC 9110 section 9.3.6). */
function connectTunnel(proxy: URL, target: URL, idleTimeoutMs: number): Promise<Socket> {
  if (proxy.protocol !== "http:")
    return Promise.reject(
      new DownloadError(
        target.href,
        `HTTPS_PROXY ${proxy.href}: only http:// proxies are supported`,
      ),
    );
  const authority = `${target.hostname}:${portOf(target)}`;
  const auth =
    proxy.username === ""
      ? {}
      : {
          "proxy-authorization": `Basic ${Buffer.from(
            `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`,
          ).toString("base64")}`,
        };
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: proxy.hostname,
      port: portOf(proxy),
      method: "CONNECT",
      path: authority,
      headers: { host: authority, ...auth },
      agent: false,
    });
    request.setTimeout(idleTimeoutMs, () =>
      request.destroy(new Error(`no answer from proxy ${proxy.host} in ${idleTimeoutMs} ms`)),
    );
    request.once("connect", (response, socket) => {
      request.setTimeout(0);
      if (response.statusCode === 200) {
        resolve(socket);
        return;
      }
      socket.destroy();
      reject(
        new DownloadError(
          target.href,
          `proxy ${proxy.host} refused CONNECT ${authority}: ${response.statusCode} ${response.statusMessage}`,
        ),
      );
    });
    request.once("error", (error) =>
      reject(new DownloadError(target.href, `proxy ${proxy.host}: ${error.message}`)),
    );
    request.end();
  });
}

async function get(
  url: URL,
  options: DownloadOptions,
  redirectsLeft: number,
): Promise<http.IncomingMessage> {
  if (url.protocol !== "https:")
    throw new DownloadError(url.href, "only https:// downloads are allowed");
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const proxy = proxyFor(url, options.env);
  const tunnel = proxy === undefined ? undefined : await connectTunnel(proxy, url, idleTimeoutMs);
  // SNI carries host names only (RFC 6066 section 3); an address is checked against the certificate's IP SANs.
  const servername = isIP(url.hostname) === 0 ? { servername: url.hostname } : {};
  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const request = https.request(
      {
        host: url.hostname,
        port: portOf(url),
        path: `${url.pathname}${url.search}`,
        method: "GET",
        agent: false,
        ...servername,
        ...caOption(options),
        ...(tunnel === undefined
          ? {}
          : {
              createConnection: () =>
                tls.connect({
                  socket: tunnel,
                  host: url.hostname,
                  ...servername,
                  ...caOption(options),
                }),
            }),
      },
      resolve,
    );
    request.setTimeout(idleTimeoutMs, () =>
      request.destroy(new Error(`no data for ${idleTimeoutMs} ms`)),
    );
    request.once("error", (error) => reject(new DownloadError(url.href, error.message)));
    request.end();
  });
  const status = response.statusCode ?? 0;
  const location = response.headers.location;
  if (status >= 300 && status < 400 && location !== undefined) {
    response.resume();
    if (redirectsLeft === 0) throw new DownloadError(url.href, "too many redirects");
    return get(new URL(location, url), options, redirectsLeft - 1);
  }
  if (status !== 200) {
    response.resume();
    throw new DownloadError(url.href, `HTTP ${status} ${response.statusMessage ?? ""}`.trim());
  }
  return response;
}

/**
 * Downloads `url` to `dest` when its sha256 is `sha256`. The bytes go to a temporary file beside
 * dest and are renamed into place only after the hash matched, so an interrupted or forged
 * download never leaves a file at dest, and the temporary file is removed on every failure.
 */
export async function downloadVerified(
  url: string,
  sha256: string,
  dest: string,
  options: DownloadOptions,
): Promise<void> {
  await mkdir(dirname(dest), { recursive: true });
  const partial = `${dest}.part-${randomBytes(4).toString("hex")}`;
  try {
    const response = await get(new URL(url), options, MAX_REDIRECTS);
    const hash = createHash("sha256");
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(response, hashing, createWriteStream(partial, { mode: 0o600 }));
    } catch (error) {
      throw new DownloadError(
        url,
        `interrupted: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    // A server that closes early without an error still ends the stream: the length tells.
    if (!response.complete) throw new DownloadError(url, "interrupted: the response ended early");
    const actual = hash.digest("hex");
    if (actual !== sha256) throw new Sha256MismatchError(url, sha256, actual);
    await rename(partial, dest);
  } finally {
    await rm(partial, { force: true });
  }
}

/**
 * Fetches one artifact and puts the binaries it yields at `targets` (binary name -> path), each
 * renamed into place whole. `workDir` is scratch space on the targets' file system.
 */
export async function installArtifact(
  artifact: ReleaseArtifact,
  targets: Readonly<Record<string, string>>,
  workDir: string,
  options: DownloadOptions,
): Promise<void> {
  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  try {
    const file = join(workDir, "artifact");
    await downloadVerified(artifact.url, artifact.sha256, file, options);
    const placed: [string, string][] = [];
    if (artifact.format === "binary") {
      const [name] = Object.keys(artifact.members);
      if (name === undefined) throw new DownloadError(artifact.url, "names no binary");
      placed.push([file, targetOf(name)]);
    } else {
      const extracted = join(workDir, "extracted");
      await mkdir(extracted);
      const members = Object.values(artifact.members).map((member) => member.replace(/^\.\//, ""));
      await tar.x({ file, cwd: extracted, strict: true }, members);
      for (const [name, member] of Object.entries(artifact.members))
        placed.push([join(extracted, member.replace(/^\.\//, "")), targetOf(name)]);
    }
    for (const [from, to] of placed) {
      await chmod(from, 0o755);
      await mkdir(dirname(to), { recursive: true });
      await rename(from, to);
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }

  function targetOf(name: string): string {
    const target = targets[name];
    if (target === undefined) throw new DownloadError(artifact.url, `no place given for ${name}`);
    return target;
  }
}
