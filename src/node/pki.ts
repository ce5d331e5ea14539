import {
  createPrivateKey,
  createPublicKey,
  randomBytes,
  webcrypto,
  type KeyObject,
} from "node:crypto";
import { chmod, mkdir, readFile } from "node:fs/promises";
import type { ClusterConfig } from "../plan/cluster-config.js";
import { FRONT_PROXY_CLIENT_CN, pkiFiles } from "../plan/pki-files.js";
import { writeFileAtomic } from "./files.js";
import type { NodeLayout } from "./layout.js";
import { x509 } from "./x509.js";

/**
 * The node's certificates: kubeadm's set (kubeadm v1.34, `cmd/kubeadm/app/phases/certs`), made with @peculiar/x509 on Node's WebCrypto. ECDSA P-256 keys, PEM files.
 * docs/pki.md explains the choices.
 */

export type CertificateId =
  | "ca"
  | "apiserver"
  | "apiserver-kubelet-client"
  | "front-proxy-ca"
  | "front-proxy-client"
  | "kubelet-serving"
  | "admin"
  | "kubelet-client"
  | "controller-manager"
  | "scheduler"
  | "kube-proxy";

export type SignerId = "ca" | "front-proxy-ca";
export type CertificateUsage = "server" | "client";

export interface CertificateRequest {
  readonly id: CertificateId;
  /** "self" for a CA; otherwise the CA that signs it. */
  readonly signer: "self" | SignerId;
  readonly commonName: string;
  readonly organizations: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly usages: readonly CertificateUsage[];
  readonly validityDays: number;
  /** "pki": a .crt/.key pair in the PKI dir; "kubeconfig": embedded in a component's kubeconfig. */
  readonly storedIn: "pki" | "kubeconfig";
}

/** kubeadm's default lifetimes (cmd/kubeadm/app/constants): 1 year for leaves, 10 for CAs. */
export const CA_VALIDITY_DAYS = 3650;
export const LEAF_VALIDITY_DAYS = 365;
/** A leaf closer than this to its end is reissued by the next `up`. */
export const LEAF_RENEW_BEFORE_DAYS = 30;
/** A CA that could no longer cover a full leaf lifetime is replaced (and every leaf with it). */
export const CA_RENEW_BEFORE_DAYS = LEAF_VALIDITY_DAYS;
/** kubeadm backdates by 5 minutes (constants.CertificateBackdate) so small clock skew is harmless. */
const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

const EC_KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
const EC_SIGNATURE = { name: "ECDSA", hash: "SHA-256" } as const;
const RSA_KEY = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as const;

