// The coordinator: splits the plan into shards, starts one load worker process per shard (Bun.spawn + IPC),
// steps them through ramp -> run -> hold -> close together, merges their figures exactly and returns the
// LoadReport. `runLoad` is the programmatic API (the CLI, the demo and the sweep call it).
import type { Subprocess } from "bun";
import { nowMs } from "../protocol/stamp.ts";
import { sleep } from "../sleep.ts";
import { readLimits } from "../system/limits.ts";
import { rssBytes } from "../system/self.ts";
import { tlsOptionsFor } from "./connection.ts";
import { PhaseCounters } from "../system/tcp-counters.ts";
import type { CoordinatorToWorker, WorkerToCoordinator } from "./ipc.ts";
import { addCounters, encodeHistogram, mergeEncoded, newHistogram, zeroCounters, type Counters } from "./metrics.ts";
import { shardPlan, type LoadPlan, type WorkerShard } from "./plan.ts";
import { buildReport, type LoadPhase, type LoadReport, type ProgressSnapshot, type ServerConns, type WorkerOutcome } from "./report.ts";

export interface LoadHooks {
  onProgress?(s: ProgressSnapshot): void;
  onPhase?(phase: LoadPhase): void;
  /** Abort: skip to closing the connections (Ctrl-C). */
  signal?: AbortSignal;
  /**
   * A run spread over machines (agents/remote.ts): awaited before the ramp, the traffic and the close, so
   * every machine's workers step together (their processes are already up when the wait before the ramp ends).
   */
  barrier?(phase: BarrierPhase): Promise<void>;
  /** Once a second and at the end: what a coordinator on another machine needs to merge this run exactly. */
  onFigures?(f: LiveFigures): void;
  /**
   * Connections the server closes at the same time as ours (an agent's share is part of a fleet closing
   * together): the close waits for the workers in proportion to these (default: this plan's).
   */
  closingConnections?: number;
}

export type BarrierPhase = "ramp" | "run" | "close";

export interface LiveFigures {
  snap: ProgressSnapshot;
  /** The workers as known now (live objects: read them at once). */
  outcomes: readonly WorkerOutcome[];
  /** The last second's round trips (or push latencies) and send lateness, encoded; "" when none. */
  recentLatency: string;
  recentLateness: string;
}

const WORKER_PATH = new URL("./worker.ts", import.meta.url).pathname;
const CLOSE_TIMEOUT_MS = 3000;
/**
 * Workers report their end-of-phase figures after finishing work that grows with the connections (closing
 * them, above all), and with ~100 processes on 2 cores that takes time: wait in proportion, at this rate.
 */
const SLOWEST_CONNECTIONS_PER_SEC = 5000;
const waitFor = (connections: number, baseMs: number) => baseMs + Math.ceil((connections / SLOWEST_CONNECTIONS_PER_SEC) * 1000);

/** Per second, over the worker's own reporting interval. */
interface WorkerRates {
  dials: number;
  msgsOut: number;
  msgsIn: number;
  cpuCores: number;
}

interface WorkerState extends WorkerOutcome {
  shard: WorkerShard;
  proc: Subprocess | null;
  /** Its last figures' counters, CPU and time, the base of its next rates. */
  rateBase: { counters: Counters; cpuUs: number; atMs: number } | null;
  rates: WorkerRates;
  /** When its last figures arrived (performance.now ms). */
  heardAt: number;
  /** When its last open connection went (wall-clock ms, from its figures); null while any is open. */
  emptyAt: number | null;
}

const NO_RATES: WorkerRates = { dials: 0, msgsOut: 0, msgsIn: 0, cpuCores: 0 };
/** A worker's figures older than this at a sample are late: its last rates are held and the line says so. */
const LATE_MS = 1500;
/** How long a server's /conns may take to catch up with our count at a phase change (see askServer). */
const SERVER_SETTLE_MS = 1000;

/** GET /conns on the server; null when the server has no such endpoint. */
async function fetchServerConns(url: string, tls: Bun.TLSOptions | null, timeoutMs = 1000): Promise<ServerConns | { error: string }> {
  try {
    // An https status URL is checked as the plan's wss connections are (--ca, --insecure, --servername).
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), ...(tls !== null ? { tls } : {}) });
    if (!res.ok) return { error: `${url} answered HTTP ${res.status}` };
    const body = (await res.json()) as { conns?: unknown; closed?: unknown };
    if (typeof body.conns !== "number") return { error: `${url} did not answer {"conns":N}` };
    return { conns: body.conns, closed: typeof body.closed === "number" ? body.closed : 0 };
  } catch (err) {
    return { error: `${url} not reachable (${err instanceof Error ? err.message : String(err)})` };
  }
}

