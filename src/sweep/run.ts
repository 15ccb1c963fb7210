// The sweep: for each round, a fresh local `wsmillion serve` (or the --target), the load generator's ramp
// and traffic, one sample a second of the generator, the server and the machine, an early stop when the
// criteria trip, a cool-down; then the next round. --find-max picks each next round from the last verdict.
import { readFileSync } from "node:fs";
import { runLoad } from "../load/coordinator.ts";
import type { LoadPhase, LoadReport, ProgressSnapshot } from "../load/report.ts";
import { mergeEncoded, newHistogram, summarize } from "../load/metrics.ts";
import { completePlan } from "../load/plan.ts";
import { SERVER_DEFAULTS } from "../server/config.ts";
import type { ClusterStats } from "../server/stats.ts";
import { startServer, type RunningServer } from "../server/supervisor.ts";
import { capacityFor, pairsFor, workerNofile } from "../system/capacity.ts";
import type { Limits } from "../system/limits.ts";
import { ProcSampler, type TreeSample } from "../system/proc.ts";
import { formatTarget, loopbackTargets, type Target } from "../system/targets.ts";
import { sleep } from "../sleep.ts";
import { Tripwire, errorPct, judge } from "./criteria.ts";
import { drawConclusions } from "./conclusions.ts";
import { between, heavier, offered, roundLabel } from "./rounds.ts";
import type { Criteria, FindMaxResult, FindMaxWhat, MachineInfo, Round, RoundResult, ServerSample, SweepReport, SweepSample } from "./schema.ts";
import pkg from "../../package.json" with { type: "json" };

/** Lets a fresh server's workers finish starting before its idle RSS is taken as the round's baseline. */
const SETTLE_MS = 500;
const STATS_TIMEOUT_MS = 900;

export interface RemoteTarget {
  /** As given, for the report. */
  spec: string;
  targets: Target[];
  path: string;
}

export interface SweepOptions {
  rounds: Round[];
  source: SweepReport["settings"]["source"];
  preset: SweepReport["settings"]["preset"];
  durationS: number;
  cooldownS: number;
  criteria: Criteria;
  mode: "echo" | "send";
  concurrency: number;
  loadWorkers: number | "auto";
  serverWorkers: number | "auto";
  /** null: a fresh local server per round. */
  target: RemoteTarget | null;
  /** With find-max, `rounds[0]` is the first level. */
  findMax: { what: FindMaxWhat; step: number; maxRounds: number; refine: number } | null;
  command: string;
  limits: Limits;
}

/** What the progress line needs to know about the round a sample belongs to. */
export interface RoundView {
  index: number;
  /** Rounds planned (find-max: the bound). */
  total: number;
  round: Round;
  label: string;
  durationS: number;
}

export interface SweepHooks {
  onSample?(s: SweepSample, round: RoundView): void;
  onRoundStart?(round: RoundView): void;
  onRoundEnd?(result: RoundResult): void;
  /** Lines worth telling the user (server restarts, warnings). */
  onLog?(line: string): void;
  /** Abort: finish the current round's close, stop its server, and report what ran. */
  signal?: AbortSignal;
}