/** Addresses that mean "every interface": a listener there is reached on loopback. */
export function isUnspecifiedAddress(address: string): boolean {
  return address === "0.0.0.0" || address === "::";
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

/** Pure: the certificates a node needs, as kubeadm's `certs` and `kubeconfig` phases make them. */
export function planCertificates(config: ClusterConfig): CertificateRequest[] {
  const nodeUser = `system:node:${config.nodeName}`;
  const domain = config.clusterDomain;
  const ca = (id: SignerId, commonName: string): CertificateRequest => ({
    id,
    signer: "self",
    commonName,
    organizations: [],
    dnsNames: [],
    ipAddresses: [],
    usages: [],
    validityDays: CA_VALIDITY_DAYS,
    storedIn: "pki",
  });
  const leaf = (
    id: CertificateId,
    fields: Partial<CertificateRequest> & Pick<CertificateRequest, "commonName" | "usages">,
  ): CertificateRequest => ({
    id,
    signer: "ca",
    organizations: [],
    dnsNames: [],
    ipAddresses: [],
    validityDays: LEAF_VALIDITY_DAYS,
    storedIn: "pki",
    ...fields,
  });
  return [
    ca("ca", "kubernetes"),
    leaf("apiserver", {
      commonName: "kube-apiserver",
      usages: ["server"],
      dnsNames: unique([
        config.nodeName,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        `kubernetes.default.svc.${domain}`,
        "localhost",
      ]),
      ipAddresses: unique([
        config.apiServerServiceIP,
        config.nodeIP,
        "127.0.0.1",
        ...(isUnspecifiedAddress(config.apiServerBindAddress) ? [] : [config.apiServerBindAddress]),
      ]),
    }),
    // system:masters lets the apiserver reach every kubelet API (logs, exec, port-forward) with
    // no RBAC binding to create first; kubeadm did the same until 1.29.
    leaf("apiserver-kubelet-client", {
      commonName: "kube-apiserver-kubelet-client",
      organizations: ["system:masters"],
      usages: ["client"],
    }),
    // A separate CA, as kubeadm's: a client cert from the cluster CA must not pass as the
    // aggregation proxy, whose requests carry any user name in headers.
    ca("front-proxy-ca", "front-proxy-ca"),
    leaf("front-proxy-client", {
      signer: "front-proxy-ca",
      commonName: FRONT_PROXY_CLIENT_CN,
      usages: ["client"],
    }),
    // Signed by the cluster CA (kubeadm's kubelet signs its own) so the apiserver can check it
    // with --kubelet-certificate-authority; the subject is what kubelet-serving CSRs carry.
    leaf("kubelet-serving", {
      commonName: nodeUser,
      organizations: ["system:nodes"],
      usages: ["server"],
      dnsNames: unique([config.nodeName, "localhost"]),
      ipAddresses: unique([config.nodeIP, "127.0.0.1"]),
    }),
    // system:masters: see docs/pki.md, "The admin identity".
    leaf("admin", {
      commonName: "kubernetes-admin",
      organizations: ["system:masters"],
      usages: ["client"],
      storedIn: "kubeconfig",
    }),
    // The Node authorizer and NodeRestriction only recognise this exact subject.
    leaf("kubelet-client", {
      commonName: nodeUser,
      organizations: ["system:nodes"],
      usages: ["client"],
      storedIn: "kubeconfig",
    }),
    leaf("controller-manager", {
      commonName: "system:kube-controller-manager",
      usages: ["client"],
      storedIn: "kubeconfig",
    }),
    leaf("scheduler", {
      commonName: "system:kube-scheduler",
      usages: ["client"],
      storedIn: "kubeconfig",
    }),
    // The Service proxy, kube-proxy or sandkube-proxy: the API server's bootstrap policy binds
    // this user to system:node-proxier (list/watch Services, EndpointSlices, Nodes), as kubeadm's
    // kube-proxy ServiceAccount is.
    leaf("kube-proxy", {
      commonName: "system:kube-proxy",
      usages: ["client"],
      storedIn: "kubeconfig",
    }),
  ];
}

export function certificateRequest(config: ClusterConfig, id: CertificateId): CertificateRequest {
  const request = planCertificates(config).find((candidate) => candidate.id === id);
  if (request === undefined) throw new Error(`no certificate request named ${id}`);
  return request;
}

/** The files a certificate stored in the PKI dir lives in (names from src/plan/pki-files.ts). */
export function pairPaths(
  layout: Pick<NodeLayout, "pkiDir">,
  id: CertificateId,
): { readonly cert: string; readonly key: string } {
  const files = pkiFiles(layout);
  const pairs: Partial<Record<CertificateId, { cert: string; key: string }>> = {
    ca: { cert: files.caCert, key: files.caKey },
    apiserver: { cert: files.apiServerCert, key: files.apiServerKey },
    "apiserver-kubelet-client": {
      cert: files.apiServerKubeletClientCert,
      key: files.apiServerKubeletClientKey,
    },
    "front-proxy-ca": { cert: files.frontProxyCaCert, key: files.frontProxyCaKey },
    "front-proxy-client": { cert: files.frontProxyClientCert, key: files.frontProxyClientKey },
    "kubelet-serving": { cert: files.kubeletServingCert, key: files.kubeletServingKey },
  };
  const pair = pairs[id];
  if (pair === undefined) throw new Error(`certificate ${id} is not stored as files`);
  return pair;
}

export interface PemPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A CA ready to sign: its certificate and its private key as a WebCrypto key. */
export interface Signer {
  readonly id: SignerId;
  readonly certificate: x509.X509Certificate;
  readonly certPem: string;
  readonly privateKey: webcrypto.CryptoKey;
  readonly signingAlgorithm: typeof EC_SIGNATURE | typeof RSA_KEY;
}

function generateEcKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]);
}

