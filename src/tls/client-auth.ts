// Client-certificate authentication of the API server (admission.clientAuth): for
// clusters that give the API server kubeconfig client credentials for webhooks
// (--admission-control-config-file). The handshake itself refuses a client without a
// certificate signed by the CA bundle; an optional list of subject names narrows it to
// the API server's own certificate when the CA signs others too.
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import { ApparateError } from "../errors.js";

export interface ClientAuth {
  /** PEM bundle of the CAs that sign accepted client certificates. */
  ca: string;
  /** Subject common names accepted; empty: any certificate the CA signed. */
  allowedNames: readonly string[];
}

/** Reads and checks the CA bundle: a start-up error names the file and what is wrong. */
export function loadClientCa(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (err) {
    throw new ApparateError("client-ca-read", `admission.clientAuth.caFile: cannot read ${path}: ${(err as Error).message}`, path, { cause: err });
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ApparateError("client-ca-invalid", `admission.clientAuth.caFile: ${path} holds no PEM certificate`, path);
  for (const b of blocks) {
    try { new X509Certificate(b); } catch (err) {
      throw new ApparateError("client-ca-invalid", `admission.clientAuth.caFile: ${path} holds a certificate that does not parse: ${(err as Error).message}`, path, { cause: err });
    }
  }
  return pem;
}

/** Whether a verified peer certificate's subject is one the operator named. */
export function peerNameAllowed(cert: PeerCertificate | undefined, allowedNames: readonly string[]): boolean {
  if (allowedNames.length === 0) return true;
  const cn = cert?.subject?.CN;
  const names = Array.isArray(cn) ? cn : cn ? [cn] : [];
  return names.some((n) => allowedNames.includes(n));
}

/** The server's client authentication from admission.clientAuth; undefined when off. Reads the CA file. */
export function clientAuthFromConfig(c: { enabled: boolean; caFile?: string; allowedNames: readonly string[] }): ClientAuth | undefined {
  return c.enabled && c.caFile ? { ca: loadClientCa(c.caFile), allowedNames: c.allowedNames } : undefined;
}
