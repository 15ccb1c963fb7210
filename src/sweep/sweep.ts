// The sweep: its rounds one after another with a cool-down between them (the machine still sampled), or with
// --find-max each next round picked from the last verdict; then the report and the conclusions it supports.
import { readFileSync } from "node:fs";
import { mergeEncoded, newHistogram, summarize } from "../load/metrics.ts";
import { capacityFor, workerNofile } from "../system/capacity.ts";
import type { Limits } from "../system/limits.ts";
import { ProcessTreeSampler } from "../system/proc.ts";
import { count } from "../format.ts";
import { sleep } from "../sleep.ts";
import { drawConclusions } from "./conclusions.ts";
import { secondsSince } from "./figures.ts";
import { machineFigures } from "./probe.ts";
import { localTargets, runRound, type RoundSettings, type RoundView, type SweepHooks } from "./round.ts";
import { between, heavier, roundLabel } from "./rounds.ts";
import type { FindMaxLevel, FindMaxResult, FindMaxWhat, MachineInfo, Round, RoundResult, SweepReport, SweepSample } from "./schema.ts";
import pkg from "../../package.json" with { type: "json" };

export interface SweepOptions extends RoundSettings {
  rounds: Round[];
  source: SweepReport["settings"]["source"];
  preset: SweepReport["settings"]["preset"];
  durationS: number;
  cooldownS: number;
  /** With find-max, `rounds[0]` is the first level. */
  findMax: FindMaxSettings | null;
  command: string;
}

export interface FindMaxSettings {
  what: FindMaxWhat;
  step: number;
  maxRounds: number;
  refine: number;
}

export async function runSweep(o: SweepOptions, hooks: SweepHooks = {}): Promise<SweepReport> {
  const sweep = new Sweep(o, hooks);
  let findMax: FindMaxResult | null = null;
  if (o.findMax) {
    const start = o.rounds[0]!;
    findMax = await findMaximum(sweep, o.findMax, start, machineCapacity(o.limits, o.target === null, start.connections), hooks.signal);
  } else {
    for (let i = 0; i < o.rounds.length && !hooks.signal?.aborted; i++) await sweep.next(o.rounds[i]!, i + 1, o.rounds.length);
  }
  return sweepReport(o, sweep.startedAt, sweep.results, findMax, Boolean(hooks.signal?.aborted));
}

/** Connections this machine holds with both ends on it (or as a client only, for a remote target). */
export function machineCapacity(limits: Limits, local: boolean, connections: number): number {
  const targets = localTargets(connections, limits, 8080);
  const cap = capacityFor({ role: local ? "both" : "client", connections, targets }, limits);
  return local ? cap.both.max : cap.client.max;
}

/** A sweep under way: the rounds run so far, and the clock their samples are timed by. */
class Sweep {
  readonly startedAt = new Date();
  readonly results: RoundResult[] = [];
  private readonly t0 = performance.now();

  constructor(
    private readonly o: SweepOptions,
    private readonly hooks: SweepHooks,
  ) {}

  /** Runs `round` after the previous round's cool-down, as round `index` of `total`. */
  async next(round: Round, index: number, total: number): Promise<RoundResult> {
    const view: RoundView = { index, total, round, label: roundLabel(round), durationS: round.durationS ?? this.o.durationS };
    const prev = this.results.at(-1);
    if (prev) await this.coolDown(prev, view);
    const r = await runRound(round, view, this.o, this.hooks, this.t0);
    this.results.push(r);
    return r;
  }

  /**
   * Between rounds the machine's figures keep coming (into the previous round's samples), so the load
   * average is seen settling before the next round starts.
   */
  private async coolDown(prev: RoundResult, view: RoundView): Promise<void> {
    const signal = this.hooks.signal;
    if (this.o.cooldownS <= 0) return;
    const machineOnly = new ProcessTreeSampler(() => []);
    machineOnly.sample();
    const start = performance.now();
    const end = start + this.o.cooldownS * 1000;
    while (performance.now() < end - 50 && !signal?.aborted) {
      await sleep(Math.min(1000, end - performance.now()), signal);
      const machine = machineFigures(machineOnly.sample());
      const s: SweepSample = { t: secondsSince(this.t0), roundT: secondsSince(start), round: prev.index, phase: "cooldown", client: null, server: null, machine };
      prev.samples.push(s);
      this.hooks.onSample?.(s, view);
    }
  }
}