export function runLoad(plan: LoadPlan, hooks: LoadHooks = {}): Promise<LoadReport> {
  return new LoadRun(plan, hooks).run();
}

/** One run: its workers, the live sums, and the phases in order. */
class LoadRun {
  private readonly startedAt = new Date();
  private readonly coordinatorRss = rssBytes();
  private readonly t0 = nowMs();
  private readonly states: WorkerState[];
  private readonly samples: ProgressSnapshot[] = [];
  private readonly warnings: string[] = [];
  /** Latency and send lateness over the last second, merged from the workers' recent histograms. */
  private readonly live = newHistogram();
  private readonly liveLateness = newHistogram();
  private phase: LoadPhase = "starting";
  private wake: (() => void) | null = null;
  private peakOpen = 0;
  private serverAtRamp: ServerConns | null = null;
  private serverAtEnd: ServerConns | null = null;
  private serverError: string | null = null;
  /** The last sample's live histograms, encoded before they are reset (only when onFigures wants them). */
  private recent = { latency: "", lateness: "" };
  /** The kernel's TCP counters, snapshotted here (before the first dial) and at the end of each phase. */
  private readonly tcp = new PhaseCounters();
  private saidAllGone = false;

  constructor(
    private readonly plan: LoadPlan,
    private readonly hooks: LoadHooks,
  ) {
    this.states = shardPlan(plan).map((shard) => ({
      shard, proc: null, pid: 0, lastFigures: null, errors: {}, ramped: null, held: null, final: null, baseRss: 0, exitCode: null, error: null,
      rateBase: null, rates: NO_RATES, heardAt: 0, emptyAt: null,
    }));
  }

  async run(): Promise<LoadReport> {
    for (const s of this.states) this.spawn(s);
    const sampler = setInterval(() => {
      const snap = this.sampleNow();
      this.samples.push(snap);
      this.hooks.onProgress?.(snap);
      this.figures(snap);
    }, 1000);
    try {
      await this.hooks.barrier?.("ramp");
      await this.ramp();
      await this.traffic();
      await this.hooks.barrier?.("close");
      this.serverAtEnd = await this.askServer(this.states.reduce((n, s) => n + (s.held?.counters.open ?? 0), 0));
      await this.close();
    } finally {
      clearInterval(sampler);
      await this.reap();
    }
    // After the reap: a worker killed with connections open resets them as it exits.
    this.tcp.end("close");
    const last = this.sampleNow();
    if (last.t > (this.samples.at(-1)?.t ?? 0)) {
      this.samples.push(last);
      this.hooks.onProgress?.(last);
    }
    this.figures(last);
    this.setPhase("done");
    return buildReport(this.plan, this.states, {
      startedAt: this.startedAt, coordinatorRssBytes: this.coordinatorRss, samples: this.samples, warnings: this.warnings, peakOpen: this.peakOpen, statusUrl: this.plan.statusUrl,
      serverAtRamp: this.serverAtRamp, serverAtEnd: this.serverAtEnd, serverError: this.serverError,
      tcp: { phases: this.tcp.phases, unreadable: this.tcp.unread() }, limits: () => readLimits(),
    });
  }

  // Phases

  private async ramp(): Promise<void> {
    this.setPhase("ramp");
    // Aborted before the ramp (a remote run called off at its barrier): start the workers with nothing to dial.
    const none = this.hooks.signal?.aborted === true;
    for (const s of this.states) this.post(s, { t: "start", shard: none ? { ...s.shard, slots: 0 } : s.shard });
    await this.until(() => this.states.every((s) => s.ramped !== null || !alive(s) || s.error !== null), Number.MAX_SAFE_INTEGER);
    this.tcp.end("ramp");
    this.serverAtRamp = await this.askServer(this.states.reduce((n, s) => n + (s.ramped?.counters.open ?? 0), 0));
  }

  private async traffic(): Promise<void> {
    const { plan, hooks } = this;
    const openAtRamp = this.states.reduce((n, s) => n + (s.ramped?.counters.open ?? 0), 0);
    if (openAtRamp === 0) {
      this.warnings.push("no connection opened: skipped the traffic phase");
      return;
    }
    if (hooks.signal?.aborted) return;
    await hooks.barrier?.("run");
    if (hooks.signal?.aborted) return;
    this.setPhase("run");
    const start = nowMs() + 20;
    for (const s of this.states) this.post(s, { t: "run", t0: start, durationS: plan.durationS });
    await this.lastFor(plan.durationS * 1000, "traffic");
    for (const s of this.states) this.post(s, { t: "hold" });
    await this.until(() => this.states.every((s) => s.held !== null || !alive(s) || s.shard.slots === 0), waitFor(plan.connections / 10, 2000), false);
    if (plan.holdS > 0) {
      this.setPhase("hold");
      await this.lastFor(plan.holdS * 1000, "hold");
    }
  }

