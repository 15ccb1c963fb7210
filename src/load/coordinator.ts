// The coordinator: splits the plan into shards, starts one load worker process per shard (Bun.spawn + IPC),
// steps them through ramp -> run -> hold -> close together, merges their figures exactly and returns the
// LoadReport. `runLoad` is the programmatic API (the CLI, the demo and the sweep call it).
import type { Subprocess } from "bun";
import { nowMs } from "../protocol/stamp.ts";
import { formatTarget } from "../system/targets.ts";
import { closeCodeMeaning } from "../protocol/close-codes.ts";
import {
  HIST_NAMES, MergedMetrics, explainCause, mergeEncoded, newHistogram, summarize, zeroCounters, addCounters,
  type Counters, type HistName, type LatencySummary,
} from "./metrics.ts";
import { offeredRate, shardPlan, type LoadPlan, type WorkerShard } from "./plan.ts";
import type { CoordinatorMsg, ProcessFigures, WorkerMsg } from "./worker.ts";

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
}

export interface LoadHooks {
  onProgress?(s: ProgressSnapshot): void;
  onPhase?(phase: LoadPhase): void;
  /** Abort: skip to closing the connections (Ctrl-C). */
  signal?: AbortSignal;
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
  verdict: { met: boolean; exitCode: 0 | 1; reasons: string[] };
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
  errors: ErrorFigure[];
  serverCloses: { code: number; count: number; meaning: string }[];
  latency: Record<HistName, LatencySummary>;
  traffic: {
    runSeconds: number;
    offeredPerSec: number;
    achievedPerSec: number;
    receivedPerSec: number;
    plannedSends: number;
    sent: number;
    received: number;
    bytesOut: number;
    bytesIn: number;
    skippedBackpressure: number;
  };
  generator: {
    cpuSeconds: number;
    /** Generator CPU during the run per message moved (sent + received). */
    cpuMicrosPerMessage: number;
    peakRssBytes: number;
    rssPerConnectionBytes: number;
  };
  workers: WorkerFigures[];
  server: { url: string | null; atRamp: ServerConns | null; atEnd: ServerConns | null; error: string | null };
  samples: ProgressSnapshot[];
  warnings: string[];
}

const WORKER_PATH = new URL("./worker.ts", import.meta.url).pathname;
const CLOSE_TIMEOUT_MS = 3000;
/**
 * Workers report their end-of-phase figures after finishing work that grows with the connections (closing
 * them, above all), and with ~100 processes on 2 cores that takes time: wait in proportion, at this rate.
 */
const SLOWEST_CONNECTIONS_PER_SEC = 5000;
const waitFor = (connections: number, baseMs: number) => baseMs + Math.ceil((connections / SLOWEST_CONNECTIONS_PER_SEC) * 1000);

interface WorkerState {
  shard: WorkerShard;
  proc: Subprocess | null;
  pid: number;
  lastTick: { counters: Counters; proc: ProcessFigures; planned: number } | null;
  errors: Record<string, number>;
  ramped: { counters: Counters; rampMs: number; rssBytes: number; cpuUs: number } | null;
  held: { counters: Counters; cpuUs: number; runMs: number } | null;
  final: Extract<WorkerMsg, { type: "final" }> | null;
  baseRss: number;
  exitCode: number | null;
  error: string | null;
}

