// The per-source limits and the large-review lane on their own (the server's use of
// them: test/integration/admission-fairness.test.ts).
import { describe, expect, it } from "vitest";
import { LargeReviewLane, SourceLimits, sourceLimitsFor } from "../../src/admission/fairness.js";

describe("SourceLimits", () => {
  it("one address at its connection limit is refused while another address is still let in, and forgotten once closed", () => {
    const l = new SourceLimits(2, 1);
    expect([l.openConnection("127.0.0.2"), l.openConnection("127.0.0.2"), l.openConnection("127.0.0.2")]).toEqual([true, true, false]);
    expect(l.openConnection("127.0.0.1")).toBe(true);
    l.closeConnection("127.0.0.2");
    expect(l.openConnection("127.0.0.2")).toBe(true);
    l.closeConnection("127.0.0.2"); l.closeConnection("127.0.0.2"); l.closeConnection("127.0.0.1");
    expect(l.sources).toBe(0);
  });

  it("reviews in flight per address", () => {
    const l = new SourceLimits(10, 2);
    expect([l.beginReview("a"), l.beginReview("a"), l.beginReview("a"), l.beginReview("b")]).toEqual([true, true, false, true]);
    l.endReview("a");
    expect(l.beginReview("a")).toBe(true);
  });

  it("defaults from admission.maxConnections: a quarter per address", () => {
    expect(sourceLimitsFor(1000).maxConnectionsPerSource).toBe(250);
    expect(sourceLimitsFor(2).maxConnectionsPerSource).toBe(1);
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
});