  /** A phase of `ms`, cut short (and said so, once) when every connection is gone for good. */
  private async lastFor(ms: number, phase: string): Promise<void> {
    await this.until(() => this.allGoneAt() !== null, ms);
    const at = this.allGoneAt();
    if (at === null || this.saidAllGone) return;
    this.saidAllGone = true;
    this.warnings.push(`every connection was closed by the server at t=${((at - this.t0) / 1000).toFixed(1)}s; the ${phase} phase ended early`);
  }

  /**
   * Without --reconnect nothing reopens after the ramp, so once every worker's last connection went there is
   * nothing left to measure: when the last one went (wall-clock ms), else null. With --reconnect, null.
   */
  private allGoneAt(): number | null {
    if (this.plan.reconnect) return null;
    let last: number | null = null;
    for (const s of this.states) {
      if (s.emptyAt !== null) last = Math.max(last ?? 0, s.emptyAt);
      else if (alive(s) && (s.lastFigures?.counters.opened ?? 0) > 0) return null;
    }
    return last;
  }

  private async close(): Promise<void> {
    // Run ends here: the traffic, the hold, and the server's count at the end.
    this.tcp.end("run");
    this.setPhase("closing");
    for (const s of this.states) this.post(s, { t: "close", timeoutMs: CLOSE_TIMEOUT_MS });
    const closing = Math.max(this.plan.connections, this.hooks.closingConnections ?? 0);
    await this.until(() => this.states.every((s) => s.final !== null || !alive(s)), waitFor(closing, CLOSE_TIMEOUT_MS + 5000), false);
  }

  /** Kills what did not report in time and waits (briefly) for every worker to exit. */
  private async reap(): Promise<void> {
    for (const s of this.states) {
      if (alive(s) && s.final === null) {
        s.error ??= "worker did not report in time; killed";
        s.proc?.kill();
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(this.states.map((s) => s.proc?.exited)), new Promise((r) => { timer = setTimeout(r, 2000); })]);
    clearTimeout(timer);
  }

  // Workers

  private spawn(s: WorkerState): void {
    const proc = Bun.spawn({
      cmd: [process.execPath, WORKER_PATH],
      stdio: ["ignore", "inherit", "inherit"],
      ipc: (msg) => this.onMessage(s, msg as WorkerToCoordinator),
      serialization: "advanced",
    });
    s.proc = proc;
    s.pid = proc.pid;
    void proc.exited.then((code) => {
      s.exitCode = code;
      if (!s.final && !s.error) s.error = `worker exited with code ${code} before reporting`;
      this.poke();
    });
  }

  private onMessage(s: WorkerState, msg: WorkerToCoordinator): void {
    switch (msg.t) {
      case "ready":
        s.pid = msg.pid;
        s.baseRss = msg.baseRssBytes;
        s.rateBase = { counters: zeroCounters(), cpuUs: msg.cpuUs, atMs: msg.atMs };
        s.heardAt = performance.now();
        break;
      case "figures":
        updateRates(s, msg);
        s.emptyAt = msg.emptyAtMs;
        s.lastFigures = { counters: msg.counters, proc: msg.proc, planned: msg.planned };
        s.errors = msg.errors;
        if (msg.recentLatency) mergeEncoded(this.live, msg.recentLatency);
        if (msg.recentLateness) mergeEncoded(this.liveLateness, msg.recentLateness);
        break;
      // These carry the counters of that moment: fresher than the last figures, which may be up to a second
      // old (a status page compared with our count at a phase change would otherwise differ).
      case "ramped": s.ramped = msg; if (s.lastFigures) s.lastFigures.counters = msg.counters; break;
      case "held": s.held = msg; if (s.lastFigures) s.lastFigures.counters = msg.counters; break;
      case "final": s.final = msg; break;
      case "fatal": s.error = msg.message; break;
    }
    this.poke();
  }

