// Messages between the load coordinator and its load workers (Bun IPC, structured clone), tagged by `t`
// as the server's are (server/ipc.ts).
import type { Counters, MetricsSnapshot } from "./metrics.ts";
import type { WorkerSpans } from "./outages.ts";
import type { WorkerShard } from "./plan.ts";

/** `run.t0` is a wall-clock ms shared by all workers. */
export type CoordinatorToWorker =
  | { t: "start"; shard: WorkerShard }
  | { t: "run"; t0: number; durationS: number }
  | { t: "hold" }
  | { t: "close"; timeoutMs: number };

export interface ProcessFigures {
  rssBytes: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  /** Worst event-loop lag since the previous report. */
  lagMaxMs: number;
}

export type WorkerToCoordinator =
  /** `atMs` and `cpuUs` start the worker's first interval, so its first figures already carry rates. */
  | { t: "ready"; pid: number; baseRssBytes: number; atMs: number; cpuUs: number }
  /**
   * Once a second; `atMs` is when it was taken (wall clock), so rates use the worker's own interval.
   * `emptyAtMs`: when its last open connection went (null while any is open); sent at once without --reconnect.
   */
  | { t: "figures"; atMs: number; counters: Counters; errors: Record<string, number>; recentLatency: string; recentLateness: string; proc: ProcessFigures; planned: number; emptyAtMs: number | null }
  | { t: "ramped"; counters: Counters; rampMs: number; rssBytes: number; cpuUs: number }
  | { t: "held"; counters: Counters; cpuUs: number; runMs: number }
  | { t: "final"; snapshot: MetricsSnapshot; proc: ProcessFigures; baseRssBytes: number; peakRssBytes: number; rampRssBytes: number; rampOpen: number; planned: number; runMs: number; spans: WorkerSpans }
  | { t: "fatal"; message: string };
