// What agents and a coordinator say to each other through Redis: the keys (every run's under its id), the
// messages on each stream, the heartbeat, the timings, and the JSON codec (which keeps Infinity, as the
// machine limits hold it for "unlimited"). Types only and small helpers: agent.ts and remote.ts import it.
import type { WorkerOutcome, LoadReport, ProgressSnapshot } from "../load/report.ts";
import type { LoadPlan } from "../load/plan.ts";
import type { BarrierPhase } from "../load/coordinator.ts";
import type { Counters } from "../load/metrics.ts";
import type { ProcessFigures } from "../load/ipc.ts";
import type { Limits } from "../system/limits.ts";
import type { MonitorSample } from "./monitor.ts";
import pkg from "../../package.json" with { type: "json" };

/** Agents and coordinators work together only when their wsmillion versions are equal. */
export const VERSION: string = pkg.version;

export const keys = {
  /** Names of the agents that announced themselves (a set; an entry without a live heartbeat is stale). */
  registry: "wsm:agents",
  /** An agent's heartbeat: a key with a TTL, refreshed every HEARTBEAT_EVERY_MS. */
  agent: (name: string) => `wsm:agent:${name}`,
  /** Invitations to an agent (a stream it reads from where it was when it started). */
  inbox: (name: string) => `wsm:agent:${name}:inbox`,
  /** Coordinator -> agents: assignments, go instants, abort, end. Read from the start, so a late or reconnecting agent replays. */
  ctl: (run: string) => `wsm:run:${run}:ctl`,
  /** Agents -> coordinator: hello, barrier arrivals, figures once a second, final reports, errors. */
  up: (run: string) => `wsm:run:${run}:up`,
  /** The coordinator's tick every TICK_EVERY_MS: agents wake on it, and its absence means the coordinator is gone. */
  tick: (run: string) => `wsm:run:${run}:tick`,
};

/** Every key of a run, for their expiry. */
export const runKeys = (run: string): string[] => [keys.ctl(run), keys.up(run), keys.tick(run)];

// Steady state, per agent per second: 1 figures entry + 1/4 heartbeat + 1/10 wake-up on the tick, and the
// coordinator's read every second and tick every 10 s shared by the N agents: 1.35 + 1.1/N (1.63 at N = 4).
export const HEARTBEAT_EVERY_MS = 4000;
/** A killed agent is found lost within this (and a second): long enough for two missed beats. */
export const HEARTBEAT_TTL_S = 10;
export const TICK_EVERY_MS = 10_000;
/** An agent's blocking read waits a little longer than a tick, so in a run it wakes on ticks, not on timeouts. */
export const READ_BLOCK_MS = TICK_EVERY_MS + 1000;
/** No tick for this long while Redis answers: the coordinator is gone (two and a half ticks missed). */
export const COORDINATOR_LOST_MS = 2.5 * TICK_EVERY_MS;
/** A run's keys live this long after it ends (then expire); the streams get the whole run's length on top while it runs. */
export const RUN_KEYS_TTL_S = 3600;
/** Trim of the up stream: far more than a coordinator reading every second leaves unread. */
export const UP_MAXLEN = 20_000;
export const INBOX_MAXLEN = 100;
/** Seconds Redis may stay away before a run's final reports are meant for local files (--redis-grace). */
export const REDIS_GRACE_S = 60;

export type AgentRole = "load" | "monitor";
export type AgentState = "idle" | "joined" | "running" | "leaving";

/** The heartbeat key's value. */
export interface Heartbeat {
  name: string;
  /** Random per process: two processes with one name tell each other apart by it. */
  instance: string;
  version: string;
  role: AgentRole;
  state: AgentState;
  run: string | null;
  host: string;
  pid: number;
  open: number;
  cpuCores: number;
  rssBytes: number;
}

/** What an agent's machine can hold, as the capacity model (system/capacity.ts) reads it there. */
export interface AgentInfo {
  host: string;
  pid: number;
  cores: number;
  /** Every limit `doctor` reads, so the coordinator runs the very same capacity model on them. */
  limits: Limits;
  /** IPv4 addresses of the machine's interfaces (what it can dial from). */
  sources: string[];
  /** A monitor's watched process, in words (null for a load agent). */
  watching: string | null;
}

export interface Clock {
  /** Redis ms = this machine's Date.now() + offsetMs. */
  offsetMs: number;
  rttMs: number;
}

/** An agent's part of the plan: which slice of the fleet's connections and caps it runs. */
export interface AgentShare {
  index: number;
  agents: number;
  /** Its segment of the fleet's slots: [first, first + connections). */
  first: number;
  connections: number;
  rate: number;
  concurrency: number;
}

export type InboxMsg =
  | { t: "invite"; run: string; version: string; coordinator: string }
  | { t: "refuse"; run: string; reason: string };

export type CtlMsg =
  /** `plan` is the agent's own (its share); `fleetPlan` the whole run's; `deadlineAt` (Redis ms) ends it whatever happens. */
  | { t: "assign"; to: string; epoch: number; plan: LoadPlan; fleetPlan: LoadPlan; share: AgentShare; deadlineAt: number }
  /** Go at `at` (Redis ms) past `phase`'s barrier. */
  | { t: "go"; epoch: number; phase: BarrierPhase; at: number }
  | { t: "release"; to: string; reason: string }
  | { t: "abort"; epoch: number; reason: string }
  /** The run is over: agents leave it. */
  | { t: "end" };

