// One sweep per worker drives every connection's sends: no timer per connection. The worker's slots get
// evenly spaced phases across the interval (slot k of worker w is global slot g = w + k*W, sending at
// g/N of the interval), so the whole fleet's sends are spread evenly with no synchronized bursts.
// Send j goes to slot j mod n at t0 + floor(j/n)*I + phase(slot); a tick sends everything due, and how
// late each send left against its plan is the scheduler's lateness.

/** Called for each due send with its slot and planned time (performance.now ms). */
export type SendFn = (slot: number, dueAt: number) => void;

/** At most this many sends per tick before yielding to I/O (lateness then shows the backlog). */
const MAX_PER_TICK = 4096;

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

  private sweep(): void {
    this.timer = null;
    if (!this.running) return;
    let now = performance.now();
    let budget = MAX_PER_TICK;
    for (;;) {
      const due = this.dueAt(this.j);
      if (due > now) break;
      this.send(this.j % this.slots, due);
      this.j++;
      if (--budget === 0) {
        if (!this.running) return;
        this.timer = setTimeout(this.tick, 0);
        return;
      }
      if ((budget & 63) === 0) now = performance.now();
    }
    if (this.running) this.arm(performance.now());
  }
}
