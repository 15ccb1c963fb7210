// Server statistics: the counters one worker keeps, and how the supervisor sums them into the cluster view
// that /conns, /stats, /metrics and the dashboard serve.

/** Counters that only grow; summed across workers and across a worker's restarts. */
export interface ServerCounters {
  accepted: number;
  closed: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Messages not sent because the connection's buffer was over --max-buffered (policy drop). */
  dropped: number;
  /** Connections closed by --idle-timeout. */
  timedOut: number;
  /** Connections shut down for not completing their request within --handshake-timeout. */
  handshakeTimeouts: number;
  /** Close codes as seen by the server, e.g. {"1000": 5, "1002": 1}. */
  closedByCode: Record<string, number>;
  /** Refused upgrades by reason: the HTTP status with a word, e.g. "404 path", "503 full". */
  rejected: Record<string, number>;
}

/** Figures that describe a worker now; not summed across restarts. */
export interface Gauges {
  open: number;
  rssBytes: number;
  /** CPU used by the process over the last report interval, in cores (1.0 = one core busy). */
  cpuCores: number;
  /** Total CPU seconds (user + system) since the process started. */
  cpuSeconds: number;
  /** Worst event-loop delay over the last report interval, in ms. */
  eventLoopLagMs: number;
  /** Bytes queued in user space for slow connections. */
  bufferedBytes: number;
  listening: boolean;
}

/** Time from an upgrade request's fetch call to the open handler (the 101 sent), since the worker started. */
export interface UpgradeFigures {
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface WorkerStats extends ServerCounters, Gauges {
  worker: number;
  pid: number;
  restarts: number;
  uptimeSeconds: number;
  upgrade: UpgradeFigures;
  /** The same times as an HdrHistogram (µs, 2 significant digits, compressed base64) so workers merge exactly; encoded at most once a second, while endpoints ask for it. */
  upgradeHist: string;
  /** Inode of the worker's listening socket (0: not listening, or not known): finds its accept queue in /proc/net/tcp. */
  listenInode: number;
  /** Connections in the worker's accept queue, read from the kernel by the supervisor for /stats and /metrics (null: unknown). */
  acceptQueue: number | null;
}

export interface ClusterTotals extends ServerCounters, Gauges {
  workers: number;
}

export interface ClusterStats {
  /** Wall clock of the snapshot, ms since the epoch. */
  time: number;
  mode: string;
  /** Connections open now, and closed since the server started (workers lost in a crash count as closed). */
  conns: number;
  closed: number;
  total: ClusterTotals;
  workers: WorkerStats[];
  /** How upgrades fare, cluster-wide; filled in by the supervisor for /stats and /metrics. */
  handshakes?: HandshakeFigures;
}

export interface HandshakeFigures {
  /** Every worker's upgrade times merged. */
  upgrade: UpgradeFigures;
  /** Connections waiting in the workers' accept queues, summed over the workers whose queue was found. */
  acceptQueue: number;
  /** The network namespace's listen queue overflows and drops since boot (null: /proc/net/netstat unreadable). */
  listenOverflows: number | null;
  listenDrops: number | null;
}

/**
 * What /conns answers: connections open now and closed since the server started, cluster-wide. The supervisor
 * pushes it to every worker whenever it changes, so each worker answers from its own copy.
 */
export interface ConnCount {
  conns: number;
  closed: number;
}

export function emptyServerCounters(): ServerCounters {
  return { accepted: 0, closed: 0, messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, dropped: 0, timedOut: 0, handshakeTimeouts: 0, closedByCode: {}, rejected: {} };
}

export function emptyGauges(): Gauges {
  return { open: 0, rssBytes: 0, cpuCores: 0, cpuSeconds: 0, eventLoopLagMs: 0, bufferedBytes: 0, listening: false };
}

function addTally(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

export function addServerCounters(into: ServerCounters, from: ServerCounters): ServerCounters {
  into.accepted += from.accepted;
  into.closed += from.closed;
  into.messagesIn += from.messagesIn;
  into.messagesOut += from.messagesOut;
  into.bytesIn += from.bytesIn;
  into.bytesOut += from.bytesOut;
  into.dropped += from.dropped;
  into.timedOut += from.timedOut;
  into.handshakeTimeouts += from.handshakeTimeouts;
  addTally(into.closedByCode, from.closedByCode);
  addTally(into.rejected, from.rejected);
  return into;
}

export function countInto(tally: Record<string, number>, key: string | number, n = 1): void {
  tally[key] = (tally[key] ?? 0) + n;
}

/** Sum worker stats into cluster totals; `retired` holds what workers that died or restarted had counted. */
export function sumWorkers(mode: string, workers: WorkerStats[], retired: ServerCounters): ClusterStats {
  const counters = addServerCounters(emptyServerCounters(), retired);
  const gauges = emptyGauges();
  for (const w of workers) {
    addServerCounters(counters, w);
    gauges.open += w.open;
    gauges.rssBytes += w.rssBytes;
    gauges.cpuCores += w.cpuCores;
    gauges.cpuSeconds += w.cpuSeconds;
    gauges.eventLoopLagMs = Math.max(gauges.eventLoopLagMs, w.eventLoopLagMs);
    gauges.bufferedBytes += w.bufferedBytes;
    gauges.listening ||= w.listening;
  }
  return {
    time: Date.now(),
    mode,
    conns: gauges.open,
    closed: counters.closed,
    total: { ...counters, ...gauges, workers: workers.length },
    workers,
  };
}
