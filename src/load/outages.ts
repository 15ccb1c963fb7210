// Outages: the spans of a run when fewer connections were open than the plan asked for, after the count
// had once reached it; how long each took to recover and what was refused meanwhile. What a user asks of a
// --reconnect run after a server crash or restart.
//
// Each load worker times its own spans below its share of the target at the events themselves (the loss
// that took it below, the open that restored it; wall-clock ms), so the figures are exact to the event, not
// to a sample. The fleet is below its target exactly when some worker is below its share (no worker holds
// more than its share), so the fleet's outages are the union of the workers' spans. The one figure that
// does not merge exactly is the lowest count: the sum of each worker's lowest, a floor that equals the
// fleet's lowest when the workers' troughs coincide, as they do when a server dies.
import { count } from "../format.ts";

/** What one span lost and what was refused while it lasted. */
export interface SpanCounts {
  /** Open connections the server or the network ended during the span, by cause (as the report's `drops`). */
  drops: Record<string, number>;
  /** Dials that failed during the span (reconnects refused), by cause. */
  refused: Record<string, number>;
  /** Sends that fell due on connections that were not open. */
  sendsDown: number;
}

/** One worker's span below its share. */
export interface WorkerOutage extends SpanCounts {
  /** Wall-clock ms of the loss that took the worker below its share. */
  startMs: number;
  /** Wall-clock ms of the open that restored its share; null when the run's close came first. */
  restoredMs: number | null;
  /** Wall-clock ms the span ended: restoredMs, or when closing began. */
  endMs: number;
  /** Fewest of the worker's connections open during the span. */
  minOpen: number;
}

/** What a worker reports at the end for the outage figures. */
export interface WorkerSpans {
  /** Its share of the target. */
  slots: number;
  /** When it first had its whole share open (wall-clock ms); null: never. Spans are timed from then on. */
  fullMs: number | null;
  outages: WorkerOutage[];
}

export interface Recovery {
  /** Seconds since the run started. */
  startT: number;
  /** When the count was back at the target, seconds since the start; null: not by the end. */
  recoveredT: number | null;
  /** recoveredT - startT; null when it did not recover. */
  seconds: number | null;
  /** The lowest open count during the outage (see the top of outages.ts: a floor, exact when drops coincide). */
  minOpen: number;
  /** Dials that failed during the outage, in all and by cause. */
  refusedDials: number;
  refusedByCause: Record<string, number>;
  /** Open connections lost during the outage. */
  dropped: number;
}

export interface OutageReport {
  count: number;
  /** Seconds below target in all (an outage still open at the end counts until closing began). */
  belowTargetSeconds: number;
  longestSeconds: number;
  recoveries: Recovery[];
}

interface Member extends SpanCounts {
  startMs: number;
  endMs: number;
  recovered: boolean;
  worker: number;
  /** The worker's lowest during this member; a worker's ramp (its time before it was first full) has none. */
  minOpen: number | null;
}

const round3 = (s: number): number => Math.round(s * 1000) / 1000;

