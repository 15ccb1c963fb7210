// The server's side of a round, once a second: the counters of its /stats (rates from one fetch to the
// next, timed by the server's own clock) and, for a local server, CPU and RSS of its worker processes from
// /proc; the machine's busy cores and load average alongside.
import type { ClusterStats } from "../server/stats.ts";
import { ProcessTreeSampler, type TreeSample } from "../system/proc.ts";
import { round2, round3 } from "./figures.ts";
import type { ServerSample, SweepSample, WorkerSample } from "./schema.ts";

/** Under the one-second sampling period, so a slow server costs a sample's server figures, not the cadence. */
const STATS_TIMEOUT_MS = 900;

function isClusterStats(v: unknown): v is ClusterStats {
  const s = v as ClusterStats;
  return Boolean(s) && typeof s === "object" && typeof s.conns === "number" && typeof s.total === "object" && Array.isArray(s.workers);
}

/** The machine's figures of a /proc sample: busy cores over its interval and the load average. */
export function machineFigures(tree: TreeSample): SweepSample["machine"] {
  return { busyCores: round2(tree.machineBusyCores), load1: tree.load.load1, load5: tree.load.load5 };
}

export class ServerProbe {
  private prev: ClusterStats | null = null;
  private readonly proc: ProcessTreeSampler;
  /** False once the server turned out to have no wsmillion /stats. */
  private available = true;

  /** `pids`: the local server's worker processes; null for a remote server, seen through /stats only. */
  constructor(
    private readonly statsUrl: string,
    private readonly pids: (() => number[]) | null,
  ) {
    this.proc = new ProcessTreeSampler(pids ?? (() => []));
  }

  get local(): boolean {
    return this.pids !== null;
  }

  private async stats(): Promise<ClusterStats | null> {
    if (!this.available) return null;
    try {
      const res = await fetch(this.statsUrl, { signal: AbortSignal.timeout(STATS_TIMEOUT_MS) });
      if (!res.ok) return null;
      const body: unknown = await res.json();
      return isClusterStats(body) ? body : null;
    } catch {
      return null;
    }
  }

  /** Asks once whether the server has a wsmillion /stats at all, so a plain server costs no requests. */
  async detect(): Promise<boolean> {
    this.available = (await this.stats()) !== null;
    return this.available;
  }

  async sample(): Promise<{ server: ServerSample | null; machine: SweepSample["machine"] }> {
    const stats = await this.stats();
    // /proc after the answer, so the CPU interval ends where the counters do.
    const tree = this.proc.sample();
    const machine = machineFigures(tree);
    if (!stats && !this.local) return { server: null, machine };
    const server = this.serverSample(stats, tree);
    if (stats) this.prev = stats;
    return { server, machine };
  }

  private serverSample(stats: ClusterStats | null, tree: TreeSample): ServerSample {
    const prev = this.prev;
    const dt = stats && prev ? Math.max(0.001, (stats.time - prev.time) / 1000) : 0;
    const rate = (now: number, before: number | undefined) => (dt > 0 && before !== undefined ? Math.max(0, Math.round((now - before) / dt)) : 0);
    const t = stats?.total;
    return {
      conns: stats?.conns ?? 0,
      msgsInPerSec: t ? rate(t.messagesIn, prev?.total.messagesIn) : 0,
      msgsOutPerSec: t ? rate(t.messagesOut, prev?.total.messagesOut) : 0,
      bytesInPerSec: t ? rate(t.bytesIn, prev?.total.bytesIn) : 0,
      bytesOutPerSec: t ? rate(t.bytesOut, prev?.total.bytesOut) : 0,
      cpuCores: round3(this.local ? tree.cpuCores : (t?.cpuCores ?? 0)),
      rssBytes: this.local ? tree.rssBytes : (t?.rssBytes ?? 0),
      lagMs: round2(t?.eventLoopLagMs ?? 0),
      workers: this.workerSamples(stats, tree),
    };
  }

  /** Each worker as /stats lists it, with CPU and RSS from /proc where the process was sampled there. */
  private workerSamples(stats: ClusterStats | null, tree: TreeSample): WorkerSample[] {
    const byPid = new Map(tree.processes.map((p) => [p.pid, p]));
    return (stats?.workers ?? []).map((w) => {
      const p = byPid.get(w.pid);
      return { worker: w.worker, pid: w.pid, open: w.open, cpuCores: round3(p ? p.cpuCores : w.cpuCores), rssBytes: p ? p.rssBytes : w.rssBytes, lagMs: round2(w.eventLoopLagMs) };
    });
  }

  /** RSS now, without touching the per-second rate state. */
  async rss(): Promise<number> {
    if (this.pids) return new ProcessTreeSampler(this.pids).sample().rssBytes;
    return (await this.stats())?.total.rssBytes ?? 0;
  }
}
