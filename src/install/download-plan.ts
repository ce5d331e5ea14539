/**
 * Official release downloads: which pinned artifact yields which binaries, and which proxy a
 * request goes through. Pure data and planning; src/install/download.ts does the I/O.
 */

export interface ReleaseArtifact {
  /** https only: the sha256 is the trust, TLS keeps the pin from being probed by a middlebox. */
  readonly url: string;
  /** Lower-case hex sha256 of the file at url, as the release publishes it. */
  readonly sha256: string;
  /** "binary": the file is the program itself; "tar.gz": the programs are members of it. */
  readonly format: "binary" | "tar.gz";
  /** Binary name -> path inside the archive; for "binary", the one name the file becomes. */
  readonly members: Readonly<Record<string, string>>;
}

/** The artifacts that together yield every binary of one component (src/install/components.ts). */
export interface ReleaseDownload {
  readonly component: string;
  readonly artifacts: readonly ReleaseArtifact[];
}

/**
 * Empty on purpose: an entry needs the sha256 the release site publishes, read from that site,
 * and the machines this project is built on cannot reach dl.k8s.io or GitHub releases. A pin
 * copied from memory would be a guess; docs/install.md says how to add one. Until then the Go
 * module build is the way a missing binary is made.
 */
export const RELEASE_DOWNLOADS: readonly ReleaseDownload[] = [];

/** What a download stamp records as its recipe: the artifacts, so a changed pin re-downloads. */
export function downloadRecipe(download: ReleaseDownload): string {
  return JSON.stringify({
    download: download.artifacts.map((artifact) => [artifact.url, artifact.sha256]),
  });
}

/** Binaries the artifacts of `download` yield, each once. */
export function downloadedBinaries(download: ReleaseDownload): string[] {
  return [...new Set(download.artifacts.flatMap((artifact) => Object.keys(artifact.members)))];
}

/** Problems that make a download entry unusable, in words; empty when it is well-formed. */
export function checkDownload(
  download: ReleaseDownload,
  binariesOfComponent: readonly string[],
): string[] {
  const problems: string[] = [];
  for (const artifact of download.artifacts) {
    if (!artifact.url.startsWith("https://"))
      problems.push(`${artifact.url}: only https:// downloads are allowed`);
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256))
      problems.push(`${artifact.url}: sha256 must be 64 lower-case hex digits`);
    if (artifact.format === "binary" && Object.keys(artifact.members).length !== 1)
      problems.push(`${artifact.url}: a "binary" artifact yields exactly one binary`);
  }
  const yielded = downloadedBinaries(download);
  const missing = binariesOfComponent.filter((name) => !yielded.includes(name));
  if (missing.length > 0)
    problems.push(`${download.component}: no artifact yields ${missing.join(", ")}`);
  return problems;
}

function hostMatches(host: string, pattern: string): boolean {
  const bare = pattern.replace(/^\*?\./, "");
  return host === bare || host.endsWith(`.${bare}`);
}

/**
 * The proxy a request to `target` goes through, as curl and Go read the environment:
 * HTTPS_PROXY (or https_proxy) for https URLs, unless NO_PROXY (or no_proxy) names the host, a
 * parent domain of it, or "*". Node 20's fetch and https ignore these variables by themselves.
 */
export function proxyFor(target: URL, env: NodeJS.ProcessEnv): URL | undefined {
  if (target.protocol !== "https:") return undefined;
  const proxy = env["HTTPS_PROXY"] ?? env["https_proxy"];
  if (proxy === undefined || proxy === "") return undefined;
  const noProxy = (env["NO_PROXY"] ?? env["no_proxy"] ?? "")
    .split(",")
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean);
  const host = target.hostname.toLowerCase();
  if (noProxy.some((entry) => entry === "*" || hostMatches(host, entry.replace(/:\d+$/, ""))))
    return undefined;
  // "proxy:3128" without a scheme is how many shells set it; curl reads that as http://.
  return new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(proxy) ? proxy : `http://${proxy}`);
}