/**
 * SEC1 ("EC PRIVATE KEY"), not WebCrypto's PKCS#8: Kubernetes' own key helper writes SEC1, and
 * keyutil.ParsePublicKeysPEM (client-go util/keyutil/key.go, used for --service-account-key-file)
 * reads an EC private key only in SEC1 form.
 */
async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  const keyObject = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  return keyObject.export({ type: "sec1", format: "pem" }).toString();
}

function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  // A DER INTEGER with its top bit set is negative, which RFC 5280 forbids for serials.
  bytes[0] = (bytes[0] ?? 1) & 0x7f || 1;
  return bytes.toString("hex");
}

function subjectName(request: CertificateRequest): x509.JsonName {
  // Go's pkix order (O before CN), one O per RDN, as kubeadm's certificates show in openssl.
  return [...request.organizations.map((o) => ({ O: [o] })), { CN: [request.commonName] }];
}

const USAGE_OID: Record<CertificateUsage, string> = {
  server: x509.ExtendedKeyUsage.serverAuth,
  client: x509.ExtendedKeyUsage.clientAuth,
};

/**
 * The CA's own subject key identifier when it has one: verifiers match a leaf to its issuer by it,
 * and a CA made elsewhere (kubeadm) may have derived it differently from the public key.
 */
async function authorityKeyIdentifier(
  ca: x509.X509Certificate,
): Promise<x509.AuthorityKeyIdentifierExtension> {
  const keyId = ca.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  return keyId === undefined
    ? x509.AuthorityKeyIdentifierExtension.create(ca.publicKey)
    : new x509.AuthorityKeyIdentifierExtension(keyId);
}

/** Makes a new key and certificate for `request`, signed by `signer` (undefined for a CA). */
export async function issueCertificate(
  request: CertificateRequest,
  signer: Signer | undefined,
  now: Date,
): Promise<PemPair> {
  if ((request.signer === "self") !== (signer === undefined)) {
    throw new Error(`certificate ${request.id}: signer does not match its request`);
  }
  const keys = await generateEcKeyPair();
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  let notAfter = new Date(now.getTime() + request.validityDays * DAY_MS);
  if (signer !== undefined && signer.certificate.notAfter < notAfter) {
    notAfter = signer.certificate.notAfter;
  }
  const common = { serialNumber: randomSerialNumber(), notBefore, notAfter };
  let certificate: x509.X509Certificate;
  if (signer === undefined) {
    certificate = await x509.X509CertificateGenerator.createSelfSigned({
      ...common,
      name: subjectName(request),
      keys,
      signingAlgorithm: EC_SIGNATURE,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature |
            x509.KeyUsageFlags.keyCertSign |
            x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
  } else {
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // ECDSA keys sign; they never encipher (kubeadm adds keyEncipherment for RSA keys only).
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(request.usages.map((usage) => USAGE_OID[usage])),
      await authorityKeyIdentifier(signer.certificate),
    ];
    const names = [
      ...request.dnsNames.map((value) => ({ type: "dns" as const, value })),
      ...request.ipAddresses.map((value) => ({ type: "ip" as const, value })),
    ];
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
    certificate = await x509.X509CertificateGenerator.create({
      ...common,
      subject: subjectName(request),
      issuer: signer.certificate.subjectName,
      publicKey: keys.publicKey,
      signingKey: signer.privateKey,
      signingAlgorithm: signer.signingAlgorithm,
      extensions,
    });
  }
  return {
    certPem: `${certificate.toString("pem")}\n`,
    keyPem: await privateKeyPem(keys.privateKey),
  };
}

function parseCertificate(pem: string): x509.X509Certificate | undefined {
  try {
    return new x509.X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function parsePrivateKey(pem: string): KeyObject | undefined {
  try {
    return createPrivateKey(pem);
  } catch {
    return undefined;
  }
}

function publicKeyDer(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: "spki", format: "der" });
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const left = new Set(a);
  const right = new Set(b);
  return left.size === right.size && [...left].every((value) => right.has(value));
}

/** Node's URL parser gives IPv6 addresses one canonical spelling, so "::1" equals "0:0::1". */
function canonicalIp(address: string): string {
  if (!address.includes(":")) return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address.toLowerCase();
  }
}