/** An agent's live figures for one second: its own sums, and its workers' state folded into one outcome. */
export interface AgentFigures {
  snap: ProgressSnapshot;
  outcome: WorkerOutcome;
  /** Encoded, the last second's latency (round trips or pushes) and send lateness. */
  latency: string;
  lateness: string;
}

export type UpMsg =
  | { t: "hello"; name: string; instance: string; version: string; role: AgentRole; info: AgentInfo; clock: Clock }
  | { t: "busy"; name: string; reason: string }
  | { t: "at"; name: string; epoch: number; phase: BarrierPhase }
  /** When it went past a barrier, in Redis ms (the coordinator reports the spread). */
  | { t: "started"; name: string; epoch: number; phase: BarrierPhase; at: number; alone: boolean }
  | ({ t: "fig"; name: string; epoch: number; seq: number; at: number } & AgentFigures)
  | { t: "final"; name: string; epoch: number; report: AgentReport }
  | { t: "error"; name: string; epoch: number; message: string }
  /** A monitor's sample of the target's machine, taken at `at` (Redis ms). */
  | { t: "mon"; name: string; at: number; sample: MonitorSample };

/** What an agent ran, all of it: sent as its final message, written locally when Redis cannot take it. */
export interface AgentReport {
  schema: "wsmillion.agent-report/1";
  agent: { name: string; host: string; pid: number; version: string; instance: string };
  run: { id: string; epoch: number; redis: string };
  /** The whole fleet's plan, so `merge` can rebuild the fleet report from agent reports alone. */
  fleetPlan: LoadPlan;
  share: AgentShare;
  clock: Clock;
  /** When it went past each barrier, Redis ms; null where it did not reach it. */
  started: Record<BarrierPhase, number | null>;
  /** Its workers' outcomes: what the fleet report is merged from, exactly. */
  outcomes: WorkerOutcome[];
  /** Its own report, as `load` would have printed it on that machine. */
  report: LoadReport;
  /** Why its plan was cut short (coordinator gone, Ctrl-C, abort), or null. */
  interrupted: string | null;
  /** Times Redis was away during the run (ms each). */
  redisOutagesMs: number[];
}

// The codec: JSON with ±Infinity kept (limits say "unlimited" with it) and nothing else special.

const INF = "\u0000+inf";
const NINF = "\u0000-inf";

export function encode(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x === Infinity ? INF : x === -Infinity ? NINF : x));
}

export function decode<T>(s: string): T {
  return JSON.parse(s, (_k, x: unknown) => (x === INF ? Infinity : x === NINF ? -Infinity : x)) as T;
}

/** One worker outcome out of many: counts and CPU summed, times the longest, so a fleet report reads it as one worker. */
export function foldOutcomes(list: readonly WorkerOutcome[], index: number, slots: number, pid: number): WorkerOutcome {
  const sumC = (get: (o: WorkerOutcome) => Counters | undefined): Counters | null => {
    const have = list.map(get).filter((c): c is Counters => c !== undefined);
    if (have.length === 0) return null;
    const out = { ...have[0]! };
    for (const c of have.slice(1)) for (const k of Object.keys(out) as (keyof Counters)[]) out[k] += c[k];
    return out;
  };
  const errors: Record<string, number> = {};
  for (const o of list) for (const [k, v] of Object.entries(o.errors)) errors[k] = (errors[k] ?? 0) + v;
  const figs = list.map((o) => o.lastFigures).filter((f) => f !== null);
  const proc: ProcessFigures = {
    rssBytes: figs.reduce((n, f) => n + f.proc.rssBytes, 0),
    cpuUserUs: figs.reduce((n, f) => n + f.proc.cpuUserUs, 0),
    cpuSystemUs: figs.reduce((n, f) => n + f.proc.cpuSystemUs, 0),
    lagMaxMs: Math.max(0, ...figs.map((f) => f.proc.lagMaxMs)),
  };
  const lastCounters = sumC((o) => o.lastFigures?.counters);
  const ramped = list.flatMap((o) => (o.ramped ? [o.ramped] : []));
  const held = list.flatMap((o) => (o.held ? [o.held] : []));
  const errorsOf = list.map((o) => o.error).filter((e): e is string => e !== null);
  return {
    shard: { index, slots },
    pid,
    lastFigures: lastCounters ? { counters: lastCounters, proc, planned: figs.reduce((n, f) => n + f.planned, 0) } : null,
    errors,
    ramped: ramped.length
      ? { counters: sumC((o) => o.ramped?.counters)!, rampMs: Math.max(...ramped.map((r) => r.rampMs)), rssBytes: ramped.reduce((n, r) => n + r.rssBytes, 0), cpuUs: ramped.reduce((n, r) => n + r.cpuUs, 0) }
      : null,
    held: held.length ? { counters: sumC((o) => o.held?.counters)!, cpuUs: held.reduce((n, h) => n + h.cpuUs, 0), runMs: Math.max(...held.map((h) => h.runMs)) } : null,
    final: null,
    baseRss: list.reduce((n, o) => n + o.baseRss, 0),
    exitCode: null,
    error: errorsOf.length > 0 ? errorsOf.join("; ") : null,
  };
}

/** A WorkerOutcome as plain data (the coordinator's live objects hold a process handle). */
export function plainOutcome(o: WorkerOutcome): WorkerOutcome {
  return {
    shard: { index: o.shard.index, slots: o.shard.slots }, pid: o.pid, lastFigures: o.lastFigures, errors: { ...o.errors }, ramped: o.ramped, held: o.held,
    final: o.final, baseRss: o.baseRss, exitCode: o.exitCode, error: o.error,
  };
}
