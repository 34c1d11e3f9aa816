// A certificate authority and serving certificates, built with node-forge. Keys
// come from node:crypto (native, ~100x faster than forge's pure-JS RSA).
import { generateKeyPairSync, randomBytes } from "node:crypto";
import forge from "node-forge";

export interface KeyPairPem { cert: string; key: string }

const DAY = 86_400_000;

function newKey(): { pem: string; forgeKey: forge.pki.rsa.PrivateKey; forgePub: forge.pki.rsa.PublicKey } {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  const forgePub = forge.pki.rsa.setPublicKey(forgeKey.n, forgeKey.e);
  return { pem, forgeKey, forgePub };
}

function serial(): string {
  // Positive, random 128-bit serial (RFC 5280 §4.1.2.2): never "01" for every cert.
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString("hex");
}

/** A certificate for a fresh key, valid from five minutes ago (clock skew) for validDays. */
function freshCertificate(validDays: number, now: number) {
  const k = newKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = k.forgePub;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(now - 5 * 60_000);
  cert.validity.notAfter = new Date(now + validDays * DAY);
  return { k, cert };
}

export function createCA(commonName: string, validDays: number, now = Date.now()): KeyPairPem {
  const { k, cert } = freshCertificate(validDays, now);
  const attrs = [{ name: "commonName", value: commonName }, { name: "organizationName", value: "apparate" }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(k.forgeKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: k.pem };
}

export function issueServing(ca: KeyPairPem, dnsNames: readonly string[], validDays: number, now = Date.now(), ipAddresses: readonly string[] = []): KeyPairPem {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key);
  const { k, cert } = freshCertificate(validDays, now);
  cert.setSubject([{ name: "commonName", value: dnsNames[0] ?? "apparate" }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames: [...dnsNames.map((value) => ({ type: 2, value })), ...ipAddresses.map((ip) => ({ type: 7, ip }))] },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: k.pem };
}

export function certificateValidity(pem: string): { notBefore: number; notAfter: number } {
  const c = forge.pki.certificateFromPem(pem);
  return { notBefore: c.validity.notBefore.getTime(), notAfter: c.validity.notAfter.getTime() };
}

/** True when less than `fraction` of the certificate's life is left. */
export function needsRenewal(pem: string, now = Date.now(), fraction = 1 / 3): boolean {
  const { notBefore, notAfter } = certificateValidity(pem);
  return notAfter - now < (notAfter - notBefore) * fraction;
}

/** The DNS names a webhook Service is called by. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`, service];
}
