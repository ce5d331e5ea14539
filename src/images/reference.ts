/**
 * Image references, as github.com/distribution/reference parses them. Pure.
 *
 * Names are stored fully qualified (docker.io/library/busybox:latest) because the CRI plugin looks
 * images up by the normalized form of what a pod spec says, while `ctr images import` keeps the
 * io.containerd.image.name annotation of an OCI layout as it is
 * (containerd core/images/archive/importer.go normalizes only docker-archive RepoTags).
 */

export interface ImageReference {
  /** e.g. docker.io, registry.k8s.io, localhost:5000 */
  readonly domain: string;
  /** e.g. library/busybox */
  readonly path: string;
  readonly tag: string | null;
  readonly digest: string | null;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const PORT = /^[0-9]+$/;
const IPV6_HOST = /^\[[a-fA-F0-9:]+\]$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
/** distribution/reference's NameTotalLengthMax. */
const MAX_NAME_LENGTH = 255;

export const DEFAULT_DOMAIN = "docker.io";
const OFFICIAL_REPOSITORY_PREFIX = "library/";

/** Thrown with a sentence a user can act on; the CLI wraps it into a UsageError. */
export class InvalidReferenceError extends Error {
  constructor(
    readonly reference: string,
    reason: string,
  ) {
    super(`"${reference}" is not a valid image name: ${reason}`);
    this.name = "InvalidReferenceError";
  }
}

function isDomain(candidate: string): boolean {
  const colon = candidate.startsWith("[")
    ? candidate.indexOf("]:") + 1
    : candidate.lastIndexOf(":");
  const host = colon > 0 ? candidate.slice(0, colon) : candidate;
  const port = colon > 0 ? candidate.slice(colon + 1) : null;
  if (port !== null && !PORT.test(port)) return false;
  if (IPV6_HOST.test(host)) return true;
  return host.split(".").every((label) => DOMAIN_LABEL.test(label));
}

/** The first component is a registry when it looks like a host, as the docker CLI decides. */
function looksLikeRegistry(component: string): boolean {
  return (
    component === "localhost" ||
    component.includes(".") ||
    component.includes(":") ||
    component !== component.toLowerCase()
  );
}

/** Parses and normalizes: adds docker.io, library/ and, when neither tag nor digest is given, :latest. */
export function parseImageReference(reference: string): ImageReference {
  if (reference === "") throw new InvalidReferenceError(reference, "it is empty");
  if (/\s/.test(reference)) throw new InvalidReferenceError(reference, "it contains whitespace");

  let rest = reference;
  let digest: string | null = null;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      throw new InvalidReferenceError(reference, `"${digest}" is not a digest like sha256:<hex>`);
    }
  }

  let tag: string | null = null;
  const lastSlash = rest.lastIndexOf("/");
  const lastColon = rest.lastIndexOf(":");
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) {
      throw new InvalidReferenceError(
        reference,
        `tag "${tag}" must be letters, digits, "_", "." or "-" (at most 128, not starting with "." or "-")`,
      );
    }
  }

  const components = rest.split("/");
  let domain = DEFAULT_DOMAIN;
  const first = components[0] ?? "";
  if (components.length > 1 && looksLikeRegistry(first)) {
    if (!isDomain(first)) {
      throw new InvalidReferenceError(reference, `"${first}" is not a registry host[:port]`);
    }
    domain = first;
    components.shift();
  }
  for (const component of components) {
    if (!PATH_COMPONENT.test(component)) {
      throw new InvalidReferenceError(
        reference,
        component === ""
          ? "a path component is empty"
          : `"${component}" must be lowercase letters and digits, separated by ".", "_", "__" or "-"`,
      );
    }
  }
  let path = components.join("/");
  if (domain === DEFAULT_DOMAIN && components.length === 1) {
    path = `${OFFICIAL_REPOSITORY_PREFIX}${path}`;
  }
  if (`${domain}/${path}`.length > MAX_NAME_LENGTH) {
    throw new InvalidReferenceError(
      reference,
      `the name is longer than ${MAX_NAME_LENGTH} characters`,
    );
  }
  if (tag === null && digest === null) tag = "latest";
  return { domain, path, tag, digest };
}

export function formatImageReference(reference: ImageReference): string {
  const tag = reference.tag === null ? "" : `:${reference.tag}`;
  const digest = reference.digest === null ? "" : `@${reference.digest}`;
  return `${reference.domain}/${reference.path}${tag}${digest}`;
}

/** "busybox" -> "docker.io/library/busybox:latest". Throws InvalidReferenceError. */
export function normalizeImageReference(reference: string): string {
  return formatImageReference(parseImageReference(reference));
}