function describeDifference(label: string, want: readonly string[], have: readonly string[]) {
  const missing = want.filter((value) => !have.includes(value));
  const extra = have.filter((value) => !want.includes(value));
  const parts = [
    ...(missing.length > 0 ? [`lacks ${missing.join(", ")}`] : []),
    ...(extra.length > 0 ? [`has extra ${extra.join(", ")}`] : []),
  ];
  return `${label} changed (${parts.join("; ")})`;
}

/**
 * Why an existing pair cannot be kept for `request`, or undefined when it can. Reasons are short
 * phrases for `up`'s progress output ("apiserver.crt: names changed (lacks IP:10.0.0.5)").
 */
export async function certificateProblem(
  request: CertificateRequest,
  existing: Partial<PemPair>,
  signer: Signer | undefined,
  now: Date,
): Promise<string | undefined> {
  if (existing.certPem === undefined && existing.keyPem === undefined) return "missing";
  if (existing.certPem === undefined) return "certificate missing";
  if (existing.keyPem === undefined) return "key missing";
  const certificate = parseCertificate(existing.certPem);
  if (certificate === undefined) return "certificate unreadable";
  const key = parsePrivateKey(existing.keyPem);
  if (key === undefined) return "key unreadable";
  if (!publicKeyDer(key).equals(Buffer.from(certificate.publicKey.rawData))) {
    return "key does not match the certificate";
  }

  const issuerKey = signer === undefined ? certificate.publicKey : signer.certificate.publicKey;
  const issuerName = signer === undefined ? certificate.subject : signer.certificate.subject;
  const signedByIssuer =
    certificate.issuer === issuerName &&
    (await certificate.verify({ publicKey: issuerKey, signatureOnly: true }));
  if (!signedByIssuer) {
    return signer === undefined ? "not self-signed" : `not signed by the current ${signer.id}`;
  }

  const commonNames = certificate.subjectName.getField("CN");
  const organizations = certificate.subjectName.getField("O");
  if (commonNames.length !== 1 || commonNames[0] !== request.commonName) {
    return `common name changed (was ${commonNames.join(",") || "none"})`;
  }
  if (!sameSet(organizations, request.organizations)) {
    return describeDifference("organizations", request.organizations, organizations);
  }

  const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
  if ((constraints?.ca ?? false) !== (request.signer === "self")) return "CA flag differs";
  if (request.signer !== "self") {
    const usages = certificate.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [];
    const wanted = request.usages.map((usage) => USAGE_OID[usage]);
    if (!sameSet(usages.map(String), wanted)) return "extended key usages changed";
  }

  const wantNames = [
    ...request.dnsNames.map((name) => `DNS:${name}`),
    ...request.ipAddresses.map((address) => `IP:${canonicalIp(address)}`),
  ];
  const sanExtension = certificate.getExtension(x509.SubjectAlternativeNameExtension);
  const haveNames = (sanExtension?.names.toJSON() ?? []).map((name) =>
    name.type === "ip"
      ? `IP:${canonicalIp(name.value)}`
      : `${name.type.toUpperCase()}:${name.value}`,
  );
  if (!sameSet(haveNames, wantNames)) return describeDifference("names", wantNames, haveNames);

  if (certificate.notBefore.getTime() > now.getTime()) {
    return `not valid before ${certificate.notBefore.toISOString()} (clock moved back?)`;
  }
  const renewBeforeDays = request.signer === "self" ? CA_RENEW_BEFORE_DAYS : LEAF_RENEW_BEFORE_DAYS;
  if (certificate.notAfter.getTime() - now.getTime() < renewBeforeDays * DAY_MS) {
    return `expires ${certificate.notAfter.toISOString()}`;
  }
  return undefined;
}

