// One report from many agents, exactly: every agent's worker outcomes go through the same buildReport a
// single machine's run does (counters summed, the encoded HDR histograms merged, never percentiles
// averaged), with the whole fleet's plan. An agent lost mid-run counts with its last figures: its counters
// and the latency samples it had streamed (merged from its per-second histograms), the rest marked missing.
// The same merge serves the coordinator at the end of a run and `wsmillion merge` on report files.
import { buildReport, type LoadReport, type ProgressSnapshot, type ServerConns, type WorkerOutcome } from "../load/report.ts";
import { HIST_NAMES, type HistName } from "../load/metrics.ts";
import type { LoadPlan } from "../load/plan.ts";
import { readLimits } from "../system/limits.ts";
import type { AgentReport, AgentShare, Clock } from "./protocol.ts";
import type { MonitorReport } from "./monitor.ts";

/** An agent whose final report never came: what the coordinator had of it. */
export interface LostAgent {
  name: string;
  host: string;
  pid: number;
  share: AgentShare;
  clock: Clock;
  /** Seconds into the run when it was found lost, and why. */
  atS: number;
  reason: string;
  /** Its last figures folded into one outcome, with the latency it had streamed as a final snapshot. */
  outcome: WorkerOutcome;
}

export interface AgentRow {
  name: string;
  host: string;
  pid: number;
  status: "ok" | "interrupted" | "lost";
  /** What happened to it, when not ok. */
  note: string | null;
  connections: number;
  openAtRamp: number;
  failed: number;
  dropped: number;
  sent: number;
  received: number;
  latencyP99Ms: number;
  cpuSeconds: number;
  workers: number;
  clockOffsetMs: number;
  /** Its start instant against the earliest agent's, ms (null when unknown). */
  startOffsetMs: number | null;
}

/** What a report made on many machines adds to a LoadReport (`--json` holds it under `fleet`). */
export interface FleetSection {
  schema: "wsmillion.fleet/1";
  run: { id: string; epoch: number; redis: string };
  fleetPlan: LoadPlan;
  /** Spread of the agents' start instants on Redis's clock, ms (null with fewer than two known). */
  startSkewMs: number | null;
  agents: AgentRow[];
  /** An agent's figures are incomplete (lost, or its final report missing). */
  partial: boolean;
  /** 0 plan met, 1 not met, 3 partial run. */
  exitCode: 0 | 1 | 3;
  /** What happened during the run, in order ("12.0 s: agent a3 lost ..."). */
  events: string[];
  /** Redis commands per agent per second during the traffic phase, as Redis counted them (null when not measured). */
  redisCommandsPerAgentPerSec: number | null;
  agentReports: AgentReport[];
  lost: LostAgent[];
  /** The target's machine, from each monitor agent (`agent --monitor`), per second and over the traffic. */
  monitors: MonitorReport[];
}

export type FleetReport = LoadReport & { fleet: FleetSection };

/** What the coordinator saw that the agents did not (none of it when merging files offline). */
export interface FleetContext {
  samples: ProgressSnapshot[];
  warnings: string[];
  events: string[];
  peakOpen: number;
  serverAtRamp: ServerConns | null;
  serverAtEnd: ServerConns | null;
  serverError: string | null;
  redisCommandsPerAgentPerSec: number | null;
  monitors: MonitorReport[];
}

export const PARTIAL_EXIT = 3;

/** The agents' own samples summed second by second (each counts from its own start, and they started together). */
export function mergeSamples(reports: AgentReport[], target: number): ProgressSnapshot[] {
  const byT = new Map<number, ProgressSnapshot>();
  for (const r of reports) {
    for (const s of r.report.samples) {
      const t = Math.round(s.t);
      const m = byT.get(t);
      if (!m) {
        byT.set(t, { ...s, t, target, errors: { ...s.errors } });
        continue;
      }
      m.open += s.open;
      m.attempted += s.attempted;
      m.failed += s.failed;
      m.dropped += s.dropped;
      m.dialsPerSec += s.dialsPerSec;
      m.msgsOutPerSec += s.msgsOutPerSec;
      m.msgsInPerSec += s.msgsInPerSec;
      m.rssBytes += s.rssBytes;
      m.cpuCores += s.cpuCores;
      m.lagMaxMs = Math.max(m.lagMaxMs, s.lagMaxMs);
      m.lateWorkers += s.lateWorkers;
      // Percentiles of different machines do not add up; a merged second keeps the worst agent's.
      m.latencyP50Ms = Math.max(m.latencyP50Ms, s.latencyP50Ms);
      m.latencyP99Ms = Math.max(m.latencyP99Ms, s.latencyP99Ms);
      m.latenessP99Ms = Math.max(m.latenessP99Ms, s.latenessP99Ms);
      for (const [k, v] of Object.entries(s.errors)) m.errors[k] = (m.errors[k] ?? 0) + v;
    }
  }
  return [...byT.values()].sort((a, b) => a.t - b.t);
}

function row(r: AgentReport, earliest: number | null): AgentRow {
  const rep = r.report;
  const lat = rep.plan.mode === "receive" || rep.plan.mode === "idle" ? rep.latency.push : rep.latency.rtt;
  return {
    name: r.agent.name, host: r.agent.host, pid: r.agent.pid,
    status: r.interrupted ? "interrupted" : "ok", note: r.interrupted,
    connections: r.share.connections, openAtRamp: rep.connections.openAtRamp, failed: rep.connections.failed, dropped: rep.connections.dropped,
    sent: rep.traffic.sent, received: rep.traffic.received, latencyP99Ms: lat.p99Ms, cpuSeconds: rep.generator.cpuSeconds, workers: rep.workers.length,
    clockOffsetMs: r.clock.offsetMs, startOffsetMs: earliest !== null && r.started.ramp !== null ? Math.round((r.started.ramp - earliest) * 1000) / 1000 : null,
  };
}