const mean = (xs: number[]) => (xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
const max = (xs: number[]) => (xs.length > 0 ? Math.max(...xs) : 0);
const r2 = (v: number) => Math.round(v * 100) / 100;
const r3 = (v: number) => Math.round(v * 1000) / 1000;

function isClusterStats(v: unknown): v is ClusterStats {
  const s = v as ClusterStats;
  return Boolean(s) && typeof s === "object" && typeof s.conns === "number" && typeof s.total === "object" && Array.isArray(s.workers);
}

/**
 * The server's figures each second: counters from its /stats (rates from one fetch to the next, timed by
 * the server's own clock) and, for a local server, CPU and RSS of its worker processes from /proc.
 */
class ServerProbe {
  private prev: ClusterStats | null = null;
  private readonly proc: ProcSampler;
  private available: boolean;

  constructor(
    private readonly statsUrl: string | null,
    private readonly pids: (() => number[]) | null,
  ) {
    this.proc = new ProcSampler(pids ?? (() => []));
    this.available = statsUrl !== null;
  }

  get local(): boolean {
    return this.pids !== null;
  }

  private async stats(): Promise<ClusterStats | null> {
    if (!this.statsUrl || !this.available) return null;
    try {
      const res = await fetch(this.statsUrl, { signal: AbortSignal.timeout(STATS_TIMEOUT_MS) });
      if (!res.ok) return null;
      const body: unknown = await res.json();
      return isClusterStats(body) ? body : null;
    } catch {
      return null;
    }
  }

  /** Asks once whether the server has a wsmillion /stats at all, so a plain server costs no requests. */
  async detect(): Promise<boolean> {
    this.available = (await this.stats()) !== null;
    return this.available;
  }

  async sample(): Promise<{ server: ServerSample | null; machine: SweepSample["machine"] }> {
    const stats = await this.stats();
    // /proc after the answer, so the CPU interval ends where the counters do.
    const tree = this.proc.sample();
    const machine = { busyCores: r2(tree.machineBusyCores), load1: tree.load.load1, load5: tree.load.load5 };
    if (!stats && !this.local) return { server: null, machine };
    const server = this.serverSample(stats, tree);
    if (stats) this.prev = stats;
    return { server, machine };
  }

  private serverSample(stats: ClusterStats | null, tree: TreeSample): ServerSample {
    const prev = this.prev;
    const dt = stats && prev ? Math.max(0.001, (stats.time - prev.time) / 1000) : 0;
    const rate = (now: number, before: number | undefined) => (dt > 0 && before !== undefined ? Math.max(0, Math.round((now - before) / dt)) : 0);
    const byPid = new Map(tree.processes.map((p) => [p.pid, p]));
    const t = stats?.total;
    return {
      conns: stats?.conns ?? 0,
      msgsInPerSec: t ? rate(t.messagesIn, prev?.total.messagesIn) : 0,
      msgsOutPerSec: t ? rate(t.messagesOut, prev?.total.messagesOut) : 0,
      bytesInPerSec: t ? rate(t.bytesIn, prev?.total.bytesIn) : 0,
      bytesOutPerSec: t ? rate(t.bytesOut, prev?.total.bytesOut) : 0,
      cpuCores: r3(this.local ? tree.cpuCores : (t?.cpuCores ?? 0)),
      rssBytes: this.local ? tree.rssBytes : (t?.rssBytes ?? 0),
      lagMs: r2(t?.eventLoopLagMs ?? 0),
      workers: (stats?.workers ?? []).map((w) => {
        const p = byPid.get(w.pid);
        return { worker: w.worker, pid: w.pid, open: w.open, cpuCores: r3(p ? p.cpuCores : w.cpuCores), rssBytes: p ? p.rssBytes : w.rssBytes, lagMs: r2(w.eventLoopLagMs) };
      }),
    };
  }

  /** RSS now, without touching the per-second rate state. */
  async rss(): Promise<number> {
    if (this.local) return new ProcSampler(this.pids!).sample().rssBytes;
    return (await this.stats())?.total.rssBytes ?? 0;
  }
}

export function machineInfo(limits: Limits): MachineInfo {
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

/** Loopback destinations for a local round: as many (address, port) pairs as the demo would use. */
export function localTargets(connections: number, limits: Limits, port: number): Target[] {
  return loopbackTargets(pairsFor(connections, limits), port);
}

/** Connections this machine holds with both ends on it (or as a client only, for a remote target). */
export function machineCapacity(limits: Limits, local: boolean, connections: number): number {
  const targets = localTargets(connections, limits, 8080);
  const cap = capacityFor({ role: local ? "both" : "client", connections, targets }, limits);
  return local ? cap.both.max : cap.client.max;
}

export async function runSweep(o: SweepOptions, hooks: SweepHooks = {}): Promise<SweepReport> {
  const startedAt = new Date();
  const t0 = performance.now();
  const nofile = workerNofile(o.limits);
  const results: RoundResult[] = [];
  const log = hooks.onLog ?? ((l: string) => console.error(l));

  async function runRound(round: Round, view: RoundView): Promise<RoundResult> {
    const roundStart = performance.now();
    const roundStartedAt = new Date();
    const durationS = view.durationS;
    hooks.onRoundStart?.(view);
    const samples: SweepSample[] = [];
    const stamp = () => ({ t: r2((performance.now() - t0) / 1000), roundT: r2((performance.now() - roundStart) / 1000), round: view.index });

    let server: RunningServer | null = null;
    let targets: Target[];
    let path: string;
    let statsUrl: string | null;
    if (o.target) {
      targets = o.target.targets;
      path = o.target.path;
      statsUrl = `http://${formatTarget(targets[0]!)}/stats`;
    } else {
      const wanted = localTargets(round.connections, o.limits, 0);
      server = await startServer(
        {
          ...SERVER_DEFAULTS,
          host: wanted.length > 1 ? "0.0.0.0" : "127.0.0.1",
          port: 0,
          workers: o.serverWorkers,
          maxConns: round.connections,
          mode: o.mode === "echo" ? "echo" : "sink",
          drainTimeout: 3,
          quiet: true,
        },
        { nofileSoft: nofile, log: (l) => log(`server: ${l}`) },
      );
      const port = server.port;
      targets = wanted.map((t) => ({ ...t, port }));
      path = SERVER_DEFAULTS.path;
      statsUrl = `http://127.0.0.1:${port}/stats`;
    }
    const running = server;
    const probe = new ServerProbe(statsUrl, running ? () => running.pids() : null);
    if (!running) await probe.detect();
    await probe.sample();
    await sleep(SETTLE_MS, hooks.signal);
    const first = await probe.sample();
    const baseRss = first.server?.rssBytes ?? 0;
    let rampRss = 0;

    const abort = new AbortController();
    const onAbort = () => abort.abort();
    hooks.signal?.addEventListener("abort", onAbort, { once: true });
    if (hooks.signal?.aborted) abort.abort();
    const tripwire = new Tripwire(o.criteria, round.intervalMs);
    let stoppedEarly: string | null = null;
    // Samples are taken in order even though each waits for the server's answer.
    let chain: Promise<void> = Promise.resolve();

    const record = (snap: ProgressSnapshot) => {
      chain = chain.then(async () => {
        const { server: srv, machine } = await probe.sample();
        const s: SweepSample = {
          ...stamp(),
          phase: snap.phase,
          client: {
            open: snap.open,
            target: snap.target,
            failed: snap.failed,
            dropped: snap.dropped,
            msgsOutPerSec: snap.msgsOutPerSec,
            msgsInPerSec: snap.msgsInPerSec,
            rttP50Ms: snap.latencyP50Ms,
            rttP99Ms: snap.latencyP99Ms,
            latenessP99Ms: snap.latenessP99Ms,
            cpuCores: r3(snap.cpuCores),
            rssBytes: snap.rssBytes,
            lagMs: snap.lagMaxMs,
          },
          server: srv,
          machine,
        };
        samples.push(s);
        hooks.onSample?.(s, view);
        if (stoppedEarly === null && !abort.signal.aborted) {
          const why = tripwire.check(s);
          if (why) {
            stoppedEarly = why;
            abort.abort();
          }
        }
      });
    };
    const onPhase = (p: LoadPhase) => {
      if (p === "run") {
        chain = chain.then(async () => {
          rampRss = await probe.rss();
        });
      }
    };

    const plan = completePlan(
      {
        targets,
        path,
        connections: round.connections,
        concurrency: o.concurrency,
        durationS,
        intervalMs: round.intervalMs,
        size: round.size,
        mode: o.mode,
        ...(o.loadWorkers === "auto" ? {} : { workers: o.loadWorkers }),
        statusUrl: statsUrl ? statsUrl.replace(/\/stats$/, "/conns") : null,
      },
      nofile,
    );
    let load: LoadReport;
    try {
      load = await runLoad(plan, { signal: abort.signal, onProgress: record, onPhase });
      await chain;
      if (stoppedEarly === null && hooks.signal?.aborted) stoppedEarly = "interrupted";
    } finally {
      hooks.signal?.removeEventListener("abort", onAbort);
      if (running) await running.stop();
    }

    const result = roundResult(round, view, load, samples, { baseRss, rampRss, stoppedEarly, startedAt: roundStartedAt, local: running !== null, criteria: o.criteria });
    hooks.onRoundEnd?.(result);
    return result;
  }

  /**
   * Between rounds the machine's figures keep coming (into the previous round's samples), so the load
   * average is seen settling before the next round starts.
   */
  async function coolDown(prev: RoundResult, view: RoundView): Promise<void> {
    if (o.cooldownS <= 0) return;
    const machineOnly = new ProcSampler(() => []);
    machineOnly.sample();
    const start = performance.now();
    const end = start + o.cooldownS * 1000;
    while (performance.now() < end - 50 && !hooks.signal?.aborted) {
      await sleep(Math.min(1000, end - performance.now()), hooks.signal);
      const tree = machineOnly.sample();
      const s: SweepSample = {
        t: r2((performance.now() - t0) / 1000),
        roundT: r2((performance.now() - start) / 1000),
        round: prev.index,
        phase: "cooldown",
        client: null,
        server: null,
        machine: { busyCores: r2(tree.machineBusyCores), load1: tree.load.load1, load5: tree.load.load5 },
      };
      prev.samples.push(s);
      hooks.onSample?.(s, view);
    }
  }

  async function next(round: Round, index: number, total: number): Promise<RoundResult> {
    const view: RoundView = { index, total, round, label: roundLabel(round), durationS: round.durationS ?? o.durationS };
    const prev = results.at(-1);
    if (prev) await coolDown(prev, view);
    const r = await runRound(round, view);
    results.push(r);
    return r;
  }

  let findMax: FindMaxResult | null = null;
  if (!o.findMax) {
    for (let i = 0; i < o.rounds.length && !hooks.signal?.aborted; i++) await next(o.rounds[i]!, i + 1, o.rounds.length);
  } else {
    findMax = await findMaximum(o.findMax, o.rounds[0]!);
  }

  /**
   * Heavier levels, `step` times each, until one fails; then up to `refine` levels halfway between the
   * last that held and the first that failed. The answer is the last level that held.
   */
  async function findMaximum(fm: NonNullable<SweepOptions["findMax"]>, start: Round): Promise<FindMaxResult> {
    const level = (r: RoundResult) => ({ round: r.index, connections: r.connections, intervalMs: r.intervalMs, offeredPerSec: r.offeredPerSec });
    const capacity = machineCapacity(o.limits, o.target === null, start.connections);
    let held: RoundResult | null = null;
    let failed: RoundResult | null = null;
    let refine = fm.refine;
    let ended = `stopped after ${fm.maxRounds} rounds (--max-rounds)`;
    let current: Round = start;
    for (let i = 1; i <= fm.maxRounds; i++) {
      if (hooks.signal?.aborted) {
        ended = "interrupted";
        break;
      }
      const r = await next(current, i, fm.maxRounds);
      if (r.held) held = r;
      else failed = r;
      let following: Round | null;
      if (!failed) {
        following = heavier(current, fm.what, fm.step);
        if (fm.what === "connections" && following.connections > capacity) {
          ended = `reached what this machine holds (${Math.floor(capacity).toLocaleString("en-US")} connections) before the criteria failed`;
          break;
        }
        if (fm.what === "rate" && following.intervalMs >= current.intervalMs) {
          ended = "reached a 1 ms interval before the criteria failed";
          break;
        }
      } else if (!held) {
        ended = "the first level already failed: start lower";
        break;
      } else if (refine <= 0) {
        ended = `the last level that held and the first that failed bracket the maximum (${fm.refine} refining round${fm.refine === 1 ? "" : "s"})`;
        break;
      } else {
        following = between(held, failed, fm.what);
        if (!following) {
          ended = "no whole level lies between the last that held and the first that failed";
          break;
        }
        refine--;
      }
      current = following;
    }
    if (hooks.signal?.aborted) ended = "interrupted";
    return { what: fm.what, lastHeld: held ? level(held) : null, firstFailed: failed ? { ...level(failed), reasons: failed.reasons } : null, ended };
  }

  const rtt = newHistogram();
  const late = newHistogram();
  for (const r of results) {
    mergeEncoded(rtt, r.latency.rtt.encoded);
    mergeEncoded(late, r.latency.lateness.encoded);
  }
  const machine = machineInfo(o.limits);
  const report: SweepReport = {
    schema: "wsmillion.sweep/1",
    startedAt: startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    command: o.command,
    machine,
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
    rounds: results,
    findMax,
    findings: [],
    merged: { rtt: summarize(rtt), lateness: summarize(late) },
    interrupted: Boolean(hooks.signal?.aborted),
  };
  rtt.destroy();
  late.destroy();
  report.findings = drawConclusions(report);
  return report;
}

function roundResult(
  round: Round,
  view: RoundView,
  load: LoadReport,
  samples: SweepSample[],
  x: { baseRss: number; rampRss: number; stoppedEarly: string | null; startedAt: Date; local: boolean; criteria: Criteria },
): RoundResult {
  const run = samples.filter((s) => s.phase === "run");
  // The first run sample straddles the end of the ramp; leave it out when there are enough others.
  const steady = run.length >= 3 ? run.slice(1) : run;
  const active = samples.filter((s) => s.phase === "ramp" || s.phase === "run");
  const srv = steady.map((s) => s.server).filter((s): s is ServerSample => s !== null);
  const cl = steady.map((s) => s.client).filter((c): c is NonNullable<SweepSample["client"]> => c !== null);
  const c = load.connections;
  const t = load.traffic;
  const reasons = judge(x.criteria, load, x.stoppedEarly);
  const cpu = mean(srv.map((s) => s.cpuCores));
  const msgsIn = mean(srv.map((s) => s.msgsInPerSec));
  const allSrv = samples.map((s) => s.server).filter((s): s is ServerSample => s !== null);
  const { samples: _drop, ...loadRest } = load;
  // A round stopped early skips the generator's end-of-run accounting; its samples still tell the rate.
  const fromSamples = t.runSeconds === 0 && cl.length > 0;
  const achieved = fromSamples ? Math.round(mean(cl.map((s) => s.msgsOutPerSec))) : t.achievedPerSec;
  const received = fromSamples ? Math.round(mean(cl.map((s) => s.msgsInPerSec))) : t.receivedPerSec;
  const traffic = {
    runSeconds: fromSamples ? run.length : t.runSeconds,
    achievedPerSec: achieved,
    receivedPerSec: received,
    bytesOutPerSec: Math.round(achieved * round.size),
    bytesInPerSec: Math.round(received * round.size),
  };
  return {
    ...round,
    durationS: view.durationS,
    index: view.index,
    label: view.label,
    offeredPerSec: Math.round(offered(round)),
    startedAt: x.startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    held: reasons.length === 0,
    reasons,
    stoppedEarly: x.stoppedEarly,
    outcome: {
      openAtRamp: c.openAtRamp,
      failed: c.failed,
      dropped: c.dropped,
      errorPct: r3(errorPct(c.target, Math.max(c.failed, c.target - c.openAtRamp), c.dropped)),
      rampSeconds: c.rampSeconds,
      dialsPerSecond: c.dialsPerSecond,
    },
    traffic,
    server: allSrv.length === 0
      ? null
      : {
          workers: max(allSrv.map((s) => s.workers.length)),
          cpuCores: r3(cpu),
          cpuCoresMax: r3(max(srv.map((s) => s.cpuCores))),
          baseRssBytes: x.baseRss,
          rampRssBytes: x.rampRss,
          peakRssBytes: max(allSrv.map((s) => s.rssBytes)),
          rssPerConnectionBytes: c.openAtRamp > 0 && x.rampRss > 0 ? Math.round((x.rampRss - x.baseRss) / c.openAtRamp) : 0,
          lagMaxMs: r2(max(srv.map((s) => s.lagMs))),
          msgsInPerSec: Math.round(msgsIn),
          msgsOutPerSec: Math.round(mean(srv.map((s) => s.msgsOutPerSec))),
          cpuMicrosPerMessage: msgsIn > 0 ? r2((cpu * 1e6) / msgsIn) : 0,
          cpuCoresPerKiloConn: c.openAtRamp > 0 ? r3((cpu * 1000) / c.openAtRamp) : 0,
          source: x.local ? "proc" : "stats",
        },
    client: {
      workers: load.plan.workers,
      cpuCores: r3(mean(cl.map((s) => s.cpuCores))),
      peakRssBytes: load.generator.peakRssBytes,
      rssPerConnectionBytes: load.generator.rssPerConnectionBytes,
      cpuMicrosPerMessage: load.generator.cpuMicrosPerMessage,
    },
    machine: {
      busyCoresMean: r2(mean(steady.map((s) => s.machine.busyCores))),
      load1Max: max(active.map((s) => s.machine.load1)),
      load1End: (run.at(-1) ?? active.at(-1))?.machine.load1 ?? 0,
    },
    latency: { rtt: load.latency.rtt, lateness: load.latency.lateness, connect: load.latency.connect, handshake: load.latency.handshake },
    samples,
    load: loadRest,
  };
}
