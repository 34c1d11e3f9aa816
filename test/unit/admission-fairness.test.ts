// The per-source limits and the large-review lane on their own (the server's use of
// them: test/integration/admission-fairness.test.ts).
import { describe, expect, it } from "vitest";
import { LargeReviewLane, SourceLimits, sourceLimitsFor } from "../../src/admission/fairness.js";
import { compileConfig, ConfigError } from "../../src/config/config.js";
import { AddressRanges } from "../../src/registry/network.js";

describe("SourceLimits", () => {
  it("one address at its connection limit is refused while another address is still let in, and forgotten once closed", () => {
    const l = new SourceLimits({ maxConnectionsPerSource: 2, maxReviewsPerSource: 1 });
    expect([l.openConnection("127.0.0.2"), l.openConnection("127.0.0.2"), l.openConnection("127.0.0.2")]).toEqual([true, true, false]);
    expect(l.openConnection("127.0.0.1")).toBe(true);
    l.closeConnection("127.0.0.2");
    expect(l.openConnection("127.0.0.2")).toBe(true);
    l.closeConnection("127.0.0.2"); l.closeConnection("127.0.0.2"); l.closeConnection("127.0.0.1");
    expect(l.sources).toBe(0);
  });

  it("reviews in flight per address", () => {
    const l = new SourceLimits({ maxConnectionsPerSource: 10, maxReviewsPerSource: 2 });
    expect([l.beginReview("a"), l.beginReview("a"), l.beginReview("a"), l.beginReview("b")]).toEqual([true, true, false, true]);
    l.endReview("a");
    expect(l.beginReview("a")).toBe(true);
  });

  it("defaults from admission.maxConnections: a quarter per address, 32 reviews; set keys win", () => {
    expect(sourceLimitsFor(compileConfig({}).admission).maxConnectionsPerSource).toBe(250);
    expect(sourceLimitsFor(compileConfig({ admission: { maxConnections: 2 } }).admission).maxConnectionsPerSource).toBe(1);
    const set = sourceLimitsFor(compileConfig({ admission: { maxConnections: 100, maxConnectionsPerSource: 60, maxReviewsPerSource: 5 } }).admission);
    expect([set.maxConnectionsPerSource, set.maxReviewsPerSource]).toEqual([60, 5]);
    expect(sourceLimitsFor(compileConfig({}).admission).maxReviewsPerSource).toBe(32);
  });

  it("a trusted address (IPv4, IPv4 inside IPv6, IPv6 range) is exempt from the per-address limits; its neighbours are not", () => {
    const l = new SourceLimits({ maxConnectionsPerSource: 1, maxReviewsPerSource: 1, maxConnections: 100, trusted: new AddressRanges(["10.0.0.0/30", "fd00::/64", "192.168.1.7"]) });
    for (const a of ["10.0.0.1", "::ffff:10.0.0.2", "fd00::5", "192.168.1.7"]) {
      expect([a, l.openConnection(a), l.openConnection(a), l.beginReview(a), l.beginReview(a)]).toEqual([a, true, true, true, true]);
    }
    // Negative controls: just outside each range, the limits hold.
    for (const a of ["10.0.0.4", "fd00:0:0:1::5", "192.168.1.8"]) {
      l.endReview(a);
      expect([a, l.beginReview(a), l.beginReview(a)]).toEqual([a, true, false]);
    }
  });

  it("untrusted addresses together stop at maxConnections; trusted ones have maxConnections of their own that the others cannot take", () => {
    const l = new SourceLimits({ maxConnectionsPerSource: 2, maxReviewsPerSource: 1, maxConnections: 4, trusted: new AddressRanges(["127.0.0.1"]) });
    expect(l.serverMaxConnections).toBe(8);
    expect(["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.4"].map((a) => l.openConnection(a))).toEqual([true, true, true, true, false]);
    expect(Array.from({ length: 5 }, () => l.openConnection("127.0.0.1"))).toEqual([true, true, true, true, false]);
    l.closeConnection("127.0.0.1");
    expect(l.openConnection("127.0.0.1")).toBe(true);
    l.closeConnection("127.0.0.2");
    expect(l.openConnection("127.0.0.4")).toBe(true);
    expect(l.openConnection("127.0.0.5")).toBe(false);
    // Without trusted sources there is no reserve.
    expect(new SourceLimits({ maxConnectionsPerSource: 2, maxReviewsPerSource: 1, maxConnections: 4 }).serverMaxConnections).toBe(4);
  });
});

