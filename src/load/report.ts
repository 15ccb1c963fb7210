// The load report: what a run measured (`--json` writes exactly this; stable, fields are only ever added),
// the live snapshot shape, and `buildReport`, which merges the workers' outcomes exactly (counters summed,
// encoded HDR histograms merged) into it. Schema apart from orchestration: report/ and sweep/ read these
// types without importing the coordinator.
import { closeCodeMeaning } from "../protocol/close-codes.ts";
import { offerHeader } from "../protocol/deflate.ts";
import type { Limits } from "../system/limits.ts";
import { formatTarget } from "../system/targets.ts";
import { kernelReport, type KernelPhase, type KernelReport, type TcpDeltas } from "../system/tcp-counters.ts";
import type { ProcessFigures, WorkerToCoordinator } from "./ipc.ts";
import {
  HIST_NAMES, MergedMetrics, addCounters, explainCause, mergeEncoded, newHistogram, ourCloseNote, summarize,
  type Counters, type HistName, type LatencySummary,
} from "./metrics.ts";
import { offeredRate, type LoadPlan, type WorkerShard } from "./plan.ts";
import { fleetOutages, reconnectVerdict, type OutageReport } from "./outages.ts";

export type LoadPhase = "starting" | "ramp" | "run" | "hold" | "closing" | "done";

/** Once a second, fleet-wide. Rates are per second over the last sample. */
export interface ProgressSnapshot {
  /** Seconds since the start. */
  t: number;
  phase: LoadPhase;
  target: number;
  open: number;
  attempted: number;
  failed: number;
  dropped: number;
  dialsPerSec: number;
  msgsOutPerSec: number;
  msgsInPerSec: number;
  /** Round trip (echo) or push latency over the last second; 0 when none. */
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Send lateness p99 over the last second (how late sends left against the plan); 0 when none. */
  latenessP99Ms: number;
  errors: Record<string, number>;
  rssBytes: number;
  /** Generator CPU, in cores (1.0 = one core busy). */
  cpuCores: number;
  /** Worst event-loop lag of any worker over the last second. */
  lagMaxMs: number;
  /** Workers whose figures were late for this sample: their last rates are held (counts are their latest). */
  lateWorkers: number;
}

export interface ServerConns {
  conns: number;
  closed: number;
}

export interface WorkerFigures {
  index: number;
  pid: number;
  connections: number;
  openAtRamp: number;
  baseRssBytes: number;
  rampRssBytes: number;
  peakRssBytes: number;
  endRssBytes: number;
  /** (RSS after the ramp - RSS before dialing) / connections open then. */
  rssPerConnectionBytes: number;
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  loopLagP99Ms: number;
  loopLagMaxMs: number;
  exitCode: number | null;
  error: string | null;
}

export interface CloseFigure {
  code: number;
  count: number;
  meaning: string;
}

export interface DropFigure extends ErrorFigure {
  /** "server": it sent a close frame; "network": TCP ended under us (reset or EOF) with no close frame. */
  by: "server" | "network";
}

export interface ErrorFigure {
  cause: string;
  count: number;
  explanation: string;
  /** The first message seen for this cause, when there was one. */
  example: string | null;
}

