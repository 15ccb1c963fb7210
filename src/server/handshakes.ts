// Where the time of an upgrade goes, as the server sees it: each worker's own share (fetch called to open
// handler, an HdrHistogram it reports), and the kernel's share before that (the accept queues). The
// supervisor puts the cluster figures together when /stats or /metrics asks.
import * as hdr from "hdr-histogram-js";
import { listenCounters, listenQueues } from "./listen-queues.ts";
import type { ClusterStats, UpgradeFigures } from "./stats.ts";

/** Longest upgrade time kept apart, µs; longer ones count as this. */
const HIGHEST_US = 100_000_000;
/**
 * A worker encodes its histogram at most this often, and only while endpoints ask for it (within WATCHED_MS
 * of the last ask; its periodic reports then carry it too, so a worker too busy to answer an ask in time is
 * still at most about this late). Compressing is the dear part (~2 ms in JavaScript at 2 digits, ~9 ms at
 * 3), and measured on a box short of CPU, a worker paying it on every report through a ramp fell behind
 * its accept queue.
 */
const REENCODE_MS = 1000;
const WATCHED_MS = 10_000;

/** 1 µs to 100 s at 2 significant digits (1%): a tenth of the load generator's histograms to build, encode and merge. */
function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_US, numberOfSignificantValueDigits: 2 });
}

export function upgradeFigures(h: hdr.Histogram): UpgradeFigures {
  const ms = (us: number): number => Math.round(us) / 1000;
  if (h.totalCount === 0) return { count: 0, meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
  return { count: h.totalCount, meanMs: ms(h.mean), p50Ms: ms(h.getValueAtPercentile(50)), p99Ms: ms(h.getValueAtPercentile(99)), maxMs: ms(h.maxValue) };
}

/** One worker's upgrade times: the figures always current, the encoded histogram as REENCODE_MS and WATCHED_MS say. */
export class UpgradeTimes {
  private readonly hist = newHistogram();
  private encoded = "";
  private encodedCount = 0;
  private encodedAt = Number.NEGATIVE_INFINITY;
  private askedAt = Number.NEGATIVE_INFINITY;

  record(ms: number): void {
    this.hist.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round(ms * 1000))));
  }

  /** `asked`: an endpoint is waiting for this report. */
  snapshot(asked: boolean): { figures: UpgradeFigures; encoded: string } {
    const now = performance.now();
    if (asked) this.askedAt = now;
    if (now - this.askedAt < WATCHED_MS && this.encodedCount !== this.hist.totalCount && now - this.encodedAt >= REENCODE_MS) {
      this.encoded = hdr.encodeIntoCompressedBase64(this.hist);
      this.encodedCount = this.hist.totalCount;
      this.encodedAt = now;
    }
    return { figures: upgradeFigures(this.hist), encoded: this.encoded };
  }
}

/** The cluster snapshot with every worker's accept queue (from the kernel, now) and the merged upgrade times. */
export function withHandshakes(stats: ClusterStats, port: number): ClusterStats {
  const queues = listenQueues(port);
  let acceptQueue = 0;
  const merged = newHistogram();
  const workers = stats.workers.map((w) => {
    if (w.upgradeHist !== "") {
      const h = hdr.decodeFromCompressedBase64(w.upgradeHist);
      merged.add(h);
      h.destroy();
    }
    const q = w.listenInode > 0 ? queues.get(w.listenInode) : undefined;
    if (q !== undefined) acceptQueue += q;
    return { ...w, acceptQueue: q ?? null };
  });
  const counters = listenCounters();
  const handshakes = { upgrade: upgradeFigures(merged), acceptQueue, listenOverflows: counters?.listenOverflows ?? null, listenDrops: counters?.listenDrops ?? null };
  merged.destroy();
  return { ...stats, workers, handshakes };
}