/** GET /conns on the server; null when the server has no such endpoint. */
export async function fetchServerConns(url: string, timeoutMs = 1000): Promise<ServerConns | { error: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return { error: `${url} answered HTTP ${res.status}` };
    const body = (await res.json()) as { conns?: unknown; closed?: unknown };
    if (typeof body.conns !== "number") return { error: `${url} did not answer {"conns":N}` };
    return { conns: body.conns, closed: typeof body.closed === "number" ? body.closed : 0 };
  } catch (err) {
    return { error: `${url} not reachable (${err instanceof Error ? err.message : String(err)})` };
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

function reportedPlan({ targets, headers, sourcePortBase: _base, maxMessage: _max, statusUrl: _url, ...rest }: LoadPlan): LoadReport["plan"] {
  return { ...rest, targets: targets.map(formatTarget), headers: headers.map(([k, v]) => `${k}: ${v}`) };
}

export async function runLoad(plan: LoadPlan, hooks: LoadHooks = {}): Promise<LoadReport> {
  const startedAt = new Date();
  const t0 = nowMs();
  const shards = shardPlan(plan);
  const states: WorkerState[] = shards.map((shard) => ({
    shard, proc: null, pid: 0, lastTick: null, errors: {}, ramped: null, held: null, final: null, baseRss: 0, exitCode: null, error: null,
  }));
  const samples: ProgressSnapshot[] = [];
  const warnings: string[] = [];
  const live = newHistogram();
  const liveLateness = newHistogram();
  let phase: LoadPhase = "starting";
  let wake: (() => void) | null = null;
  const poke = (): void => { const w = wake; wake = null; w?.(); };
  /**
   * Resolves when cond() holds, re-checked on every worker message, or after timeoutMs. An abort ends the
   * wait only where `abortable`: it skips the ramp and the traffic, never the workers' final figures.
   */
  const until = async (cond: () => boolean, timeoutMs: number, abortable = true): Promise<void> => {
    const deadline = performance.now() + timeoutMs;
    while (!cond() && performance.now() < deadline && !(abortable && hooks.signal?.aborted)) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(250, Math.max(1, deadline - performance.now())));
      });
    }
  };
  const setPhase = (p: LoadPhase): void => { phase = p; hooks.onPhase?.(p); };
  const alive = (s: WorkerState): boolean => s.exitCode === null;

  const onMessage = (s: WorkerState, msg: WorkerMsg): void => {
    switch (msg.type) {
      case "ready": s.pid = msg.pid; s.baseRss = msg.baseRssBytes; break;
      case "tick":
        s.lastTick = { counters: msg.counters, proc: msg.proc, planned: msg.planned };
        s.errors = msg.errors;
        if (msg.recent) mergeEncoded(live, msg.recent);
        if (msg.recentLateness) mergeEncoded(liveLateness, msg.recentLateness);
        break;
      // These carry the counters of that moment: fresher than the last tick, which may be up to a second
      // old (a status page compared with our count at a phase change would otherwise differ).
      case "ramped": s.ramped = msg; if (s.lastTick) s.lastTick.counters = msg.counters; break;
      case "held": s.held = msg; if (s.lastTick) s.lastTick.counters = msg.counters; break;
      case "final": s.final = msg; break;
      case "fatal": s.error = msg.message; break;
    }
    poke();
  };

  const post = (s: WorkerState, msg: CoordinatorMsg): void => {
    if (s.proc && alive(s)) {
      try { s.proc.send(msg); } catch { /* the worker is gone; its exit is recorded */ }
    }
  };

  for (const s of states) {
    const proc = Bun.spawn({
      cmd: [process.execPath, WORKER_PATH],
      stdio: ["ignore", "inherit", "inherit"],
      ipc: (msg) => onMessage(s, msg as WorkerMsg),
      serialization: "advanced",
    });
    s.proc = proc;
    s.pid = proc.pid;
    void proc.exited.then((code) => {
      s.exitCode = code;
      if (!s.final && !s.error) s.error = `worker exited with code ${code} before reporting`;
      poke();
    });
  }

  // Live samples once a second.
  let prev: Counters = zeroCounters();
  let prevCpu = 0;
  let prevAt = performance.now();
  let peakOpen = 0;
  const sampleNow = (): ProgressSnapshot => {
    const sum = zeroCounters();
    let rss = 0;
    let cpu = 0;
    let lag = 0;
    const errors: Record<string, number> = {};
    for (const s of states) {
      const tick = s.final ? { counters: s.final.snapshot.counters, proc: s.final.proc } : s.lastTick;
      if (!tick) continue;
      addCounters(sum, tick.counters);
      rss += tick.proc.rssBytes;
      cpu += tick.proc.cpuUserUs + tick.proc.cpuSystemUs;
      lag = Math.max(lag, tick.proc.lagMaxMs);
      for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
    }
    const now = performance.now();
    const dt = Math.max(0.001, (now - prevAt) / 1000);
    const snap: ProgressSnapshot = {
      t: Math.round((nowMs() - t0) / 100) / 10,
      phase,
      target: plan.connections,
      open: sum.open,
      attempted: sum.attempted,
      failed: sum.failed,
      dropped: sum.dropped,
      dialsPerSec: Math.round((sum.attempted - prev.attempted) / dt),
      msgsOutPerSec: Math.round((sum.msgsOut - prev.msgsOut) / dt),
      msgsInPerSec: Math.round((sum.msgsIn - prev.msgsIn) / dt),
      latencyP50Ms: live.totalCount ? live.getValueAtPercentile(50) / 1000 : 0,
      latencyP99Ms: live.totalCount ? live.getValueAtPercentile(99) / 1000 : 0,
      latenessP99Ms: liveLateness.totalCount ? liveLateness.getValueAtPercentile(99) / 1000 : 0,
      errors,
      rssBytes: rss,
      cpuCores: Math.max(0, (cpu - prevCpu) / 1e6 / dt),
      lagMaxMs: Math.round(lag * 10) / 10,
    };
    live.reset();
    liveLateness.reset();
    prev = sum;
    prevCpu = cpu;
    prevAt = now;
    if (sum.open > peakOpen) peakOpen = sum.open;
    return snap;
  };
  const sampler = setInterval(() => {
    const snap = sampleNow();
    samples.push(snap);
    hooks.onProgress?.(snap);
  }, 1000);

  const statusUrl = plan.statusUrl;
  let serverAtRamp: ServerConns | null = null;
  let serverAtEnd: ServerConns | null = null;
  let serverError: string | null = null;
  const askServer = async (): Promise<ServerConns | null> => {
    if (!statusUrl) return null;
    const r = await fetchServerConns(statusUrl);
    if ("error" in r) { serverError = r.error; return null; }
    return r;
  };

  try {
    setPhase("ramp");
    for (const s of states) post(s, { type: "start", shard: s.shard });
    await until(() => states.every((s) => s.ramped !== null || !alive(s) || s.error !== null), Number.MAX_SAFE_INTEGER);
    const openAtRampNow = states.reduce((n, s) => n + (s.ramped?.counters.open ?? 0), 0);
    serverAtRamp = await askServer();

    if (!hooks.signal?.aborted && openAtRampNow > 0) {
      setPhase("run");
      const start = nowMs() + 20;
      for (const s of states) post(s, { type: "run", t0: start, durationS: plan.durationS });
      await sleep(plan.durationS * 1000, hooks.signal);
      for (const s of states) post(s, { type: "hold" });
      await until(() => states.every((s) => s.held !== null || !alive(s) || s.shard.slots === 0), waitFor(plan.connections / 10, 2000), false);
      if (plan.holdS > 0) {
        setPhase("hold");
        await sleep(plan.holdS * 1000, hooks.signal);
      }
    } else if (openAtRampNow === 0) {
      warnings.push("no connection opened: skipped the traffic phase");
    }
    serverAtEnd = await askServer();
    setPhase("closing");
    for (const s of states) post(s, { type: "close", timeoutMs: CLOSE_TIMEOUT_MS });
    await until(() => states.every((s) => s.final !== null || !alive(s)), waitFor(plan.connections, CLOSE_TIMEOUT_MS + 5000), false);
  } finally {
    clearInterval(sampler);
    for (const s of states) {
      if (alive(s) && s.final === null) {
        s.error ??= "worker did not report in time; killed";
        s.proc?.kill();
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(states.map((s) => s.proc?.exited)), new Promise((r) => { timer = setTimeout(r, 2000); })]);
    clearTimeout(timer);
  }
  const last = sampleNow();
  if (last.t > (samples.at(-1)?.t ?? 0)) { samples.push(last); hooks.onProgress?.(last); }
  setPhase("done");

  return buildReport(plan, states, { startedAt, samples, warnings, peakOpen, statusUrl, serverAtRamp, serverAtEnd, serverError });
}