/** Everything a load run measured; `--json` writes exactly this. Stable: fields are only ever added. */
export interface LoadReport {
  schema: "wsmillion.load/1";
  startedAt: string;
  endedAt: string;
  /** The plan as run, with targets and headers written out as text. */
  plan: Omit<LoadPlan, "targets" | "headers" | "sourcePortBase" | "maxMessage" | "statusUrl"> & { targets: string[]; headers: string[] };
  /**
   * `summary`: what a met --reconnect plan kept through its outages ("kept 50,000 connections; 1 outage,
   * back in 4.1 s; ..."); absent otherwise.
   */
  verdict: { met: boolean; exitCode: 0 | 1; reasons: string[]; summary?: string };
  connections: {
    target: number;
    attempted: number;
    opened: number;
    /** Open when the ramp finished. */
    openAtRamp: number;
    /** Open just before closing. */
    openAtEnd: number;
    peakOpen: number;
    failed: number;
    dropped: number;
    closedByUs: number;
    reconnects: number;
    rampSeconds: number;
    /** Upgrades completed per second during the ramp. */
    dialsPerSecond: number;
  };
  counters: Counters;
  /** Dials that failed, by cause. */
  errors: ErrorFigure[];
  /** Close codes the server sent to end open connections (only closes the server began). */
  serverCloses: CloseFigure[];
  /** Why open connections ended before our end-of-test close: a close frame, a reset, EOF; who ended them. */
  drops: DropFigure[];
  /** Closes we sent mid-run to fail connections whose server broke RFC 6455 (1002, 1007, 1009). */
  ourCloses: (CloseFigure & { example: string | null })[];
  latency: Record<HistName, LatencySummary>;
  traffic: {
    runSeconds: number;
    offeredPerSec: number;
    achievedPerSec: number;
    receivedPerSec: number;
    plannedSends: number;
    sent: number;
    received: number;
    /** Message payload bytes (before compression out, after inflation in). */
    bytesOut: number;
    bytesIn: number;
    /** WebSocket bytes as written and read after the upgrade (frame headers, compressed payloads; before TLS). */
    wireBytesOut: number;
    wireBytesIn: number;
    skippedBackpressure: number;
  };
  /** permessage-deflate: what we offered and how servers answered, by opened connection (null: not offered). */
  deflate: { offer: string; answers: { response: string; count: number }[] } | null;
  generator: {
    cpuSeconds: number;
    /** Generator CPU during the run per message moved (sent + received). */
    cpuMicrosPerMessage: number;
    /** The workers' peak RSS, summed (the coordinator's is apart: coordinatorRssBytes). */
    peakRssBytes: number;
    rssPerConnectionBytes: number;
    /** The coordinating process's RSS when the run began. */
    coordinatorRssBytes: number;
    /** What the generator costs before its first connection: the coordinator plus every worker at rest. */
    fixedRssBytes: number;
    /** Processes: the coordinator and its workers. */
    processes: number;
  };
  workers: WorkerFigures[];
  server: { url: string | null; atRamp: ServerConns | null; atEnd: ServerConns | null; error: string | null };
  samples: ProgressSnapshot[];
  warnings: string[];
  /**
   * The kernel's TCP counters over each phase (listen overflows, resets, softnet drops...) and, for those that
   * moved and matter, the likely cause and the doctor check whose fix applies. They are this machine's,
   * every program's: both ends when the server runs here.
   */
  kernel: KernelReport;
  /** Spans below the target after it was first reached, timed by the load workers (see outages.ts). */
  outages: OutageReport;
}

/** What the coordinator learnt of one worker, in the order it learnt it; buildReport's input. */
export interface WorkerOutcome {
  shard: Pick<WorkerShard, "index" | "slots">;
  pid: number;
  lastFigures: { counters: Counters; proc: ProcessFigures; planned: number } | null;
  errors: Record<string, number>;
  ramped: { counters: Counters; rampMs: number; rssBytes: number; cpuUs: number } | null;
  held: { counters: Counters; cpuUs: number; runMs: number } | null;
  final: Extract<WorkerToCoordinator, { t: "final" }> | null;
  baseRss: number;
  exitCode: number | null;
  error: string | null;
}

/** What the coordinator saw beside the workers. */
export interface RunContext {
  startedAt: Date;
  coordinatorRssBytes: number;
  samples: ProgressSnapshot[];
  warnings: string[];
  peakOpen: number;
  statusUrl: string | null;
  serverAtRamp: ServerConns | null;
  serverAtEnd: ServerConns | null;
  serverError: string | null;
  /** The kernel's TCP counters' rise over each phase, and the files that could not be read. */
  tcp: { phases: Record<KernelPhase, TcpDeltas>; unreadable: string[] };
  /** This machine's limits, for the doctor checks the counters point at (read only when one does). */
  limits: () => Limits;
}