/** Turns a CA's PEM pair into a Signer; undefined when the key cannot sign (unknown algorithm). */
export async function loadSigner(id: SignerId, pair: PemPair): Promise<Signer | undefined> {
  const certificate = parseCertificate(pair.certPem);
  const key = parsePrivateKey(pair.keyPem);
  if (certificate === undefined || key === undefined) return undefined;
  const pkcs8 = key.export({ type: "pkcs8", format: "der" });
  let signingAlgorithm: Signer["signingAlgorithm"];
  let privateKey: webcrypto.CryptoKey;
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") {
    signingAlgorithm = EC_SIGNATURE;
    privateKey = await webcrypto.subtle.importKey("pkcs8", pkcs8, EC_KEY, false, ["sign"]);
  } else if (key.asymmetricKeyType === "rsa") {
    // A kubeadm-made CA (RSA 2048) dropped into the PKI dir keeps working.
    signingAlgorithm = RSA_KEY;
    privateKey = await webcrypto.subtle.importKey("pkcs8", pkcs8, RSA_KEY, false, ["sign"]);
  } else {
    return undefined;
  }
  return { id, certificate, certPem: pair.certPem, privateKey, signingAlgorithm };
}

/** File access for ensurePki and the kubeconfig writer; tests replace it to stop midway. */
export interface PkiIO {
  readonly now: () => Date;
  /** The file's text, or undefined when it does not exist. */
  readonly readFile: (path: string) => Promise<string | undefined>;
  /** Replaces the file atomically (temporary file + rename) with exactly this mode. */
  readonly writeFile: (path: string, data: string, mode: number) => Promise<void>;
}

export const nodePkiIO: PkiIO = {
  now: () => new Date(),
  readFile: async (path) => {
    try {
      return await readFile(path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  },
  writeFile: async (path, data, mode) => {
    await writeFileAtomic(path, data, mode);
    // The temporary file's mode passes through the umask and an old leftover keeps its own.
    await chmod(path, mode);
  },
};

export const PRIVATE_FILE_MODE = 0o600;
export const PUBLIC_FILE_MODE = 0o644;
/** Only root reads the PKI and kubeconfig folders: every component runs as root. */
export const PRIVATE_DIR_MODE = 0o700;

export interface PkiChange {
  readonly path: string;
  readonly reason: string;
}

export interface PkiReport {
  /** Files written, with the reason ("missing", "names changed (...)"). */
  readonly written: readonly PkiChange[];
  /** Files found valid for this config and left untouched. */
  readonly kept: readonly string[];
}

export async function ensurePrivateDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: PRIVATE_DIR_MODE });
  await chmod(path, PRIVATE_DIR_MODE);
}

async function readPair(io: PkiIO, paths: { cert: string; key: string }) {
  const [certPem, keyPem] = await Promise.all([io.readFile(paths.cert), io.readFile(paths.key)]);
  return { certPem, keyPem };
}

/**
 * Makes what is missing or no longer right for `config` and keeps the rest, so a second `up` does
 * not rotate the CA and a changed node IP reissues only the certificates that name it. Each file
 * is replaced atomically, the key before its certificate: after a crash the next call sees a key
 * that does not match its certificate (or a leaf not signed by the current CA) and finishes.
 */