/** What a find-max connections search knows so far. */
interface Bracket {
  held: RoundResult | null;
  failed: RoundResult | null;
  /** Refining rounds still allowed between the last that held and the first that failed. */
  refinesLeft: number;
}

type NextLevel = { next: Round } | { ended: string };

/** A find-max level as the report keeps it. */
function level(r: RoundResult): FindMaxLevel {
  return { round: r.index, connections: r.connections, intervalMs: r.intervalMs, inFlight: r.inFlight ?? 0, offeredPerSec: r.offeredPerSec };
}

function findMaximum(sweep: Sweep, fm: FindMaxSettings, start: Round, capacity: number, signal: AbortSignal | undefined): Promise<FindMaxResult> {
  return fm.what === "rate" ? findMaxRate(sweep, fm, start, signal) : findMaxConnections(sweep, fm, start, capacity, signal);
}

/**
 * Heavier levels, `step` times each, until one fails; then up to `refine` levels halfway between the
 * last that held and the first that failed. The answer is the last level that held.
 */
async function findMaxConnections(sweep: Sweep, fm: FindMaxSettings, start: Round, capacity: number, signal: AbortSignal | undefined): Promise<FindMaxResult> {
  const b: Bracket = { held: null, failed: null, refinesLeft: fm.refine };
  let ended = `stopped after ${fm.maxRounds} rounds (--max-rounds)`;
  let current = start;
  for (let i = 1; i <= fm.maxRounds && !signal?.aborted; i++) {
    const r = await sweep.next(current, i, fm.maxRounds);
    if (r.held) b.held = r;
    else b.failed = r;
    const step = nextLevel(fm, current, b, capacity);
    if ("ended" in step) {
      ended = step.ended;
      break;
    }
    // Once a level failed, every next level is a refining one.
    if (b.failed) b.refinesLeft--;
    current = step.next;
  }
  if (signal?.aborted) ended = "interrupted";
  return { what: fm.what, lastHeld: b.held ? level(b.held) : null, firstFailed: b.failed ? { ...level(b.failed), reasons: b.failed.reasons } : null, best: null, ended };
}

/** The level after `current`: heavier while none failed, then halfway between held and failed; or why the search ends. */
function nextLevel(fm: FindMaxSettings, current: Round, b: Bracket, capacity: number): NextLevel {
  if (!b.failed) {
    const next = heavier(current, "connections", fm.step);
    return next.connections > capacity ? { ended: `reached what this machine holds (${count(Math.floor(capacity))} connections) before the criteria failed` } : { next };
  }
  if (!b.held) return { ended: "the first level already failed: start lower" };
  if (b.refinesLeft <= 0) {
    return { ended: `the last level that held and the first that failed bracket the maximum (${fm.refine} refining round${fm.refine === 1 ? "" : "s"})` };
  }
  const mid = between(b.held, b.failed);
  return mid ? { next: mid } : { ended: "no whole level lies between the last that held and the first that failed" };
}

/** A level must beat the one before by this much for the search to go on: less is noise, not headroom. */
export const RATE_GAIN = 1.05;

/**
 * Closed loop at fixed connections: each level keeps `step` times more messages in flight per connection,
 * so the generator sends as fast as echoes return and the achieved rate is the server's pace. More in
 * flight raises the rate until the server (or the machine) is saturated; past that it only lengthens the
 * queue, and the round trips. The search stops when a level gains less than 5% over the one before or
 * fails the criteria (round trip p99 over --max-p99, errors); the answer is the best rate that held.
 */