function reportedPlan({ targets, headers, sourcePortBase: _base, maxMessage: _max, statusUrl: _url, ...rest }: LoadPlan): LoadReport["plan"] {
  return { ...rest, targets: targets.map(formatTarget), headers: headers.map(([k, v]) => `${k}: ${v}`) };
}

/** Every worker's figures merged: final snapshots where they came, the last live figures otherwise. */
function mergeOutcomes(states: WorkerOutcome[]): MergedMetrics {
  const merged = new MergedMetrics();
  for (const s of states) {
    if (s.final) merged.add(s.final.snapshot);
    else if (s.lastFigures) {
      addCounters(merged.counters, s.lastFigures.counters);
      for (const [k, v] of Object.entries(s.errors)) merged.errors[k] = (merged.errors[k] ?? 0) + v;
    }
  }
  return merged;
}

function workerFigures(s: WorkerOutcome): WorkerFigures {
  const f = s.final;
  const lag = newHistogram();
  if (f) mergeEncoded(lag, f.snapshot.hist.loopLag);
  const ramp = f?.rampRssBytes ?? s.ramped?.rssBytes ?? 0;
  const base = f?.baseRssBytes ?? s.baseRss;
  const open = f?.rampOpen ?? s.ramped?.counters.open ?? 0;
  return {
    index: s.shard.index,
    pid: s.pid,
    connections: s.shard.slots,
    openAtRamp: open,
    baseRssBytes: base,
    rampRssBytes: ramp,
    peakRssBytes: f?.peakRssBytes ?? s.lastFigures?.proc.rssBytes ?? 0,
    endRssBytes: f?.proc.rssBytes ?? s.lastFigures?.proc.rssBytes ?? 0,
    rssPerConnectionBytes: open > 0 ? Math.round((ramp - base) / open) : 0,
    cpuUserSeconds: (f?.proc.cpuUserUs ?? s.lastFigures?.proc.cpuUserUs ?? 0) / 1e6,
    cpuSystemSeconds: (f?.proc.cpuSystemUs ?? s.lastFigures?.proc.cpuSystemUs ?? 0) / 1e6,
    loopLagP99Ms: lag.totalCount ? lag.getValueAtPercentile(99) / 1000 : 0,
    loopLagMaxMs: lag.totalCount ? lag.maxValue / 1000 : 0,
    exitCode: s.exitCode,
    error: s.error,
  };
}

/** Why the plan was not met; empty when it was. */
function unmetReasons(
  plan: LoadPlan,
  c: Counters,
  r: {
    openAtRamp: number; offered: number; achieved: number; runSeconds: number; workers: WorkerFigures[];
    drops: DropFigure[]; ourCloses: Record<string, number>;
  },
): string[] {
  const reasons: string[] = [];
  if (c.failed > 0) reasons.push(`${c.failed} of ${c.attempted} dials failed`);
  if (r.openAtRamp < plan.connections) reasons.push(`only ${r.openAtRamp} of ${plan.connections} connections were open after the ramp`);
  if (c.dropped > 0) {
    const causes = r.drops.map((d) => `${d.cause} ${d.count}`).join(", ");
    reasons.push(`${c.dropped} open connections were dropped by the server or the network (${causes})`);
  }
  if (c.failedByUs > 0) {
    const codes = Object.entries(r.ourCloses).map(([code, n]) => `close ${code} ${n}`).join(", ");
    reasons.push(`${c.failedByUs} connections were failed by us because the server broke RFC 6455 (${codes})`);
  }
  if (r.offered > 0 && r.runSeconds > 0 && r.achieved < 0.95 * r.offered) {
    reasons.push(`sent ${Math.round(r.achieved)} msg/s of the ${Math.round(r.offered)} msg/s offered (below 95%)`);
  }
  for (const w of r.workers) if (w.error) reasons.push(`worker ${w.index}: ${w.error.split("\n")[0]}`);
  return reasons;
}

