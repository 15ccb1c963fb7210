// What a process costs right now: resident memory, CPU in cores over the last interval, event-loop delay.
// Coarse on purpose: every wakeup of an idle process costs (~50 µs here, with ~100 processes at a million).
const LAG_PROBE_MS = 250;
const MIN_WINDOW_MS = 200;

export interface ProcessSample {
  rssBytes: number;
  cpuCores: number;
  cpuSeconds: number;
  eventLoopLagMs: number;
}

/** Samples the current process. Event-loop lag is the worst timer delay seen since the last sample. */
export class ProcessSampler {
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();
  private worstLag = 0;
  private expected = performance.now() + LAG_PROBE_MS;

  constructor() {
    const probe = setInterval(() => {
      const now = performance.now();
      this.worstLag = Math.max(this.worstLag, now - this.expected);
      this.expected = now + LAG_PROBE_MS;
    }, LAG_PROBE_MS);
    probe.unref();
  }

  private last: ProcessSample | undefined;

  /**
   * CPU in cores is measured over at least MIN_WINDOW_MS: asked more often (an endpoint wanting fresh
   * figures), the last window's figures are returned, since a few milliseconds of CPU time say nothing.
   */
  sample(): ProcessSample {
    const now = performance.now();
    if (this.last && now - this.lastAt < MIN_WINDOW_MS) return { ...this.last, rssBytes: process.memoryUsage.rss() };
    const cpu = process.cpuUsage();
    const usedMicros = cpu.user - this.lastCpu.user + (cpu.system - this.lastCpu.system);
    const elapsedMs = Math.max(1, now - this.lastAt);
    const sample: ProcessSample = {
      rssBytes: process.memoryUsage.rss(),
      cpuCores: usedMicros / 1000 / elapsedMs,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      eventLoopLagMs: Math.max(0, this.worstLag),
    };
    this.lastCpu = cpu;
    this.lastAt = now;
    this.worstLag = 0;
    this.last = sample;
    return sample;
  }
}
