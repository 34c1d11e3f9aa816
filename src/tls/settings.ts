// TLS settings for every server apparate runs: TLS 1.2 minimum, forward-secret
// AEAD suites only (TLS 1.3 suites are always AEAD and are not restricted here).
import type { SecureContextOptions } from "node:tls";

export const TLS_MIN_VERSION = "TLSv1.2" as const;
export const TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

export interface ServingMaterial { cert: string; key: string }

/** `clientCa`: the CA bundle client certificates are verified against (admission.clientAuth). */
export function secureContextOptions(m: ServingMaterial, clientCa?: string): SecureContextOptions {
  return { cert: m.cert, key: m.key, minVersion: TLS_MIN_VERSION, ciphers: TLS12_CIPHERS, honorCipherOrder: true, ...(clientCa ? { ca: clientCa } : {}) };
}
