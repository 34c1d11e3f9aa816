// A real forward proxy on loopback (HTTP CONNECT tunnels, as undici's ProxyAgent and
// EnvHttpProxyAgent use for http and https alike). It records every tunnel asked for,
// so a test can prove what reached the proxy. `routes` sends a name the test machine
// cannot resolve (registry.public.test) to a loopback server: the proxy resolves, as a
// real one would; anything else is dialled as asked. A target it cannot reach is
// answered 502.
import { createServer, type Server } from "node:http";
import { connect as netConnect, type Socket } from "node:net";
import { freePort } from "./ports.js";

export interface ConnectProxy {
  url: string;
  /** Every CONNECT target ("host:port"), in order. */
  tunnels: string[];
  routes: Map<string, string>;
  stop(): Promise<void>;
}

export async function startConnectProxy(): Promise<ConnectProxy> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  const state: ConnectProxy = {
    url: `http://127.0.0.1:${port}`, tunnels: [], routes: new Map(),
    stop: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.closeAllConnections(); server.close(() => r()); }),
  };
  const server: Server = createServer((_req, res) => { res.writeHead(405).end(); });
  server.on("connect", (req, client: Socket, head: Buffer) => {
    const target = req.url ?? "";
    state.tunnels.push(target);
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    const routed = state.routes.get(target) ?? target;
    const i = routed.lastIndexOf(":");
    const up = netConnect({ host: routed.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(routed.slice(i + 1)) });
    sockets.add(up);
    up.on("close", () => sockets.delete(up));
    up.once("connect", () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    up.once("error", () => { if (!client.destroyed) client.end("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n"); });
    client.on("error", () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return state;
}