export function addTally(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

export const tallySum = (t: Record<string, number>): number => Object.values(t).reduce((a, b) => a + b, 0);

const noCounts = (): SpanCounts => ({ drops: {}, refused: {}, sendsDown: 0 });

function addCounts(into: SpanCounts, from: SpanCounts): void {
  addTally(into.drops, from.drops);
  addTally(into.refused, from.refused);
  into.sendsDown += from.sendsDown;
}

/**
 * The fleet's outages from its workers' spans, and what the recovered ones lost (a --reconnect verdict
 * excuses that). `t0Ms` is the run's start (wall clock), `target` the connections asked for. Each worker's
 * time before it was first full is a span too: the union holding those is the ramp, not an outage (the
 * fleet had not reached its target yet); when it never ends, the fleet never reached its target, which the
 * ramp's own figures report.
 */
export function fleetOutages(target: number, workers: WorkerSpans[], t0Ms: number): { report: OutageReport; excused: SpanCounts } {
  const members: Member[] = [];
  workers.forEach((w, worker) => {
    members.push({ startMs: -Infinity, endMs: w.fullMs ?? Infinity, recovered: w.fullMs !== null, worker, minOpen: null, ...noCounts() });
    for (const o of w.outages) members.push({ ...o, recovered: o.restoredMs !== null, worker });
  });
  members.sort((a, b) => a.startMs - b.startMs);
  const groups: Member[][] = [];
  let groupEnd = -Infinity;
  for (const m of members) {
    const last = groups.at(-1);
    if (last && m.startMs <= groupEnd) {
      last.push(m);
      groupEnd = Math.max(groupEnd, m.endMs);
    } else {
      groups.push([m]);
      groupEnd = m.endMs;
    }
  }
  const recoveries: Recovery[] = [];
  const excused = noCounts();
  let below = 0;
  let longest = 0;
  for (const g of groups) {
    if (g.some((m) => m.minOpen === null)) continue;
    const start = g[0]!.startMs;
    const end = Math.max(...g.map((m) => m.endMs));
    const recovered = g.every((m) => m.recovered);
    const counts = noCounts();
    const lowest = new Map<number, number>();
    for (const m of g) {
      addCounts(counts, m);
      lowest.set(m.worker, Math.min(lowest.get(m.worker) ?? Infinity, m.minOpen!));
    }
    let minOpen = target;
    for (const [w, low] of lowest) minOpen -= workers[w]!.slots - low;
    const seconds = (end - start) / 1000;
    below += seconds;
    longest = Math.max(longest, seconds);
    recoveries.push({
      startT: round3((start - t0Ms) / 1000),
      recoveredT: recovered ? round3((end - t0Ms) / 1000) : null,
      seconds: recovered ? round3(seconds) : null,
      minOpen,
      refusedDials: tallySum(counts.refused),
      refusedByCause: counts.refused,
      dropped: tallySum(counts.drops),
    });
    if (recovered) addCounts(excused, counts);
  }
  return { report: { count: recoveries.length, belowTargetSeconds: round3(below), longestSeconds: round3(longest), recoveries }, excused };
}

/**
 * A --reconnect run keeps a count, so what the recovered outages lost (drops, refused reconnects, sends due
 * on connections that were down) is not a failure of the plan: it comes off what the verdict weighs. An
 * outage the count did not come back from is, and says how far short it ended.
 */
export function reconnectVerdict<D extends { cause: string; count: number }>(
  target: number,
  o: { report: OutageReport; excused: SpanCounts },
  w: { failed: number; dropped: number; drops: D[]; offered: number; runSeconds: number; openAtEnd: number },
): { weighed: { failed: number; dropped: number; drops: D[]; offered: number }; reasons: string[]; summary: string | null } {
  const { report, excused } = o;
  const drops = w.drops
    .map((d) => ({ ...d, count: d.count - (excused.drops[d.cause] ?? 0) }))
    .filter((d) => d.count > 0);
  const weighed = {
    failed: w.failed - tallySum(excused.refused),
    dropped: w.dropped - tallySum(excused.drops),
    drops,
    offered: w.runSeconds > 0 ? Math.max(0, w.offered - excused.sendsDown / w.runSeconds) : w.offered,
  };
  const reasons: string[] = [];
  const open = report.recoveries.find((r) => r.recoveredT === null);
  if (open) {
    reasons.push(
      `the count did not recover: ${count(w.openAtEnd)} of ${count(target)} open at the end, ${count(target - w.openAtEnd)} short ` +
        `(below target from t=${open.startT.toFixed(1)}s, lowest ${count(open.minOpen)})`,
    );
  }
  let summary: string | null = null;
  if (report.count > 0 && !open) {
    const longest = Math.max(...report.recoveries.map((r) => r.seconds ?? 0));
    const refused = report.recoveries.reduce((n, r) => n + r.refusedDials, 0);
    summary =
      `kept ${count(target)} connections; ${report.count === 1 ? "1 outage, back" : `${report.count} outages, the longest back`} in ${longest.toFixed(1)} s; ` +
      `${count(refused)} dial${refused === 1 ? "" : "s"} refused meanwhile`;
  }
  return { weighed, reasons, summary };
}
