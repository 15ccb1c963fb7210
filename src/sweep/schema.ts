// What a sweep measured: `report.json` is exactly a SweepReport. Stable: fields are only ever added.
// Types only, and the leaf of src/sweep/: the modules that plan, judge and run rounds import from here.
import type { LoadPhase, LoadReport } from "../load/report.ts";
import type { LatencySummary } from "../load/metrics.ts";

export interface Round {
  connections: number;
  /** Payload bytes per message. */
  size: number;
  /** Each connection sends every intervalMs (open loop; ignored when inFlight is set). */
  intervalMs: number;
  /**
   * Closed loop: each connection keeps this many messages outstanding and sends the next as an echo
   * returns, so the server's pace sets the rate (find-max rate). Absent: open loop on intervalMs.
   */
  inFlight?: number;
  /** Seconds of traffic; the sweep's --duration when absent. */
  durationS?: number;
  /**
   * The client machines the field report spread these connections over (its "4 x N"). A label only:
   * today every connection runs from this machine, `connections` being the sum.
   */
  clients?: number;
}

/** When a round has failed; the limits themselves, checked in criteria.ts. */
export interface Criteria {
  /** Failed dials, connections missing after the ramp and dropped ones, in percent of the target. */
  maxErrorPct: number;
  /** Echo round trip p99, ms. */
  maxP99Ms: number;
  /**
   * Send lateness p99, ms: how late sends left against the plan (the generator falling behind).
   * "interval": the round's own interval, i.e. a send leaving when the connection's next one is due.
   */
  maxLatenessMs: number | "interval";
  /** Achieved send rate, in percent of the offered one. */
  minAchievedPct: number;
  /** A latency criterion trips live only after this many consecutive seconds over its limit. */
  tripAfterS: number;
}

/** What --find-max raises: connections (open loop), or (rate) the messages each connection keeps in flight (closed loop). */
export type FindMaxWhat = "connections" | "rate";

/** The generator's phases, and the pause between rounds (machine figures only). */
export type SweepPhase = LoadPhase | "cooldown";

export interface WorkerSample {
  worker: number;
  pid: number;
  open: number;
  cpuCores: number;
  rssBytes: number;
  lagMs: number;
}

/** The server's side of one second. */
export interface ServerSample {
  conns: number;
  msgsInPerSec: number;
  msgsOutPerSec: number;
  bytesInPerSec: number;
  bytesOutPerSec: number;
  /** Over the last second: /proc for a local server, the server's own /stats for a remote one. */
  cpuCores: number;
  rssBytes: number;
  /** Worst event-loop lag of any worker. */
  lagMs: number;
  workers: WorkerSample[];
}

/** The load generator's side of one second. */
export interface ClientSample {
  open: number;
  target: number;
  failed: number;
  dropped: number;
  msgsOutPerSec: number;
  msgsInPerSec: number;
  rttP50Ms: number;
  rttP99Ms: number;
  latenessP99Ms: number;
  cpuCores: number;
  rssBytes: number;
  lagMs: number;
}

/** One second of a sweep: the generator, the server and the machine side by side. */
export interface SweepSample {
  /** Seconds since the sweep started. */
  t: number;
  /** Seconds since this round started. */
  roundT: number;
  round: number;
  phase: SweepPhase;
  client: ClientSample | null;
  /** null when the server has no /stats (a remote server that is not wsmillion) or did not answer. */
  server: ServerSample | null;
  machine: { busyCores: number; load1: number; load5: number };
}

