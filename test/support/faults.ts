// Misbehaving registries on loopback: fixed answers (403, 429, 500), one that
// accepts connections and never answers, and one that flaps.
import { createServer, request as httpRequest, type Server, type IncomingMessage, type ServerResponse } from "node:http";
import { freePort } from "./ports.js";

export interface FaultServer { host: string; url: string; hits: number; stop(): Promise<void>; setHandler(h: Handler): void }
export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export const answer = (status: number, headers: Record<string, string> = {}): Handler => (_req, res) => { res.writeHead(status, headers).end(); };
export const hang: Handler = () => { /* never answers */ };

export async function startFaultServer(handler: Handler): Promise<FaultServer> {
  const port = await freePort();
  let h = handler;
  const state: FaultServer = {
    host: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}`, hits: 0,
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
    setHandler: (n) => { h = n; },
  };
  const server: Server = createServer((req, res) => { state.hits++; h(req, res); });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
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
