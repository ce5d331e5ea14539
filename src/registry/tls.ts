import { createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import { x509 } from "../node/x509.js";

const EC_KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
const EC_SIGNATURE = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;

export interface RegistryTls {
  /** The CA certificate: what containerd's hosts.toml `ca` names. */
  readonly caPem: string;
  /** The registry's serving certificate and its key (docker-registry's http.tls). */
  readonly certPem: string;
  readonly keyPem: string;
}

function serial(): string {
  const bytes = randomBytes(16);
  // A DER INTEGER with its top bit set is negative, which RFC 5280 forbids for serials.
  bytes[0] = (bytes[0] ?? 1) & 0x7f || 1;
  return bytes.toString("hex");
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })
    .export({ type: "pkcs8", format: "pem" })
    .toString();
}

/**
 * A throw-away CA and a serving certificate for a local registry, issued with @peculiar/x509 as
 * src/node/pki.ts issues the node's (ECDSA P-256). For a registry on loopback or inside the node;
 * the CA is what the node's hosts.toml is given.
 */
export async function issueRegistryTls(names: {
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly validityDays?: number;
}): Promise<RegistryTls> {
  const now = Date.now();
  const notBefore = new Date(now - 5 * 60_000);
  const notAfter = new Date(now + (names.validityDays ?? 30) * DAY_MS);
  const caKeys = await webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=sandkube registry CA",
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: EC_SIGNATURE,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const leafKeys = await webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${names.dnsNames[0] ?? names.ipAddresses[0] ?? "registry"}`,
    issuer: ca.subjectName,
    notBefore,
    notAfter,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: EC_SIGNATURE,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
      new x509.SubjectAlternativeNameExtension([
        ...names.dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...names.ipAddresses.map((value) => ({ type: "ip" as const, value })),
      ]),
    ],
  });
  return {
    caPem: `${ca.toString("pem")}\n`,
    certPem: `${leaf.toString("pem")}\n`,
    keyPem: await keyPem(leafKeys.privateKey),
  };
}
