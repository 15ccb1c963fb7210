// Time without timers per connection: one registry of open sockets per worker, and periodic visits that
// reach each socket once per period, a slice every tick, so pings and pushes flow evenly instead of in bursts.

/** Per-connection state kept on ws.data: the slot in the registry and when the peer was last heard. */
export interface Slot {
  idx: number;
  /** performance.now() of the last frame received (coarse); -1 once an idle close was sent. */
  seen: number;
}

/** Open connections in a dense array, O(1) add and remove (the last one moves into the gap). */
export class Registry<T extends { data: Slot }> {
  readonly items: T[] = [];

  add(item: T): void {
    item.data.idx = this.items.length;
    this.items.push(item);
  }

  remove(item: T): void {
    const i = item.data.idx;
    if (i < 0 || this.items[i] !== item) return;
    const last = this.items.pop()!;
    if (last !== item) {
      this.items[i] = last;
      last.data.idx = i;
    }
    item.data.idx = -1;
  }

  get size(): number {
    return this.items.length;
  }
}

/**
 * Visits every item of a registry once per `periodMs`, in slices every `tickMs`. The slice size follows
 * the time that really passed, so a late tick catches up rather than stretching the period.
 */
export class PeriodicVisits<T extends { data: Slot }> {
  private cursor = 0;
  private owed = 0;
  private last = performance.now();
  private timer: Timer | undefined;

  constructor(
    private readonly registry: Registry<T>,
    private readonly periodMs: number,
    private readonly visit: (item: T, now: number) => void,
    private readonly tickMs = Math.max(1, Math.min(20, periodMs / 10)),
  ) {}

  start(): void {
    this.last = performance.now();
    this.timer = setInterval(() => this.tick(), this.tickMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const now = performance.now();
    const items = this.registry.items;
    this.owed += (items.length * (now - this.last)) / this.periodMs;
    this.last = now;
    let n = Math.min(Math.floor(this.owed), items.length);
    this.owed -= n;
    // Never owe more than one full round: a stalled process resumes, it does not flood.
    if (this.owed > items.length) this.owed = items.length;
    while (n-- > 0) {
      if (this.cursor >= items.length) this.cursor = 0;
      this.visit(items[this.cursor++]!, now);
    }
  }
}