describe("admission limits in the config file: a bad value stops start-up naming the key and the value", () => {
  const error = (admission: Record<string, unknown>): string => {
    try { compileConfig({ admission }, "config.yaml"); } catch (err) { expect(err).toBeInstanceOf(ConfigError); return (err as Error).message; }
    return "accepted";
  };
  it.each([
    [{ maxConnectionsPerSource: 0 }, "admission.maxConnectionsPerSource: must be >= 1 (got 0)"],
    [{ maxConnectionsPerSource: "ten" }, 'admission.maxConnectionsPerSource: must be integer (got "ten")'],
    [{ maxConnections: 100, maxConnectionsPerSource: 101 }, "admission.maxConnectionsPerSource: 101 is more than admission.maxConnections (100)"],
    [{ maxConnectionsPerSource: 2000 }, "admission.maxConnectionsPerSource: 2000 is more than admission.maxConnections (1000)"],
    [{ maxReviewsPerSource: 0 }, "admission.maxReviewsPerSource: must be >= 1 (got 0)"],
    [{ largeReviewBytes: 100 }, "admission.largeReviewBytes: must be >= 1024 (got 100)"],
    [{ largeReviewBytes: 1.5e5 + 0.5 }, "admission.largeReviewBytes: must be integer (got 150000.5)"],
    [{ trustedSources: ["10.0.0.0/33"] }, 'admission.trustedSources: "10.0.0.0/33" is neither an IP address nor an address range (CIDR)'],
    [{ trustedSources: ["kube-apiserver"] }, 'admission.trustedSources: "kube-apiserver" is neither an IP address nor an address range (CIDR)'],
    [{ trustedSources: "10.0.0.0/8" }, 'admission.trustedSources: must be array (got "10.0.0.0/8")'],
    [{ trustedSources: [""] }, 'admission.trustedSources.0: must NOT have fewer than 1 characters (got "")'],
  ])("%j → %s", (admission, expected) => {
    expect(error(admission)).toContain(`config.yaml: ${expected}`);
  });

  it("negative control: good values are taken", () => {
    const a = compileConfig({ admission: { maxConnections: 100, maxConnectionsPerSource: 100, maxReviewsPerSource: 1, largeReviewBytes: 1024, trustedSources: ["10.0.0.1", "172.16.0.0/12", "fd00::/8"] } }).admission;
    expect([a.maxConnectionsPerSource, a.maxReviewsPerSource, a.largeReviewBytes, a.trustedSources]).toEqual([100, 1, 1024, ["10.0.0.1", "172.16.0.0/12", "fd00::/8"]]);
  });
});

describe("LargeReviewLane", () => {
  it("one at a time in arrival order; a waiter whose deadline passes gives up without taking the lane", async () => {
    const lane = new LargeReviewLane();
    const order: string[] = [];
    const first = await lane.acquire(performance.now() + 1000);
    expect(first).toBeDefined();
    const late = lane.acquire(performance.now() + 20).then((r) => { order.push(r ? "late-ran" : "late-gave-up"); return r; });
    const second = lane.acquire(performance.now() + 1000).then((r) => { order.push("second"); return r; });
    await new Promise((r) => setTimeout(r, 60));
    expect(order).toEqual(["late-gave-up"]);
    first!();
    const rel = await second;
    expect(order).toEqual(["late-gave-up", "second"]);
    rel!();
    // Free again: taken at once.
    const again = await lane.acquire(performance.now() + 10);
    expect(again).toBeDefined();
    expect(await late).toBeUndefined();
  });

  it("a trusted source's review waits ahead of untrusted ones (trusted among themselves in arrival order)", async () => {
    const lane = new LargeReviewLane();
    const order: string[] = [];
    const hold = await lane.acquire(performance.now() + 1000);
    const take = (name: string, trusted: boolean) => lane.acquire(performance.now() + 1000, trusted).then((r) => { order.push(name); r?.(); });
    const all = [take("u1", false), take("u2", false), take("t1", true), take("u3", false), take("t2", true)];
    hold!();
    await Promise.all(all);
    expect(order).toEqual(["t1", "t2", "u1", "u2", "u3"]);
  });

  it("a trusted waiter that gives up does not disturb the order of the rest", async () => {
    const lane = new LargeReviewLane();
    const order: string[] = [];
    const hold = await lane.acquire(performance.now() + 1000);
    const take = (name: string, trusted: boolean, ms = 1000) => lane.acquire(performance.now() + ms, trusted).then((r) => { order.push(r ? name : `${name}-gave-up`); r?.(); });
    const all = [take("u1", false), take("t1", true, 10), take("t2", true), take("u2", false)];
    await new Promise((r) => setTimeout(r, 40));
    const t3 = take("t3", true);
    hold!();
    await Promise.all([...all, t3]);
    expect(order).toEqual(["t1-gave-up", "t2", "t3", "u1", "u2"]);
  });
});