export async function ensurePki(
  config: ClusterConfig,
  layout: NodeLayout,
  io: PkiIO = nodePkiIO,
): Promise<PkiReport> {
  const written: PkiChange[] = [];
  const kept: string[] = [];
  const now = io.now();
  await ensurePrivateDir(layout.pkiDir);

  const ensurePair = async (request: CertificateRequest, signer: Signer | undefined) => {
    const paths = pairPaths(layout, request.id);
    const existing = await readPair(io, paths);
    const problem = await certificateProblem(request, existing, signer, now);
    if (problem === undefined && existing.certPem !== undefined && existing.keyPem !== undefined) {
      kept.push(paths.cert, paths.key);
      return { certPem: existing.certPem, keyPem: existing.keyPem };
    }
    const pair = await issueCertificate(request, signer, now);
    await io.writeFile(paths.key, pair.keyPem, PRIVATE_FILE_MODE);
    written.push({ path: paths.key, reason: problem ?? "missing" });
    await io.writeFile(paths.cert, pair.certPem, PUBLIC_FILE_MODE);
    written.push({ path: paths.cert, reason: problem ?? "missing" });
    return pair;
  };

  const requests = planCertificates(config);
  const signers = new Map<SignerId, Signer>();
  for (const request of requests) {
    if (request.signer !== "self") continue;
    const id = request.id as SignerId;
    let signer = await loadSigner(id, await ensurePair(request, undefined));
    if (signer === undefined) {
      // A CA whose key WebCrypto cannot sign with (not P-256 or RSA): replace it.
      const pair = await issueCertificate(request, undefined, now);
      const paths = pairPaths(layout, id);
      await io.writeFile(paths.key, pair.keyPem, PRIVATE_FILE_MODE);
      await io.writeFile(paths.cert, pair.certPem, PUBLIC_FILE_MODE);
      written.push(
        { path: paths.key, reason: "key algorithm cannot sign" },
        { path: paths.cert, reason: "key algorithm cannot sign" },
      );
      signer = await loadSigner(id, pair);
      if (signer === undefined) throw new Error(`cannot load the ${id} just made`);
    }
    signers.set(id, signer);
  }
  for (const request of requests) {
    if (request.signer === "self" || request.storedIn !== "pki") continue;
    await ensurePair(request, signers.get(request.signer));
  }

  const paths = pkiFiles(layout);
  const [saKey, saPub] = await Promise.all([
    io.readFile(paths.serviceAccountKey),
    io.readFile(paths.serviceAccountPub),
  ]);
  const saProblem = serviceAccountKeyProblem(saKey, saPub);
  if (saProblem === undefined) {
    kept.push(paths.serviceAccountKey, paths.serviceAccountPub);
  } else {
    const keys = await generateEcKeyPair();
    const keyPem = await privateKeyPem(keys.privateKey);
    const publicPem = createPublicKey(keyPem).export({ type: "spki", format: "pem" }).toString();
    await io.writeFile(paths.serviceAccountKey, keyPem, PRIVATE_FILE_MODE);
    written.push({ path: paths.serviceAccountKey, reason: saProblem });
    await io.writeFile(paths.serviceAccountPub, publicPem, PUBLIC_FILE_MODE);
    written.push({ path: paths.serviceAccountPub, reason: saProblem });
  }
  return { written, kept };
}

function serviceAccountKeyProblem(
  keyPem: string | undefined,
  publicPem: string | undefined,
): string | undefined {
  if (keyPem === undefined || publicPem === undefined) return "missing";
  const key = parsePrivateKey(keyPem);
  if (key === undefined) return "key unreadable";
  try {
    const publicKey = createPublicKey(publicPem).export({ type: "spki", format: "der" });
    return publicKeyDer(key).equals(publicKey) ? undefined : "public key does not match";
  } catch {
    return "public key unreadable";
  }
}

/** The cluster CA, ready to sign the kubeconfigs' client certificates. */
export async function readSigner(
  layout: NodeLayout,
  id: SignerId,
  io: PkiIO = nodePkiIO,
): Promise<Signer> {
  const paths = pairPaths(layout, id);
  const { certPem, keyPem } = await readPair(io, paths);
  const signer =
    certPem === undefined || keyPem === undefined
      ? undefined
      : await loadSigner(id, { certPem, keyPem });
  if (signer === undefined) {
    throw new Error(`${paths.cert} or ${paths.key} is missing or unreadable; run ensurePki first`);
  }
  return signer;
}