/** What is worth a look even when the plan was met. */
function runWarnings(plan: LoadPlan, c: Counters, latency: Record<HistName, LatencySummary>, sentInRun: number): string[] {
  const warnings: string[] = [];
  if (plan.mode === "echo" && sentInRun > 0 && c.msgsIn < sentInRun * 0.95) {
    warnings.push(`only ${c.msgsIn} of ${sentInRun} messages came back: is the server echoing?`);
  }
  if (latency.lateness.p99Ms > 10) {
    warnings.push(`send lateness p99 ${latency.lateness.p99Ms} ms: the generator itself was behind schedule (add --workers, or lower the rate)`);
  }
  return warnings;
}

/** Counts by cause, largest first, each with what it means and the first message seen for it. */
function causeFigures(counts: Record<string, number>, notes: Record<string, string>): ErrorFigure[] {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([cause, count]) => ({ cause, count, explanation: explainCause(cause), example: notes[cause] ?? null }));
}

function closeFigures(codes: Record<string, number>): CloseFigure[] {
  return Object.entries(codes)
    .sort((a, b) => b[1] - a[1])
    .map(([code, count]) => ({ code: Number(code), count, meaning: closeCodeMeaning(Number(code)) }));
}

const sum = (states: WorkerOutcome[], of: (s: WorkerOutcome) => number): number => states.reduce((n, s) => n + of(s), 0);

