// What a process costs right now: resident memory, CPU in cores over the last interval, event-loop delay.
const LAG_PROBE_MS = 50;

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

  sample(): ProcessSample {
    const now = performance.now();
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
    return sample;
  }
}
