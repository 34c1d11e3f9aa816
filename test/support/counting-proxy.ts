// An HTTP proxy in front of the test registry that counts the bytes it serves for
// blobs: "bytes fetched from the registry" for the lazy-loading test and benchmark.
// An optional rate limit (bytes/s) stands in for a slow link.
import { createServer, request, type Server } from "node:http";
import { freePort } from "./ports.js";

export interface CountingProxy {
  host: string;
  blobBytes: number;
  requests: number;
  /** Added before each request is forwarded: a round trip, where tc netem is not available. */
  delayMs: number;
  reset(): void;
  stop(): Promise<void>;
}

export async function startCountingProxy(target: string, opts: { bytesPerSecond?: number } = {}): Promise<CountingProxy> {
  const port = await freePort();
  const state: CountingProxy = {
    host: `127.0.0.1:${port}`, blobBytes: 0, requests: 0, delayMs: 0,
    reset: () => { state.blobBytes = 0; state.requests = 0; },
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
  const [thost, tport] = target.split(":") as [string, string];
  const server: Server = createServer((req, res) => {
    if (state.delayMs > 0) { req.pause(); setTimeout(() => { req.resume(); handle(req, res); }, state.delayMs); return; }
    handle(req, res);
  });
  function handle(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse): void {
    state.requests++;
    const isBlob = /\/blobs\/sha256:/.test(req.url ?? "");
    const up = request({ host: thost, port: Number(tport), path: req.url, method: req.method, headers: { ...req.headers, host: target } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      if (!opts.bytesPerSecond) {
        ur.on("data", (c: Buffer) => { if (isBlob) state.blobBytes += c.length; });
        ur.pipe(res);
        return;
      }
      // Rate limit: pause the upstream whenever we are ahead of the budget.
      const start = Date.now();
      let sent = 0;
      ur.on("data", (c: Buffer) => {
        if (isBlob) state.blobBytes += c.length;
        sent += c.length;
        res.write(c);
        const ahead = sent / opts.bytesPerSecond! * 1000 - (Date.now() - start);
        if (ahead > 5) { ur.pause(); setTimeout(() => ur.resume(), ahead); }
      });
      ur.on("end", () => res.end());
    });
    up.on("error", () => { res.writeHead(502).end(); });
    req.pipe(up);
  }
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return state;
}
