// One sweep per worker drives every connection's sends: no timer per connection. The worker's slots get
// evenly spaced phases across the interval (slot k of worker w is global slot g = w + k*W, sending at
// g/N of the interval), so the whole fleet's sends are spread evenly with no synchronized bursts.
// Send j goes to slot j mod n at t0 + floor(j/n)*I + phase(slot); a tick sends everything due, and how
// late each send left against its plan is the scheduler's lateness.
//
// A tick that finds more sends due than there are slots (a socket's interval is shorter than a tick, or the
// worker fell behind) hands each slot all of its due sends at once, so they leave in one write: on
// loopback a write costs 7 to 14 µs of kernel time whatever its size, and one write per message is what
// caps a worker's send rate. Falling behind thus batches more and recovers instead of spiralling.

/**
 * Called once per slot per tick with its `count` due sends; the i-th was planned at firstDue + i*interval
 * (performance.now ms).
 */
export type SendFn = (slot: number, firstDue: number, count: number) => void;

/** At most this many writes per tick before yielding to I/O (lateness then shows the backlog). */
const MAX_WRITES_PER_TICK = 4096;
/** At most this many sends per tick when they batch (bounds one tick's buffers). */
const MAX_SENDS_PER_TICK = 65536;

export class SendScheduler {
  private j = 0;
  private t0 = 0;
  private running = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly step: number;
  private readonly base: number;
  private readonly tick = (): void => this.sweep();

  /**
   * @param slots connections in this worker
   * @param worker this worker's index, `workers` the count, `total` connections fleet-wide
   */
  constructor(
    private readonly slots: number,
    private readonly intervalMs: number,
    worker: number,
    workers: number,
    total: number,
    private readonly send: SendFn,
  ) {
    this.step = (workers / total) * intervalMs;
    this.base = (worker / total) * intervalMs;
  }

  /** Planned time of send j. */
  dueAt(j: number): number {
    const k = j % this.slots;
    return this.t0 + ((j - k) / this.slots) * this.intervalMs + this.base + k * this.step;
  }

  /** Starts at t0 (performance.now ms), which may be a moment in the future shared with other workers. */
  start(t0: number): void {
    if (this.slots === 0 || this.intervalMs <= 0) return;
    this.t0 = t0;
    this.j = 0;
    this.running = true;
    this.arm(performance.now());
  }

  stop(): void {
    this.running = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Sends planned so far (due before now). */
  get planned(): number {
    return this.j;
  }

  private arm(now: number): void {
    const wait = this.dueAt(this.j) - now;
    this.timer = setTimeout(this.tick, wait > 1 ? wait : wait > 0 ? 1 : 0);
  }

  /** The first send after j due later than now, looking at most `limit` sends ahead (dueAt is monotonic). */
  private firstNotDue(now: number, limit: number): number {
    let lo = this.j;
    if (this.dueAt(lo) > now) return lo;
    // Gallop, then bisect: dueAt(lo) <= now < dueAt(hi).
    let span = 1;
    let hi = lo + span;
    while (hi < this.j + limit && this.dueAt(hi) <= now) {
      lo = hi;
      span *= 2;
      hi = lo + span;
    }
    if (hi > this.j + limit) hi = this.j + limit;
    if (this.dueAt(hi - 1) <= now) return hi;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (this.dueAt(mid) <= now) lo = mid;
      else hi = mid;
    }
    return hi;
  }

  private sweep(): void {
    this.timer = null;
    if (!this.running) return;
    const n = this.slots;
    const j0 = this.j;
    const now = performance.now();
    // Batches write every slot once, so many slots batch only when a whole round is overdue.
    const limit = n <= MAX_WRITES_PER_TICK || this.dueAt(j0 + n) <= now ? MAX_SENDS_PER_TICK : MAX_WRITES_PER_TICK;
    const end = this.firstNotDue(now, limit);
    const due = end - j0;
    if (due <= n) {
      for (let j = j0; j < end; j++) this.send(j % n, this.dueAt(j), 1);
    } else {
      // Every slot has at least one send due: slot (j0 + o) mod n has those at j0 + o, + n, ... below end.
      for (let o = 0; o < n; o++) {
        const j = j0 + o;
        this.send(j % n, this.dueAt(j), Math.ceil((due - o) / n));
      }
    }
    this.j = end;
    if (!this.running) return;
    if (end - j0 === limit) this.timer = setTimeout(this.tick, 0);
    else this.arm(performance.now());
  }
}
