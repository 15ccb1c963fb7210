// A run's timeline, one sample a second: the generator's count beside the server's own /conns, and where the
// memory went (server processes, load processes, kernel). It is what proves a long run held steady.
import type { LoadPhase, ProgressSnapshot } from "../load/report.ts";
import type { ClusterStats } from "../server/stats.ts";
import { readMeminfo, type MemSample } from "../system/meminfo.ts";

export interface TimelineSample {
  t: number;
  phase: LoadPhase;
  /** Open by the generator's count. */
  open: number;
  /** Open by the server's own count (/conns), or -1 when it did not answer. */
  serverConns: number;
  /** How long after the generator's figures the server's answer came (ms): counts compare only when close. */
  serverSkewMs: number;
  failed: number;
  memUsedBytes: number;
  slabBytes: number;
  serverRssBytes: number;
  loadRssBytes: number;
  serverCpuCores: number;
  loadCpuCores: number;
  msgsOutPerSec: number;
  rttP50Ms: number;
  rttP99Ms: number;
}

export interface TimelineSummary {
  samples: number;
  peakOpen: number;
  /** Samples after the ramp where both counts were taken within SIMULTANEOUS_MS of each other. */
  steadyCompared: number;
  /** Of those, the ones where the server's count differed from ours. */
  steadyMismatches: number;
  /**
   * At the peak, per connection (bytes): system memory used above the baseline taken before the server
   * started (all in: processes and kernel), the kernel slab's growth (sockets, both ends), and the RSS growth
   * the server and load processes report (shared pages cancel out). MemAvailable counts part of the slab as
   * reclaimable, so the parts need not add up to the whole.
   */
  perConnection: { system: number; kernelSlab: number; serverGrowth: number; loadGrowth: number };
  peakMemUsedBytes: number;
}

const STEADY: ReadonlySet<LoadPhase> = new Set(["run", "hold"]);
/**
 * Counts taken further apart than this are not compared: under a million connections a cluster-wide /stats
 * can take seconds, and by its answer the generator may have moved on (measured: 17 s, as the close began).
 */
const SIMULTANEOUS_MS = 1000;

export class Timeline {
  readonly samples: TimelineSample[] = [];
  private readonly baseline: MemSample = readMeminfo();

  private serverBaseRss = 0;

  constructor(private readonly cluster: () => Promise<ClusterStats>) {}

  /** The server's resident memory before any connection: the zero of its growth. */
  async start(): Promise<void> {
    this.serverBaseRss = (await this.cluster()).total.rssBytes;
  }

  /**
   * Takes one sample; call it from runLoad's onProgress (once a second). `takenAt`: performance.now() when
   * the generator's snapshot was taken (samples may wait in line behind a slow /stats).
   */
  async record(s: ProgressSnapshot, takenAt = performance.now()): Promise<void> {
    const mem = readMeminfo();
    const server = await this.cluster().catch(() => undefined);
    this.samples.push({
      t: s.t,
      phase: s.phase,
      open: s.open,
      serverConns: server?.conns ?? -1,
      serverSkewMs: Math.round(performance.now() - takenAt),
      failed: s.failed,
      memUsedBytes: mem.usedBytes - this.baseline.usedBytes,
      slabBytes: mem.slabBytes - this.baseline.slabBytes,
      serverRssBytes: server?.total.rssBytes ?? 0,
      loadRssBytes: s.rssBytes,
      serverCpuCores: server?.total.cpuCores ?? 0,
      loadCpuCores: s.cpuCores,
      msgsOutPerSec: s.msgsOutPerSec,
      rttP50Ms: s.latencyP50Ms,
      rttP99Ms: s.latencyP99Ms,
    });
  }

  /** `loadBaseRss`: the load processes' resident memory before they dialled (from the load report). */
  summary(loadBaseRss: number): TimelineSummary {
    const peak = this.samples.reduce<TimelineSample | undefined>((best, x) => (!best || x.open > best.open ? x : best), undefined);
    const n = Math.max(1, peak?.open ?? 0);
    const per = (b: number) => Math.round(b / n);
    // The generator's own count lags by up to a report interval, so the first sample of a phase is no evidence.
    const steady = this.samples.filter(
      (x, i) => STEADY.has(x.phase) && i > 0 && this.samples[i - 1]!.phase === x.phase && x.serverConns >= 0 && x.serverSkewMs <= SIMULTANEOUS_MS,
    );
    return {
      samples: this.samples.length,
      peakOpen: peak?.open ?? 0,
      steadyCompared: steady.length,
      steadyMismatches: steady.filter((x) => x.serverConns !== x.open).length,
      perConnection: peak
        ? {
            system: per(peak.memUsedBytes),
            kernelSlab: per(peak.slabBytes),
            serverGrowth: per(peak.serverRssBytes - this.serverBaseRss),
            loadGrowth: per(peak.loadRssBytes - loadBaseRss),
          }
        : { system: 0, kernelSlab: 0, serverGrowth: 0, loadGrowth: 0 },
      peakMemUsedBytes: peak?.memUsedBytes ?? 0,
    };
  }
}