export interface RoundResult extends Round {
  /** 1-based, in the order run. */
  index: number;
  label: string;
  offeredPerSec: number;
  startedAt: string;
  endedAt: string;
  /** The criteria held for the whole round. */
  held: boolean;
  /** Why it did not hold (empty when it did). */
  reasons: string[];
  /** The live criterion that stopped the round before its duration was up, or null. */
  stoppedEarly: string | null;
  /** What became of the connections. */
  outcome: {
    openAtRamp: number;
    failed: number;
    dropped: number;
    /** (failed dials, or connections missing after the ramp, + dropped) / target, in percent. */
    errorPct: number;
    rampSeconds: number;
    dialsPerSecond: number;
  };
  traffic: {
    runSeconds: number;
    achievedPerSec: number;
    receivedPerSec: number;
    /** Payload bytes per second each way during the run. */
    bytesOutPerSec: number;
    bytesInPerSec: number;
  };
  server: {
    workers: number;
    /** Mean over the run's samples. */
    cpuCores: number;
    cpuCoresMax: number;
    /** Before the ramp, after the ramp, and the peak during the run. */
    baseRssBytes: number;
    rampRssBytes: number;
    peakRssBytes: number;
    /** (RSS after the ramp - RSS before) / connections open: what a connection costs the server. */
    rssPerConnectionBytes: number;
    lagMaxMs: number;
    msgsInPerSec: number;
    msgsOutPerSec: number;
    /** Server CPU per message it received during the run (an echo is one in and one out). */
    cpuMicrosPerMessage: number;
    /** CPU in cores per 1,000 connections at this traffic. */
    cpuCoresPerKiloConn: number;
    source: "proc" | "stats";
  } | null;
  client: {
    workers: number;
    cpuCores: number;
    peakRssBytes: number;
    rssPerConnectionBytes: number;
    /** Generator CPU per message moved (sent + received). */
    cpuMicrosPerMessage: number;
  };
  machine: { busyCoresMean: number; load1Max: number; load1End: number };
  latency: { rtt: LatencySummary; lateness: LatencySummary; connect: LatencySummary; handshake: LatencySummary };
  samples: SweepSample[];
  /** The load generator's own report for the round (its per-second samples are in `samples` above). */
  load: Omit<LoadReport, "samples">;
}

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memTotalBytes: number;
  kernel: string;
  platform: string;
  arch: string;
  /** Open files per process (hard limit, which every worker runs with). */
  nofile: number;
  portRange: string;
}

/** One level of a find-max search. */
export interface FindMaxLevel {
  round: number;
  connections: number;
  intervalMs: number;
  /** Messages outstanding per connection (rate: closed loop); 0 in open loop. */
  inFlight: number;
  /** 0 in closed loop, where the server's pace sets the rate. */
  offeredPerSec: number;
}

export interface FindMaxResult {
  what: FindMaxWhat;
  /** The last level whose round held, or null when the first already failed. */
  lastHeld: FindMaxLevel | null;
  firstFailed: (FindMaxLevel & { reasons: string[] }) | null;
  /** rate: the level that held and moved the most messages/s, with its round trips; null for connections or when none held. */
  best: (FindMaxLevel & { achievedPerSec: number; rttP50Ms: number; rttP99Ms: number }) | null;
  /** Why the search ended. */
  ended: string;
}

export interface SweepReport {
  schema: "wsmillion.sweep/1";
  startedAt: string;
  endedAt: string;
  command: string;
  machine: MachineInfo;
  versions: { wsmillion: string; bun: string; uplot: string };
  settings: {
    source: "preset" | "file" | "matrix" | "find-max";
    preset: { name: string; scale: number; rule: string } | null;
    durationS: number;
    cooldownS: number;
    mode: "echo" | "send";
    criteria: Criteria;
    /** Where the load went: "local" (a fresh `wsmillion serve` per round) or the --target URL. */
    target: string;
    concurrency: number;
  };
  rounds: RoundResult[];
  findMax: FindMaxResult | null;
  findings: string[];
  /** Every round's round-trip histogram merged (µs, HdrHistogram compressed base64 in `encoded`). */
  merged: { rtt: LatencySummary; lateness: LatencySummary };
  /** Set when the sweep was interrupted (Ctrl-C) before every round ran. */
  interrupted: boolean;
}
