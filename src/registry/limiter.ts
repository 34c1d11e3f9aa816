// Requests in flight per registry. undici would queue excess requests inside its
// pool, where a request's timer already runs: one pod of 10,000 images then made a
// healthy registry look slow and opened its breaker. Here the queue is apparate's
// own, a request's timer starts only when it is sent, and work nobody waits for
// any more (every review that wanted it has passed its deadline) is dropped unsent.

interface Waiting { start: () => void; wanted: () => boolean; drop: () => void }

interface Lane { active: number; queue: Waiting[]; head: number }

export class HostLimiter {
  /** Only lanes with work in flight or queued exist: the map never outgrows the work. */
  private readonly lanes = new Map<string, Lane>();

  constructor(private readonly limit: number) {}

  get hosts(): number { return this.lanes.size; }

  /**
   * Runs `task` when `host` has a free slot. Resolves `undefined`, without running the
   * task, when `wanted()` is false by the time a slot is free.
   */
  run<T>(host: string, task: () => Promise<T>, wanted: () => boolean = () => true): Promise<T | undefined> {
    let lane = this.lanes.get(host);
    if (!lane) { lane = { active: 0, queue: [], head: 0 }; this.lanes.set(host, lane); }
    const l = lane;
    return new Promise<T | undefined>((resolve, reject) => {
      const start = () => {
        l.active++;
        task().then(resolve, reject).finally(() => { l.active--; this.next(host, l); });
      };
      if (l.active < this.limit) start();
      else l.queue.push({ start, wanted, drop: () => resolve(undefined) });
    });
  }

  private next(host: string, l: Lane): void {
    while (l.active < this.limit && l.head < l.queue.length) {
      const w = l.queue[l.head]!;
      l.queue[l.head++] = undefined as unknown as Waiting;
      if (w.wanted()) w.start(); else w.drop();
    }
    // Compact the array now and then (a queue head index keeps dequeue O(1)).
    if (l.head > 1024 && l.head * 2 > l.queue.length) { l.queue = l.queue.slice(l.head); l.head = 0; }
    if (l.active === 0 && l.head >= l.queue.length) this.lanes.delete(host);
  }
}