async function findMaxRate(sweep: Sweep, fm: FindMaxSettings, start: Round, signal: AbortSignal | undefined): Promise<FindMaxResult> {
  let ended = `stopped after ${fm.maxRounds} rounds (--max-rounds)`;
  let held: RoundResult | null = null;
  let failed: RoundResult | null = null;
  let best: RoundResult | null = null;
  let current = start;
  for (let i = 1; i <= fm.maxRounds && !signal?.aborted; i++) {
    const r = await sweep.next(current, i, fm.maxRounds);
    if (!r.held) {
      failed = r;
      ended = `${r.inFlight} in flight failed the criteria (${r.reasons[0]})`;
      break;
    }
    const prev = held;
    held = r;
    const rate = r.traffic.achievedPerSec;
    if (!best || rate > best.traffic.achievedPerSec) best = r;
    if (prev && rate < prev.traffic.achievedPerSec * RATE_GAIN) {
      const gain = (rate / prev.traffic.achievedPerSec - 1) * 100;
      ended = `the rate stopped growing: ${count(rate)} msg/s at ${r.inFlight} in flight, ${gain >= 0 ? "+" : ""}${gain.toFixed(1)}% over ${prev.inFlight} in flight (< ${Math.round((RATE_GAIN - 1) * 100)}%)`;
      break;
    }
    current = heavier(current, "rate", fm.step);
  }
  if (signal?.aborted) ended = "interrupted";
  return {
    what: fm.what,
    lastHeld: held ? level(held) : null,
    firstFailed: failed ? { ...level(failed), reasons: failed.reasons } : null,
    best: best ? { ...level(best), achievedPerSec: best.traffic.achievedPerSec, rttP50Ms: best.latency.rtt.p50Ms, rttP99Ms: best.latency.rtt.p99Ms } : null,
    ended,
  };
}

function sweepReport(o: SweepOptions, startedAt: Date, rounds: RoundResult[], findMax: FindMaxResult | null, interrupted: boolean): SweepReport {
  const report: SweepReport = {
    schema: "wsmillion.sweep/1",
    startedAt: startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    command: o.command,
    machine: machineInfo(o.limits),
    versions: { wsmillion: pkg.version, bun: o.limits.runtime.bun, uplot: uplotVersion() },
    settings: {
      source: o.source,
      preset: o.preset,
      durationS: o.durationS,
      cooldownS: o.cooldownS,
      mode: o.mode,
      criteria: o.criteria,
      target: o.target ? o.target.spec : "local",
      concurrency: o.concurrency,
    },
    rounds,
    findMax,
    findings: [],
    merged: mergedLatency(rounds),
    interrupted,
  };
  report.findings = drawConclusions(report);
  return report;
}

/** Every round's round-trip and lateness histograms merged into one each. */
function mergedLatency(rounds: RoundResult[]): SweepReport["merged"] {
  const rtt = newHistogram();
  const late = newHistogram();
  for (const r of rounds) {
    mergeEncoded(rtt, r.latency.rtt.encoded);
    mergeEncoded(late, r.latency.lateness.encoded);
  }
  const merged = { rtt: summarize(rtt), lateness: summarize(late) };
  rtt.destroy();
  late.destroy();
  return merged;
}

function machineInfo(limits: Limits): MachineInfo {
  let cpuModel = "unknown";
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? cpuModel;
  } catch {
    // not Linux, or /proc hidden: the model is context only
  }
  const pr = limits.portRange.value;
  return {
    cores: limits.cores.value ?? 1,
    cpuModel,
    memTotalBytes: limits.memTotal.value ?? 0,
    kernel: limits.kernel.value ?? "unknown",
    platform: limits.runtime.platform,
    arch: limits.runtime.arch,
    nofile: workerNofile(limits),
    portRange: pr ? `${pr.low}-${pr.high}` : "unknown",
  };
}

function uplotVersion(): string {
  try {
    return (JSON.parse(readFileSync(Bun.resolveSync("uplot/package.json", import.meta.dir), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}
