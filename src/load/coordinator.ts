// The coordinator: splits the plan into shards, starts one load worker process per shard (Bun.spawn + IPC),
// steps them through ramp -> run -> hold -> close together, merges their figures exactly and returns the
// LoadReport. `runLoad` is the programmatic API (the CLI, the demo and the sweep call it).
import type { Subprocess } from "bun";
import { nowMs } from "../protocol/stamp.ts";
import { sleep } from "../sleep.ts";
import type { CoordinatorToWorker, WorkerToCoordinator } from "./ipc.ts";
import { addCounters, mergeEncoded, newHistogram, zeroCounters, type Counters } from "./metrics.ts";
import { shardPlan, type LoadPlan, type WorkerShard } from "./plan.ts";
import { buildReport, type LoadPhase, type LoadReport, type ProgressSnapshot, type ServerConns, type WorkerOutcome } from "./report.ts";

export interface LoadHooks {
  onProgress?(s: ProgressSnapshot): void;
  onPhase?(phase: LoadPhase): void;
  /** Abort: skip to closing the connections (Ctrl-C). */
  signal?: AbortSignal;
}

const WORKER_PATH = new URL("./worker.ts", import.meta.url).pathname;
const CLOSE_TIMEOUT_MS = 3000;
/**
 * Workers report their end-of-phase figures after finishing work that grows with the connections (closing
 * them, above all), and with ~100 processes on 2 cores that takes time: wait in proportion, at this rate.
 */
const SLOWEST_CONNECTIONS_PER_SEC = 5000;
const waitFor = (connections: number, baseMs: number) => baseMs + Math.ceil((connections / SLOWEST_CONNECTIONS_PER_SEC) * 1000);

interface WorkerState extends WorkerOutcome {
  shard: WorkerShard;
  proc: Subprocess | null;
}

/** GET /conns on the server; null when the server has no such endpoint. */
async function fetchServerConns(url: string, timeoutMs = 1000): Promise<ServerConns | { error: string }> {
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

export async function runLoad(plan: LoadPlan, hooks: LoadHooks = {}): Promise<LoadReport> {
  const startedAt = new Date();
  const t0 = nowMs();
  const shards = shardPlan(plan);
  const states: WorkerState[] = shards.map((shard) => ({
    shard, proc: null, pid: 0, lastFigures: null, errors: {}, ramped: null, held: null, final: null, baseRss: 0, exitCode: null, error: null,
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

  const onMessage = (s: WorkerState, msg: WorkerToCoordinator): void => {
    switch (msg.t) {
      case "ready": s.pid = msg.pid; s.baseRss = msg.baseRssBytes; break;
      case "figures":
        s.lastFigures = { counters: msg.counters, proc: msg.proc, planned: msg.planned };
        s.errors = msg.errors;
        if (msg.recent) mergeEncoded(live, msg.recent);
        if (msg.recentLateness) mergeEncoded(liveLateness, msg.recentLateness);
        break;
      // These carry the counters of that moment: fresher than the last tick, which may be up to a second
      // old (a status page compared with our count at a phase change would otherwise differ).
      case "ramped": s.ramped = msg; if (s.lastFigures) s.lastFigures.counters = msg.counters; break;
      case "held": s.held = msg; if (s.lastFigures) s.lastFigures.counters = msg.counters; break;
      case "final": s.final = msg; break;
      case "fatal": s.error = msg.message; break;
    }
    poke();
  };

  const post = (s: WorkerState, msg: CoordinatorToWorker): void => {
    if (s.proc && alive(s)) {
      try { s.proc.send(msg); } catch { /* the worker is gone; its exit is recorded */ }
    }
  };

  for (const s of states) {
    const proc = Bun.spawn({
      cmd: [process.execPath, WORKER_PATH],
      stdio: ["ignore", "inherit", "inherit"],
      ipc: (msg) => onMessage(s, msg as WorkerToCoordinator),
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
      const tick = s.final ? { counters: s.final.snapshot.counters, proc: s.final.proc } : s.lastFigures;
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
    for (const s of states) post(s, { t: "start", shard: s.shard });
    await until(() => states.every((s) => s.ramped !== null || !alive(s) || s.error !== null), Number.MAX_SAFE_INTEGER);
    const openAtRampNow = states.reduce((n, s) => n + (s.ramped?.counters.open ?? 0), 0);
    serverAtRamp = await askServer();

    if (!hooks.signal?.aborted && openAtRampNow > 0) {
      setPhase("run");
      const start = nowMs() + 20;
      for (const s of states) post(s, { t: "run", t0: start, durationS: plan.durationS });
      await sleep(plan.durationS * 1000, hooks.signal);
      for (const s of states) post(s, { t: "hold" });
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
    for (const s of states) post(s, { t: "close", timeoutMs: CLOSE_TIMEOUT_MS });
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