function lostRow(l: LostAgent): AgentRow {
  const c = l.outcome.lastFigures?.counters;
  const f = l.outcome.final;
  return {
    name: l.name, host: l.host, pid: l.pid, status: "lost", note: `lost at ${l.atS.toFixed(1)} s: ${l.reason}`,
    connections: l.share.connections, openAtRamp: l.outcome.ramped?.counters.open ?? 0, failed: c?.failed ?? 0, dropped: c?.dropped ?? 0,
    sent: c?.msgsOut ?? 0, received: c?.msgsIn ?? 0, latencyP99Ms: 0,
    cpuSeconds: f ? (f.proc.cpuUserUs + f.proc.cpuSystemUs) / 1e6 : 0, workers: 0, clockOffsetMs: l.clock.offsetMs, startOffsetMs: null,
  };
}

/** Outcomes renumbered across agents, so the fleet's workers have one index each. */
function renumber(lists: WorkerOutcome[][]): WorkerOutcome[] {
  let k = 0;
  return lists.flatMap((list) => list.map((o) => ({ ...o, shard: { index: k++, slots: o.shard.slots } })));
}

/**
 * The fleet report from the agents' reports and the lost agents' last figures. Agent reports win over a
 * lost entry of the same name (a lost agent's own file, merged later, completes the run).
 */
export function mergeFleet(run: FleetSection["run"], fleetPlan: LoadPlan, reports: AgentReport[], lostIn: LostAgent[], x: FleetContext): FleetReport {
  const have = new Set(reports.map((r) => r.agent.name));
  const lost = lostIn.filter((l) => !have.has(l.name));
  const ordered = [...reports].sort((a, b) => a.share.index - b.share.index);
  const outcomes = renumber([...ordered.map((r) => r.outcomes), ...lost.map((l) => [l.outcome])]);
  const starts = ordered.map((r) => r.started.ramp).filter((v): v is number => v !== null);
  const earliest = starts.length > 0 ? Math.min(...starts) : null;
  const startedAt = new Date(Math.min(...ordered.map((r) => Date.parse(r.report.startedAt)), Date.now()));
  const report = buildReport(fleetPlan, outcomes, {
    startedAt,
    coordinatorRssBytes: ordered.reduce((n, r) => n + r.report.generator.coordinatorRssBytes, 0),
    samples: x.samples,
    warnings: x.warnings,
    peakOpen: x.peakOpen,
    statusUrl: fleetPlan.statusUrl,
    serverAtRamp: x.serverAtRamp,
    serverAtEnd: x.serverAtEnd,
    serverError: x.serverError,
    // Kernel counters belong to a machine: each agent's report has its own; summed, agents sharing a machine
    // (a lab, a test) would count it several times, so the fleet's names where they are instead.
    tcp: { phases: { ramp: {}, run: {}, close: {} }, unreadable: ["each agent's machine: see fleet.agentReports[].report.kernel"] },
    limits: () => readLimits(),
  });
  // Every agent is a process at rest beside its workers (buildReport counts one coordinator).
  const workers = outcomes.length - lost.length;
  report.generator.processes = ordered.length + workers;
  report.plan.workers = workers;
  const interrupted = ordered.filter((r) => r.interrupted);
  for (const r of interrupted) report.verdict.reasons.push(`agent ${r.agent.name} was interrupted: ${r.interrupted}`);
  for (const l of lost) report.verdict.reasons.push(`agent ${l.name} lost at ${l.atS.toFixed(1)} s (${l.reason}): its last figures are counted`);
  if (report.verdict.reasons.length > 0) report.verdict = { met: false, exitCode: 1, reasons: report.verdict.reasons };
  const partial = lost.length > 0;
  const rows = [...ordered.map((r) => row(r, earliest)), ...lost.map(lostRow)];
  return {
    ...report,
    fleet: {
      schema: "wsmillion.fleet/1",
      run,
      fleetPlan,
      startSkewMs: starts.length >= 2 ? Math.round((Math.max(...starts) - Math.min(...starts)) * 1000) / 1000 : null,
      agents: rows,
      partial,
      exitCode: partial ? PARTIAL_EXIT : report.verdict.exitCode,
      events: x.events,
      redisCommandsPerAgentPerSec: x.redisCommandsPerAgentPerSec,
      agentReports: ordered,
      lost,
      monitors: x.monitors,
    },
  };
}

/** The latency histograms a lost agent streamed, as the final snapshot of its folded outcome (the others stay empty). */
export function withStreamedLatency(o: WorkerOutcome, mode: LoadPlan["mode"], latency: string, lateness: string): WorkerOutcome {
  const c = o.lastFigures;
  if (!c) return o;
  const hist = Object.fromEntries(HIST_NAMES.map((n) => [n, ""])) as Record<HistName, string>;
  hist[mode === "receive" || mode === "idle" ? "push" : "rtt"] = latency;
  hist.lateness = lateness;
  return {
    ...o,
    final: {
      t: "final",
      snapshot: { counters: c.counters, errors: o.errors, closeCodes: {}, drops: {}, ourCloses: {}, extensions: {}, notes: {}, hist },
      proc: c.proc,
      baseRssBytes: o.baseRss,
      peakRssBytes: c.proc.rssBytes,
      rampRssBytes: o.ramped?.rssBytes ?? 0,
      rampOpen: o.ramped?.counters.open ?? 0,
      planned: c.planned,
      runMs: o.held?.runMs ?? 0,
      // When it had its share open is not streamed: an agent lost counts as never full (its outage spans the run).
      spans: { slots: o.shard.slots, fullMs: null, outages: [] },
    },
  };
}
