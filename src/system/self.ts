// This process's own figures: resident memory, CPU time, the open-files limit and the descriptors open,
// and the SelfSampler that turns them into a per-interval sample (CPU in cores, event-loop lag) for the
// server's /stats. Other processes are read from the outside, through /proc, by proc.ts.
import { readFileSync, readdirSync } from "node:fs";

const LAG_PROBE_MS = 250;
const MIN_WINDOW_MS = 200;

let lastRss = 0;

/**
 * Resident memory in bytes. At the open-files limit the runtime cannot open what it reads this from and
 * throws (EMFILE, measured on Bun 1.4): then the last reading stands, since a process holding every
 * descriptor it may have is exactly the one being measured.
 */
export function rssBytes(): number {
  try {
    lastRss = process.memoryUsage.rss();
  } catch {
    /* EMFILE: keep the last reading */
  }
  return lastRss;
}

/** User + system CPU time this process has used, in microseconds. */
export function cpuMicros(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

/** Soft RLIMIT_NOFILE of this process (0 when unknown). */
export function nofileSoft(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Descriptors this process has open now (0 when unknown). */
export function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return 0;
  }
}

export interface SelfSample {
  rssBytes: number;
  cpuCores: number;
  cpuSeconds: number;
  eventLoopLagMs: number;
}

/**
 * Samples this process: what it costs right now, CPU in cores over the last interval, and event-loop lag
 * as the worst timer delay seen since the last sample. Coarse on purpose: every wakeup of an idle process
 * costs (~50 µs here, with ~100 processes at a million).
 */
export class SelfSampler {
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

  private last: SelfSample | undefined;

  /**
   * CPU in cores is measured over at least MIN_WINDOW_MS: asked more often (an endpoint wanting fresh
   * figures), the last window's figures are returned, since a few milliseconds of CPU time say nothing.
   */
  sample(): SelfSample {
    const now = performance.now();
    if (this.last && now - this.lastAt < MIN_WINDOW_MS) return { ...this.last, rssBytes: rssBytes() };
    const cpu = process.cpuUsage();
    const usedMicros = cpu.user - this.lastCpu.user + (cpu.system - this.lastCpu.system);
    const elapsedMs = Math.max(1, now - this.lastAt);
    const sample: SelfSample = {
      rssBytes: rssBytes(),
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
