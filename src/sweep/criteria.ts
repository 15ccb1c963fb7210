// When a round has failed: too many connection errors, round trips too slow, or the generator so far
// behind its schedule that the offered load was never applied. Checked live (to stop a round early) and
// once more on the round's merged figures (the verdict in the report).
import { count } from "../format.ts";
import type { LoadReport } from "../load/report.ts";
import type { Criteria, SweepSample } from "./schema.ts";

export const CRITERIA_DEFAULTS: Readonly<Criteria> = Object.freeze({
  maxErrorPct: 1,
  maxP99Ms: 250,
  maxLatenessMs: "interval",
  minAchievedPct: 90,
  tripAfterS: 3,
});

/** Errors in percent of the target. */
export function errorPct(target: number, failedOrMissing: number, dropped: number): number {
  return target > 0 ? ((failedOrMissing + dropped) / target) * 100 : 0;
}

/** The lateness limit for a round with this interval. */
export function latenessLimit(c: Pick<Criteria, "maxLatenessMs">, intervalMs: number): number {
  return c.maxLatenessMs === "interval" ? intervalMs : c.maxLatenessMs;
}

/** The lateness criterion in words, for the report. */
export function latenessRule(c: Pick<Criteria, "maxLatenessMs">): string {
  return c.maxLatenessMs === "interval" ? "the round's interval" : `${c.maxLatenessMs} ms`;
}

const pct = (v: number) => (v >= 10 ? v.toFixed(0) : v.toFixed(v >= 1 ? 1 : 2));
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));

/**
 * Watches a round's samples. Errors trip at once (they only ever grow); latency must stay over its limit
 * for `tripAfterS` seconds in a row, so one slow second (a GC pause, the first sends) does not end a round.
 */
export class Tripwire {
  private slowRtt = 0;
  private late = 0;
  private readonly lateLimit: number;

  constructor(
    private readonly c: Criteria,
    intervalMs: number,
  ) {
    this.lateLimit = latenessLimit(c, intervalMs);
  }

  /** The reason to stop now, or null. */
  check(s: SweepSample): string | null {
    const cl = s.client;
    if (!cl) return null;
    const errs = errorPct(cl.target, cl.failed, cl.dropped);
    if (errs > this.c.maxErrorPct) return `errors ${pct(errs)}% > ${pct(this.c.maxErrorPct)}% (${cl.failed} failed, ${cl.dropped} dropped)`;
    if (s.phase !== "run") return null;
    this.slowRtt = cl.rttP99Ms > this.c.maxP99Ms ? this.slowRtt + 1 : 0;
    this.late = cl.latenessP99Ms > this.lateLimit ? this.late + 1 : 0;
    if (this.slowRtt >= this.c.tripAfterS) return `round trip p99 over ${ms(this.c.maxP99Ms)} ms for ${this.slowRtt} s (last ${ms(cl.rttP99Ms)} ms)`;
    if (this.late >= this.c.tripAfterS) return `send lateness p99 over ${ms(this.lateLimit)} ms for ${this.late} s (last ${ms(cl.latenessP99Ms)} ms): the generator fell behind`;
    return null;
  }
}

/** The verdict on a finished round: every reason it did not hold (empty: it held). */
export function judge(c: Criteria, r: Pick<LoadReport, "connections" | "latency" | "traffic" | "plan">, stoppedEarly: string | null): string[] {
  const reasons: string[] = [];
  if (stoppedEarly) reasons.push(`stopped early: ${stoppedEarly}`);
  const conn = r.connections;
  const missing = Math.max(conn.failed, conn.target - conn.openAtRamp);
  const errs = errorPct(conn.target, missing, conn.dropped);
  if (errs > c.maxErrorPct) reasons.push(`errors ${pct(errs)}% > ${pct(c.maxErrorPct)}% (${missing} failed or missing, ${conn.dropped} dropped)`);
  if (r.plan.mode === "echo" && r.latency.rtt.count > 0 && r.latency.rtt.p99Ms > c.maxP99Ms) {
    reasons.push(`round trip p99 ${ms(r.latency.rtt.p99Ms)} ms > ${ms(c.maxP99Ms)} ms`);
  }
  const lateLimit = latenessLimit(c, r.plan.intervalMs);
  if (r.latency.lateness.count > 0 && r.latency.lateness.p99Ms > lateLimit) {
    reasons.push(`send lateness p99 ${ms(r.latency.lateness.p99Ms)} ms > ${ms(lateLimit)} ms (the generator fell behind)`);
  }
  const t = r.traffic;
  if (t.offeredPerSec > 0 && t.runSeconds > 0 && t.achievedPerSec < (t.offeredPerSec * c.minAchievedPct) / 100) {
    reasons.push(`achieved ${count(t.achievedPerSec)} of ${count(t.offeredPerSec)} msg/s offered (< ${c.minAchievedPct}%)`);
  }
  if (!stoppedEarly && conn.openAtRamp === 0) reasons.push("no connection opened");
  return reasons;
}