function buildReport(
  plan: LoadPlan,
  states: WorkerState[],
  x: {
    startedAt: Date; samples: ProgressSnapshot[]; warnings: string[]; peakOpen: number; statusUrl: string | null;
    serverAtRamp: ServerConns | null; serverAtEnd: ServerConns | null; serverError: string | null;
  },
): LoadReport {
  const merged = new MergedMetrics();
  for (const s of states) {
    if (s.final) merged.add(s.final.snapshot);
    else if (s.lastTick) {
      addCounters(merged.counters, s.lastTick.counters);
      for (const [k, v] of Object.entries(s.errors)) merged.errors[k] = (merged.errors[k] ?? 0) + v;
    }
  }
  const c = merged.counters;
  const latency = {} as Record<HistName, LatencySummary>;
  for (const n of HIST_NAMES) latency[n] = summarize(merged.hist[n]);

  const openAtRamp = states.reduce((n, s) => n + (s.final?.rampOpen ?? s.ramped?.counters.open ?? 0), 0);
  const openAtEnd = states.reduce((n, s) => n + (s.held?.counters.open ?? 0), 0);
  const rampSeconds = Math.max(0, ...states.map((s) => (s.ramped?.rampMs ?? 0) / 1000));
  const openedAtRamp = states.reduce((n, s) => n + (s.ramped?.counters.opened ?? 0), 0);
  const runMs = Math.max(0, ...states.map((s) => s.held?.runMs ?? s.final?.runMs ?? 0));
  const runSeconds = runMs / 1000;
  const sentInRun = states.reduce((n, s) => n + (s.held?.counters.msgsOut ?? 0), 0);
  const recvInRun = states.reduce((n, s) => n + ((s.held?.counters.msgsIn ?? 0) - (s.ramped?.counters.msgsIn ?? 0)), 0);
  const cpuRunUs = states.reduce((n, s) => n + (s.held && s.ramped ? s.held.cpuUs - s.ramped.cpuUs : 0), 0);
  const planned = states.reduce((n, s) => n + (s.final?.planned ?? s.lastTick?.planned ?? 0), 0);
  const offered = offeredRate(plan);
  const achieved = runSeconds > 0 ? sentInRun / runSeconds : 0;

  const workers: WorkerFigures[] = states.map((s) => {
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
      peakRssBytes: f?.peakRssBytes ?? s.lastTick?.proc.rssBytes ?? 0,
      endRssBytes: f?.proc.rssBytes ?? s.lastTick?.proc.rssBytes ?? 0,
      rssPerConnectionBytes: open > 0 ? Math.round((ramp - base) / open) : 0,
      cpuUserSeconds: (f?.proc.cpuUserUs ?? s.lastTick?.proc.cpuUserUs ?? 0) / 1e6,
      cpuSystemSeconds: (f?.proc.cpuSystemUs ?? s.lastTick?.proc.cpuSystemUs ?? 0) / 1e6,
      loopLagP99Ms: lag.totalCount ? lag.getValueAtPercentile(99) / 1000 : 0,
      loopLagMaxMs: lag.totalCount ? lag.maxValue / 1000 : 0,
      exitCode: s.exitCode,
      error: s.error,
    };
  });
  const rssGrowth = workers.reduce((n, w) => n + Math.max(0, w.rampRssBytes - w.baseRssBytes), 0);
  const cpuSeconds = workers.reduce((n, w) => n + w.cpuUserSeconds + w.cpuSystemSeconds, 0);

  const errors: ErrorFigure[] = Object.entries(merged.errors)
    .sort((a, b) => b[1] - a[1])
    .map(([cause, count]) => ({ cause, count, explanation: explainCause(cause), example: merged.notes[cause] ?? null }));
  const serverCloses = Object.entries(merged.closeCodes)
    .sort((a, b) => b[1] - a[1])
    .map(([code, count]) => ({ code: Number(code), count, meaning: closeCodeMeaning(Number(code)) }));

  const reasons: string[] = [];
  if (c.failed > 0) reasons.push(`${c.failed} of ${c.attempted} dials failed`);
  if (openAtRamp < plan.connections) reasons.push(`only ${openAtRamp} of ${plan.connections} connections were open after the ramp`);
  if (c.dropped > 0) reasons.push(`${c.dropped} open connections were dropped by the server or the network`);
  if (offered > 0 && runSeconds > 0 && achieved < 0.95 * offered) {
    reasons.push(`sent ${Math.round(achieved)} msg/s of the ${Math.round(offered)} msg/s offered (below 95%)`);
  }
  for (const w of workers) if (w.error) reasons.push(`worker ${w.index}: ${w.error.split("\n")[0]}`);
  const warnings = [...x.warnings];
  if (plan.mode === "echo" && sentInRun > 0 && c.msgsIn < sentInRun * 0.95) {
    warnings.push(`only ${c.msgsIn} of ${sentInRun} messages came back: is the server echoing?`);
  }
  if (latency.lateness.p99Ms > 10) {
    warnings.push(`send lateness p99 ${latency.lateness.p99Ms} ms: the generator itself was behind schedule (add --workers, or lower the rate)`);
  }

  const met = reasons.length === 0;
  return {
    schema: "wsmillion.load/1",
    startedAt: x.startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    plan: {
      ...reportedPlan(plan),
      workers: states.length,
    },
    verdict: { met, exitCode: met ? 0 : 1, reasons },
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
    serverCloses,
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
      skippedBackpressure: c.sendsSkipped,
    },
    generator: {
      cpuSeconds: Math.round(cpuSeconds * 1000) / 1000,
      cpuMicrosPerMessage: sentInRun + recvInRun > 0 ? Math.round((cpuRunUs / (sentInRun + recvInRun)) * 100) / 100 : 0,
      peakRssBytes: workers.reduce((n, w) => n + w.peakRssBytes, 0),
      rssPerConnectionBytes: openAtRamp > 0 ? Math.round(rssGrowth / openAtRamp) : 0,
    },
    workers,
    server: { url: x.statusUrl, atRamp: x.serverAtRamp, atEnd: x.serverAtEnd, error: x.serverAtRamp || x.serverAtEnd ? null : x.serverError },
    samples: x.samples,
    warnings,
  };
}