  private post(s: WorkerState, msg: CoordinatorToWorker): void {
    if (s.proc && alive(s)) {
      try { s.proc.send(msg); } catch { /* the worker is gone; its exit is recorded */ }
    }
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /**
   * Resolves when cond() holds, re-checked on every worker message, or after timeoutMs. An abort ends the
   * wait only where `abortable`: it skips the ramp and the traffic, never the workers' final figures.
   */
  private async until(cond: () => boolean, timeoutMs: number, abortable = true): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!cond() && performance.now() < deadline && !(abortable && this.hooks.signal?.aborted)) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, Math.min(250, Math.max(1, deadline - performance.now())));
      });
    }
  }

  private figures(snap: ProgressSnapshot): void {
    this.hooks.onFigures?.({ snap, outcomes: this.states, recentLatency: this.recent.latency, recentLateness: this.recent.lateness });
  }

  private setPhase(p: LoadPhase): void {
    this.phase = p;
    this.hooks.onPhase?.(p);
  }

  /**
   * The server's /conns, to set beside `ours`. A server may publish its count a moment late (wsmillion
   * serve's is pushed to its workers, about 0.1 s behind the last change), so while it differs from ours it
   * is asked again, for up to SERVER_SETTLE_MS; a difference that outlasts that is real and kept as it is.
   */
  private async askServer(ours: number): Promise<ServerConns | null> {
    if (!this.plan.statusUrl) return null;
    const tls = this.plan.tls !== null ? tlsOptionsFor(this.plan.tls) : null;
    const deadline = performance.now() + SERVER_SETTLE_MS;
    for (;;) {
      const r = await fetchServerConns(this.plan.statusUrl, tls);
      if ("error" in r) {
        this.serverError = r.error;
        return null;
      }
      if (r.conns === ours || performance.now() >= deadline) return r;
      await sleep(100);
    }
  }

  /**
   * The fleet's figures now: counts summed over every worker's latest report, rates summed over each
   * worker's own last interval. A worker whose report is late keeps its last rates and is counted late, so
   * a second of late reports never reads as zero traffic.
   */
  private sampleNow(): ProgressSnapshot {
    const sum = zeroCounters();
    const rates = { ...NO_RATES };
    let rss = 0;
    let lag = 0;
    let late = 0;
    const now = performance.now();
    const errors: Record<string, number> = {};
    for (const s of this.states) {
      const latest = s.final ? { counters: s.final.snapshot.counters, proc: s.final.proc } : s.lastFigures;
      if (!latest) continue;
      addCounters(sum, latest.counters);
      rss += latest.proc.rssBytes;
      lag = Math.max(lag, latest.proc.lagMaxMs);
      for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
      if (s.final || !alive(s)) continue;
      if (now - s.heardAt > LATE_MS) late++;
      rates.dials += s.rates.dials;
      rates.msgsOut += s.rates.msgsOut;
      rates.msgsIn += s.rates.msgsIn;
      rates.cpuCores += s.rates.cpuCores;
    }
    const { live, liveLateness } = this;
    const snap: ProgressSnapshot = {
      t: Math.round((nowMs() - this.t0) / 100) / 10,
      phase: this.phase,
      target: this.plan.connections,
      open: sum.open,
      attempted: sum.attempted,
      failed: sum.failed,
      dropped: sum.dropped,
      dialsPerSec: Math.round(rates.dials),
      msgsOutPerSec: Math.round(rates.msgsOut),
      msgsInPerSec: Math.round(rates.msgsIn),
      latencyP50Ms: live.totalCount ? live.getValueAtPercentile(50) / 1000 : 0,
      latencyP99Ms: live.totalCount ? live.getValueAtPercentile(99) / 1000 : 0,
      latenessP99Ms: liveLateness.totalCount ? liveLateness.getValueAtPercentile(99) / 1000 : 0,
      errors,
      rssBytes: rss,
      cpuCores: rates.cpuCores,
      lagMaxMs: Math.round(lag * 10) / 10,
      lateWorkers: late,
    };
    if (this.hooks.onFigures) {
      this.recent = { latency: live.totalCount ? encodeHistogram(live) : "", lateness: liveLateness.totalCount ? encodeHistogram(liveLateness) : "" };
    }
    live.reset();
    liveLateness.reset();
    if (sum.open > this.peakOpen) this.peakOpen = sum.open;
    return snap;
  }
}

/** A worker's rates over the interval between its last two reports, timed by the worker's own clock. */
function updateRates(s: WorkerState, msg: Extract<WorkerToCoordinator, { t: "figures" }>): void {
  const cpuUs = msg.proc.cpuUserUs + msg.proc.cpuSystemUs;
  const base = s.rateBase;
  if (base && msg.atMs > base.atMs) {
    const dt = (msg.atMs - base.atMs) / 1000;
    s.rates = {
      dials: (msg.counters.attempted - base.counters.attempted) / dt,
      msgsOut: (msg.counters.msgsOut - base.counters.msgsOut) / dt,
      msgsIn: (msg.counters.msgsIn - base.counters.msgsIn) / dt,
      cpuCores: Math.max(0, (cpuUs - base.cpuUs) / 1e6 / dt),
    };
  }
  s.rateBase = { counters: msg.counters, cpuUs, atMs: msg.atMs };
  s.heardAt = performance.now();
}

const alive = (s: WorkerState): boolean => s.exitCode === null;