export function buildReport(plan: LoadPlan, states: WorkerOutcome[], x: RunContext): LoadReport {
  const merged = mergeOutcomes(states);
  const c = merged.counters;
  const latency = {} as Record<HistName, LatencySummary>;
  for (const n of HIST_NAMES) latency[n] = summarize(merged.hist[n]);

  const openAtRamp = sum(states, (s) => s.final?.rampOpen ?? s.ramped?.counters.open ?? 0);
  const openAtEnd = sum(states, (s) => s.held?.counters.open ?? 0);
  const rampSeconds = Math.max(0, ...states.map((s) => (s.ramped?.rampMs ?? 0) / 1000));
  const openedAtRamp = sum(states, (s) => s.ramped?.counters.opened ?? 0);
  const runMs = Math.max(0, ...states.map((s) => s.held?.runMs ?? s.final?.runMs ?? 0));
  const runSeconds = runMs / 1000;
  const sentInRun = sum(states, (s) => s.held?.counters.msgsOut ?? 0);
  const recvInRun = sum(states, (s) => (s.held?.counters.msgsIn ?? 0) - (s.ramped?.counters.msgsIn ?? 0));
  const cpuRunUs = sum(states, (s) => (s.held && s.ramped ? s.held.cpuUs - s.ramped.cpuUs : 0));
  const planned = sum(states, (s) => s.final?.planned ?? s.lastFigures?.planned ?? 0);
  const offered = offeredRate(plan);
  const achieved = runSeconds > 0 ? sentInRun / runSeconds : 0;

  const workers = states.map(workerFigures);
  const rssGrowth = workers.reduce((n, w) => n + Math.max(0, w.rampRssBytes - w.baseRssBytes), 0);
  const cpuSeconds = workers.reduce((n, w) => n + w.cpuUserSeconds + w.cpuSystemSeconds, 0);

  const errors = causeFigures(merged.errors, merged.notes);
  const drops: DropFigure[] = causeFigures(merged.drops, merged.notes).map((d) => ({ ...d, by: d.cause.startsWith("CLOSE_") ? "server" : "network" }));

  const outages = fleetOutages(plan.connections, states.flatMap((s) => (s.final ? [s.final.spans] : [])), x.startedAt.getTime());
  // With --reconnect the plan is a count to keep: what the recovered outages lost is weighed apart.
  const kept = plan.reconnect ? reconnectVerdict(plan.connections, outages, { failed: c.failed, dropped: c.dropped, drops, offered, runSeconds, openAtEnd }) : null;
  const weighed = kept?.weighed ?? { failed: c.failed, dropped: c.dropped, drops, offered };
  const reasons = [
    ...unmetReasons(plan, { ...c, failed: weighed.failed, dropped: weighed.dropped }, {
      openAtRamp, offered: weighed.offered, achieved, runSeconds, workers, drops: weighed.drops, ourCloses: merged.ourCloses,
    }),
    ...(kept?.reasons ?? []),
  ];
  const warnings = [...x.warnings, ...runWarnings(plan, c, latency, sentInRun)];

  const met = reasons.length === 0;
  return {
    schema: "wsmillion.load/1",
    startedAt: x.startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    plan: {
      ...reportedPlan(plan),
      workers: states.length,
    },
    verdict: { met, exitCode: met ? 0 : 1, reasons, ...(met && kept?.summary ? { summary: kept.summary } : {}) },
    connections: {
      target: plan.connections,
      attempted: c.attempted,
      opened: c.opened,
      openAtRamp,
      openAtEnd,
      peakOpen: Math.max(x.peakOpen, openAtRamp, openAtEnd),
      failed: c.failed,
      dropped: c.dropped,
      closedByUs: c.closedByUs,
      reconnects: c.reconnects,
      rampSeconds: Math.round(rampSeconds * 1000) / 1000,
      dialsPerSecond: rampSeconds > 0 ? Math.round(openedAtRamp / rampSeconds) : 0,
    },
    counters: { ...c },
    errors,
    serverCloses: closeFigures(merged.closeCodes),
    drops,
    ourCloses: closeFigures(merged.ourCloses).map((f) => ({ ...f, example: merged.notes[ourCloseNote(f.code)] ?? null })),
    latency,
    traffic: {
      runSeconds: Math.round(runSeconds * 1000) / 1000,
      offeredPerSec: Math.round(offered),
      achievedPerSec: Math.round(achieved),
      receivedPerSec: runSeconds > 0 ? Math.round(recvInRun / runSeconds) : 0,
      plannedSends: planned,
      sent: c.msgsOut,
      received: c.msgsIn,
      bytesOut: c.bytesOut,
      bytesIn: c.bytesIn,
      wireBytesOut: c.wireBytesOut,
      wireBytesIn: c.wireBytesIn,
      skippedBackpressure: c.sendsSkipped,
    },
    deflate: plan.deflate === null ? null : {
      offer: offerHeader(plan.deflate),
      answers: Object.entries(merged.extensions).sort((a, b) => b[1] - a[1]).map(([response, count]) => ({ response, count })),
    },
    generator: {
      cpuSeconds: Math.round(cpuSeconds * 1000) / 1000,
      cpuMicrosPerMessage: sentInRun + recvInRun > 0 ? Math.round((cpuRunUs / (sentInRun + recvInRun)) * 100) / 100 : 0,
      peakRssBytes: workers.reduce((n, w) => n + w.peakRssBytes, 0),
      rssPerConnectionBytes: openAtRamp > 0 ? Math.round(rssGrowth / openAtRamp) : 0,
      coordinatorRssBytes: x.coordinatorRssBytes,
      fixedRssBytes: x.coordinatorRssBytes + workers.reduce((n, w) => n + w.baseRssBytes, 0),
      processes: 1 + workers.length,
    },
    workers,
    server: { url: x.statusUrl, atRamp: x.serverAtRamp, atEnd: x.serverAtEnd, error: x.serverAtRamp || x.serverAtEnd ? null : x.serverError },
    samples: x.samples,
    warnings,
    kernel: kernelReport(x.tcp.phases, {
      failures: c.failed > 0 || c.dropped > 0,
      unreadable: x.tcp.unreadable,
      // Any listener these counters saw overflow runs on this machine, so its checks are the "both ends" ones.
      plan: { role: "both", connections: plan.connections, targets: plan.targets },
      limits: x.limits,
    }),
    outages: outages.report,
  };
}
