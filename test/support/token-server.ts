// A registry token service (docker distribution "token" auth) for tests: checks
// Basic credentials and signs real RS256 JWTs with a test key whose certificate
// the registry trusts (rootcertbundle), carried in the x5c header.
import { createServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID, createPrivateKey } from "node:crypto";
import { SignJWT } from "jose";
import forge from "node-forge";
import { createCA, issueServing } from "../../src/tls/certificates.js";
import { freePort } from "./ports.js";

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  rootCertBundle: string;
  requests: number;
  /** host:port */
  host: string;
  /** PEM of the CA that signed the HTTPS certificate (with `https`). */
  caFile?: string;
  stop(): Promise<void>;
}

/**
 * `https`: serve over TLS with a certificate for 127.0.0.1 from a fresh CA (written to
 * `caFile`), the way a real token service is reached: plain-HTTP realms on another
 * host are refused by the client.
 */
export async function startTokenServer(users: Record<string, string>, opts: { https?: boolean } = {}): Promise<TokenServer> {
  const ca = createCA("apparate test token signer", 1);
  const dir = mkdtempSync(join(tmpdir(), "apparate-token-"));
  const bundle = join(dir, "root.pem");
  writeFileSync(bundle, ca.cert);
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(forge.pki.certificateFromPem(ca.cert))).getBytes(), "binary").toString("base64");
  const key = createPrivateKey(ca.key);
  const port = await freePort();
  const service = "apparate-test-registry";
  const issuer = "apparate-test-issuer";
  let tls: { cert: string; key: string } | undefined;
  let caFile: string | undefined;
  if (opts.https) {
    const tca = createCA("apparate test token service CA", 1);
    tls = issueServing(tca, ["localhost"], 1, Date.now(), ["127.0.0.1"]);
    caFile = join(dir, "token-ca.pem");
    writeFileSync(caFile, tca.cert);
  }
  const state: TokenServer = {
    realm: `${tls ? "https" : "http"}://127.0.0.1:${port}/token`, service, issuer, rootCertBundle: bundle, requests: 0,
    host: `127.0.0.1:${port}`, ...(caFile ? { caFile } : {}),
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
  const handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => {
    state.requests++;
    const u = new URL(req.url ?? "/", "http://x");
    const authz = req.headers.authorization ?? "";
    let user = "";
    if (authz.startsWith("Basic ")) {
      const [name, pass] = Buffer.from(authz.slice(6), "base64").toString().split(":");
      if (!name || users[name] !== pass) { res.writeHead(401).end('{"errors":[{"code":"UNAUTHORIZED"}]}'); return; }
      user = name;
    }
    const scope = u.searchParams.get("scope") ?? "";
    const [type, name, actions] = scope.split(":");
    // Anonymous callers get a token without access, as Docker Hub does for private repos.
    const access = user && type === "repository" && name ? [{ type, name, actions: (actions ?? "").split(",") }] : [];
    const now = Math.floor(Date.now() / 1000);
    void new SignJWT({ access })
      .setProtectedHeader({ alg: "RS256", typ: "JWT", x5c: [der] })
      .setIssuer(issuer).setAudience(service).setSubject(user).setIssuedAt(now).setNotBefore(now - 5).setExpirationTime(now + 300).setJti(randomUUID())
      .sign(key)
      .then((token) => { res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, access_token: token, expires_in: 300 })); });
  };
  const server: Server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler) : createServer(handler);
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return state;
}
