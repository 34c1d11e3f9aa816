// `apparate report` on a fixture window (test/fixtures/observer/window.json): the
// table a person reads, the JSON, and the CLI against a served window.
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { Writable } from "node:stream";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { freePort } from "../support/ports.js";
import { quantile, renderReport, reportFromPrometheus, reportFromWindow, type Report, type StartsWindow } from "../../src/observer/report.js";

const WINDOW = JSON.parse(readFileSync(new URL("../fixtures/observer/window.json", import.meta.url), "utf8")) as StartsWindow;

describe("report from the observer's window", () => {
  it("nearest-rank quantiles (p50 of 1..10 is 5, p90 is 9; one value is every quantile; none is NaN)", () => {
    const ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect([quantile(ten, 0.5), quantile(ten, 0.9), quantile(ten, 1), quantile([7], 0.5), quantile([], 0.5)]).toEqual([5, 9, 10, 7, Number.NaN]);
  });

  it("p50/p90 per mode and phase, modes in a fixed order, a phase an older kubelet lacks left out", () => {
    const r = reportFromWindow(WINDOW.starts, "fixture");
    expect(r.pods).toBe(21);
    expect(r.podsWithoutPull).toBe(3);
    const row = (a: string, p: string) => r.phases.find((x) => x.acceleration === a && x.phase === p);
    expect(row("estargz", "ready")).toMatchObject({ acceleration: "estargz", phase: "ready", pods: 11, p50: 5.5 });
    expect(row("estargz", "ready")!.p90).toBeCloseTo(6.7, 9);
    expect(row("none", "ready")).toEqual({ acceleration: "none", phase: "ready", pods: 6, p50: 40, p90: 52 });
    expect(row("mirror", "sandbox_ready")).toBeUndefined();
    expect([...new Set(r.phases.map((p) => p.acceleration))]).toEqual(["estargz", "image-cache", "mirror", "none"]);
  });

  it("slowest images first with what would help; images never pulled (already present) are not listed as pulls", () => {
    const r = reportFromWindow(WINDOW.starts, "fixture", 3);
    expect(r.images.map((i) => [i.image, i.pulls, i.p50Seconds, i.advice])).toEqual([
      ["registry.example.com/team/worker:7", 6, 35, "no -apparate variant"],
      ["mirror.example.com/quay/team/tool:2", 1, 7.1, "no rule matches"],
      ["docker.io/library/redis:7.2", 6, 4.5, "no rule matches"],
    ]);
    expect(r.images.some((i) => i.image === "registry.example.com/team/batch:1")).toBe(false);
  });

  it("renders the table a person reads (golden: test/fixtures/observer/report.txt)", () => {
    expect(renderReport(reportFromWindow(WINDOW.starts, "fixture"))).toBe(readFileSync(new URL("../fixtures/observer/report.txt", import.meta.url), "utf8"));
  });

  it("an empty window says why there is nothing", () => {
    const text = renderReport(reportFromWindow([], "fixture"));
    expect(text).toContain("0 pod starts");
    expect(text).toContain("note: no pod start recorded yet");
    expect(text).not.toContain("MODE");
  });

  it("from Prometheus vectors: rows only for known modes and phases with pods, NaN quantiles kept as NaN", () => {
    const v = (acceleration: string, phase: string, value: string) => ({ metric: { acceleration, phase }, value: [0, value] as [number, string] });
    const r = reportFromPrometheus({
      p50: [v("estargz", "ready", "3.5"), v("none", "ready", "NaN")],
      p90: [v("estargz", "ready", "7.25")],
      pods: [v("estargz", "ready", "12.000000001"), v("none", "ready", "0"), v("bogus", "ready", "4"), v("none", "first_container_started", "2")],
    }, "prom");
    expect(r.phases).toEqual([
      { acceleration: "estargz", phase: "ready", pods: 12, p50: 3.5, p90: 7.25 },
      { acceleration: "none", phase: "first_container_started", pods: 2, p50: Number.NaN, p90: Number.NaN },
    ]);
    expect(r.pods).toBe(12);
    expect(r.notes.join(" ")).toContain("images are not metric labels");
  });
});

describe("apparate report (CLI)", () => {
  let server: Server;
  let url = "";
  let body = JSON.stringify(WINDOW);
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === "/observer/starts") res.writeHead(200, { "content-type": "application/json" }).end(body);
      else res.writeHead(404).end("not found");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  async function run(...argv: string[]) {
    let out = "";
    let err = "";
    const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(c.toString()); cb(); } });
    const code = await main(argv, sink((s) => { out += s; }), sink((s) => { err += s; }));
    return { code, out, err };
  }

  it("reads the window from --url and prints the table; --json prints one document", async () => {
    body = JSON.stringify(WINDOW);
    const t = await run("report", "--url", url);
    expect(t.code).toBe(0);
    expect(t.out).toContain("webhook apparate-7d9f-abcde, last 21 pod starts");
    expect(t.out).toMatch(/^none {9}ready {20}6 {5}40\.0s {2}52\.0s$/m);
    const j = await run("report", "--url", url, "--json", "--top", "1");
    expect(j.code).toBe(0);
    const doc = JSON.parse(j.out) as Report;
    expect(doc.images).toHaveLength(1);
    expect(doc.phases.find((p) => p.acceleration === "estargz" && p.phase === "ready")?.p50).toBe(5.5);
  });

  it("a replica without the Lease: the report says which one holds it", async () => {
    body = JSON.stringify({ identity: "apparate-b", leader: false, holder: "apparate-a", starts: [] });
    const t = await run("report", "--url", url);
    expect(t.code).toBe(0);
    expect(t.out).toContain("does not hold the observer Lease (apparate-a does)");
  });

  it.each([
    ["--top not a number", ["--top", "x"], 2, /--top: "x" is not a whole number/],
    ["--url not a URL", ["--url", "nope"], 2, /--url: "nope" is not a URL/],
    ["--range not a duration", ["--from-prometheus", "http://127.0.0.1:1", "--range", "1 hour"], 2, /--range: "1 hour" is not a Prometheus duration/],
    ["unknown flag", ["--bogus"], 2, /unknown option '--bogus'/],
  ])("%s: a one-line error, exit 2", async (_n, args, code, msg) => {
    const r = await run("report", ...args);
    expect(r.code).toBe(code);
    expect(r.err).toMatch(msg);
    expect(r.out).toBe("");
  });

  it("nothing listening: exit 1, one line naming the URL and the reason", async () => {
    const port = await freePort();
    const r = await run("report", "--url", `http://127.0.0.1:${port}`, "--timeout-seconds", "2");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^apparate report: cannot reach http://127\\.0\\.0\\.1:${port}/observer/starts: .*ECONNREFUSED[^\n]*\n$`));
  });

  it("a server that is not the observer: exit 1 naming the URL", async () => {
    body = JSON.stringify({ hello: "world" });
    const r = await run("report", "--url", url);
    expect(r.code).toBe(1);
    expect(r.err).toContain("/observer/starts is not an observer window");
  });

  it("help lists the flags", async () => {
    const r = await run("report", "--help");
    expect(r.code).toBe(0);
    expect(r.out).toContain("--from-prometheus URL");
    expect(r.out).toContain("--json");
  });
});
