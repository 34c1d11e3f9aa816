// Misbehaving registries on loopback: fixed answers (403, 429, 500), one that
// accepts connections and never answers, and one that flaps.
import { createServer, request as httpRequest, type Server, type IncomingMessage, type ServerResponse } from "node:http";
import { freePort } from "./ports.js";

export interface FaultServer {
  host: string;
  url: string;
  hits: number;
  /** Every request received: what a hostile-server test asserts on. */
  received: Array<{ method: string; url: string; authorization?: string }>;
  stop(): Promise<void>;
  setHandler(h: Handler): void;
}
export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export const answer = (status: number, headers: Record<string, string> = {}): Handler => (_req, res) => { res.writeHead(status, headers).end(); };
export const hang: Handler = () => { /* never answers */ };

/**
 * An HTTP server with a replaceable handler. `address` puts it on another loopback
 * address (Linux routes all of 127.0.0.0/8 to lo): a "different host" for the tests.
 */
export async function startFaultServer(handler: Handler, opts: { address?: string } = {}): Promise<FaultServer> {
  const address = opts.address ?? "127.0.0.1";
  const port = address === "127.0.0.1" ? await freePort() : 0;
  let h = handler;
  const server: Server = createServer((req, res) => {
    state.hits++;
    state.received.push({ method: req.method ?? "", url: req.url ?? "", ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    h(req, res);
  });
  await new Promise<void>((r) => server.listen(port, address, () => r()));
  const bound = (server.address() as { port: number }).port;
  const state: FaultServer = {
    host: `${address}:${bound}`, url: `http://${address}:${bound}`, hits: 0, received: [],
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
    setHandler: (n) => { h = n; },
  };
  return state;
}

/** Forwards to a real registry: with setHandler, a registry that comes and goes. */
export const forwardTo = (target: string): Handler => (req, res) => {
  const [host, port] = target.split(":") as [string, string];
  const up = httpRequest({ host, port: Number(port), path: req.url, method: req.method, headers: { ...req.headers, host: target } }, (ur) => {
    res.writeHead(ur.statusCode ?? 502, ur.headers);
    ur.pipe(res);
  });
  up.on("error", () => res.writeHead(502).end());
  req.pipe(up);
};
