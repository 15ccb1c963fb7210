// One round of a sweep: a fresh local `wsmillion serve` (or the --target), the load generator's ramp and
// traffic, one sample a second of the generator, the server and the machine, an early stop when the
// criteria trip; then the round's figures for the report.
import { runLoad } from "../load/coordinator.ts";
import { completePlan, type LoadPlan } from "../load/plan.ts";
import type { LoadPhase, LoadReport, ProgressSnapshot } from "../load/report.ts";
import { SERVER_DEFAULTS } from "../server/config.ts";
import { startServer, type RunningServer } from "../server/supervisor.ts";
import { pairsFor, workerNofile } from "../system/capacity.ts";
import type { Limits } from "../system/limits.ts";
import { formatTarget, loopbackTargets, type Target } from "../system/targets.ts";
import { sleep } from "../sleep.ts";
import { Tripwire, errorPct, judge } from "./criteria.ts";
import { mean, peak, round2, round3, secondsSince } from "./figures.ts";
import { ServerProbe } from "./probe.ts";
import { offered } from "./rounds.ts";
import type { ClientSample, Criteria, Round, RoundResult, ServerSample, SweepSample } from "./schema.ts";

/** Lets a fresh server's workers finish starting before its idle RSS is taken as the round's baseline. */
const SETTLE_MS = 500;

export interface RemoteTarget {
  /** As given, for the report. */
  spec: string;
  targets: Target[];
  path: string;
}

/** What a round takes from the sweep's options. */
export interface RoundSettings {
  criteria: Criteria;
  mode: "echo" | "send";
  concurrency: number;
  loadWorkers: number | "auto";
  serverWorkers: number | "auto";
  /** null: a fresh local server per round. */
  target: RemoteTarget | null;
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

/** Loopback destinations for a local round: as many (address, port) pairs as the demo would use. */
export function localTargets(connections: number, limits: Limits, port: number): Target[] {
  return loopbackTargets(pairsFor(connections, limits), port);
}

/** Runs one round; `sweepStart` (a performance.now() reading) is the clock of the samples' `t`. */
export async function runRound(round: Round, view: RoundView, settings: RoundSettings, hooks: SweepHooks, sweepStart: number): Promise<RoundResult> {
  const roundStart = performance.now();
  const startedAt = new Date();
  hooks.onRoundStart?.(view);
  const dest = await destination(round, settings, hooks.onLog ?? ((l: string) => console.error(l)));
  const server = dest.server;
  // The first destination is the server itself (127.0.0.1 for a local one); the load plan asks its /conns.
  const probe = new ServerProbe(`http://${formatTarget(dest.targets[0]!)}/stats`, server ? () => server.pids() : null);
  const baseRss = await baselineRss(probe, server === null, hooks.signal);

  const abort = new AbortController();
  const onAbort = () => abort.abort();
  hooks.signal?.addEventListener("abort", onAbort, { once: true });
  if (hooks.signal?.aborted) abort.abort();
  const stamp = () => ({ t: secondsSince(sweepStart), roundT: secondsSince(roundStart), round: view.index });
  const watch = new RoundWatch(probe, new Tripwire(settings.criteria, round.intervalMs), abort, stamp, (s) => hooks.onSample?.(s, view));
  const plan = loadPlan(round, view.durationS, settings, dest);
  let load: LoadReport;
  try {
    load = await runLoad(plan, { signal: abort.signal, onProgress: watch.onProgress, onPhase: watch.onPhase });
    await watch.settled();
    if (watch.stoppedEarly === null && hooks.signal?.aborted) watch.stoppedEarly = "interrupted";
  } finally {
    hooks.signal?.removeEventListener("abort", onAbort);
    if (server) await server.stop();
  }

  const ending: RoundEnding = { baseRss, rampRss: watch.rampRss, stoppedEarly: watch.stoppedEarly, startedAt, local: server !== null, criteria: settings.criteria };
  const result = roundResult(round, view, load, watch.samples, ending);
  hooks.onRoundEnd?.(result);
  return result;
}

/** Where a round's load goes, and the local server behind it when there is one. */
interface Destination {
  server: RunningServer | null;
  targets: Target[];
  path: string;
}

async function destination(round: Round, settings: RoundSettings, log: (line: string) => void): Promise<Destination> {
  if (settings.target) {
    return { server: null, targets: settings.target.targets, path: settings.target.path };
  }
  const wanted = localTargets(round.connections, settings.limits, 0);
  const server = await startServer(
    {
      ...SERVER_DEFAULTS,
      host: wanted.length > 1 ? "0.0.0.0" : "127.0.0.1",
      port: 0,
      workers: settings.serverWorkers,
      maxConns: round.connections,
      mode: settings.mode === "echo" ? "echo" : "sink",
      drainTimeout: 3,
      quiet: true,
    },
    { nofileSoft: workerNofile(settings.limits), log: (l) => log(`server: ${l}`) },
  );
  const port = server.port;
  return { server, targets: wanted.map((t) => ({ ...t, port })), path: SERVER_DEFAULTS.path };
}

/** Primes the probe's counters, lets a fresh server settle, and takes its idle RSS as the round's baseline. */
async function baselineRss(probe: ServerProbe, remote: boolean, signal: AbortSignal | undefined): Promise<number> {
  if (remote) await probe.detect();
  await probe.sample();
  await sleep(SETTLE_MS, signal);
  return (await probe.sample()).server?.rssBytes ?? 0;
}

function loadPlan(round: Round, durationS: number, settings: RoundSettings, dest: Destination): LoadPlan {
  return completePlan(
    {
      targets: dest.targets,
      path: dest.path,
      connections: round.connections,
      concurrency: settings.concurrency,
      durationS,
      intervalMs: round.intervalMs,
      inFlight: round.inFlight ?? 0,
      size: round.size,
      mode: settings.mode,
      ...(settings.loadWorkers === "auto" ? {} : { workers: settings.loadWorkers }),
    },
    workerNofile(settings.limits),
  );
}

/**
 * Turns the generator's progress, once a second, into a sample with the server's and the machine's figures
 * beside it, and stops the round (through `abort`) when the tripwire trips. After the ramp it also takes the
 * server's RSS, what the connections cost it.
 */
class RoundWatch {
  readonly samples: SweepSample[] = [];
  stoppedEarly: string | null = null;
  rampRss = 0;
  // Samples are taken in order even though each waits for the server's answer.
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly probe: ServerProbe,
    private readonly tripwire: Tripwire,
    private readonly abort: AbortController,
    private readonly stamp: () => Pick<SweepSample, "t" | "roundT" | "round">,
    private readonly onSample: (s: SweepSample) => void,
  ) {}

  readonly onProgress = (snap: ProgressSnapshot): void => {
    this.chain = this.chain.then(() => this.record(snap));
  };

  readonly onPhase = (phase: LoadPhase): void => {
    if (phase !== "run") return;
    this.chain = this.chain.then(async () => {
      this.rampRss = await this.probe.rss();
    });
  };

  /** Resolves once every sample asked for so far has been taken. */
  settled(): Promise<void> {
    return this.chain;
  }

  private async record(snap: ProgressSnapshot): Promise<void> {
    const { server, machine } = await this.probe.sample();
    const s: SweepSample = { ...this.stamp(), phase: snap.phase, client: clientSample(snap), server, machine };
    this.samples.push(s);
    this.onSample(s);
    if (this.stoppedEarly !== null || this.abort.signal.aborted) return;
    const why = this.tripwire.check(s);
    if (why) {
      this.stoppedEarly = why;
      this.abort.abort();
    }
  }
}

function clientSample(snap: ProgressSnapshot): ClientSample {
  return {
    open: snap.open,
    target: snap.target,
    failed: snap.failed,
    dropped: snap.dropped,
    msgsOutPerSec: snap.msgsOutPerSec,
    msgsInPerSec: snap.msgsInPerSec,
    rttP50Ms: snap.latencyP50Ms,
    rttP99Ms: snap.latencyP99Ms,
    latenessP99Ms: snap.latenessP99Ms,
    cpuCores: round3(snap.cpuCores),
    rssBytes: snap.rssBytes,
    lagMs: snap.lagMaxMs,
  };
}

/** How a round went, beyond the generator's report and the samples. */
interface RoundEnding {
  baseRss: number;
  rampRss: number;
  stoppedEarly: string | null;
  startedAt: Date;
  local: boolean;
  criteria: Criteria;
}

/** The round's entry in the report: its verdict, and the means and peaks of its samples. */
function roundResult(round: Round, view: RoundView, load: LoadReport, samples: SweepSample[], x: RoundEnding): RoundResult {
  const run = samples.filter((s) => s.phase === "run");
  // The first run sample straddles the end of the ramp; leave it out when there are enough others.
  const steady = run.length >= 3 ? run.slice(1) : run;
  const steadyClients = steady.map((s) => s.client).filter((c): c is ClientSample => c !== null);
  const reasons = judge(x.criteria, load, x.stoppedEarly);
  const { samples: _drop, ...loadRest } = load;
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
    outcome: outcome(load.connections),
    traffic: traffic(round, load.traffic, run.length, steadyClients),
    server: serverSummary(samples, steady, load.connections.openAtRamp, x),
    client: {
      workers: load.plan.workers,
      cpuCores: round3(mean(steadyClients.map((c) => c.cpuCores))),
      peakRssBytes: load.generator.peakRssBytes,
      rssPerConnectionBytes: load.generator.rssPerConnectionBytes,
      cpuMicrosPerMessage: load.generator.cpuMicrosPerMessage,
    },
    machine: machineSummary(samples, run, steady),
    latency: { rtt: load.latency.rtt, lateness: load.latency.lateness, connect: load.latency.connect, handshake: load.latency.handshake },
    samples,
    load: loadRest,
  };
}

function outcome(c: LoadReport["connections"]): RoundResult["outcome"] {
  return {
    openAtRamp: c.openAtRamp,
    failed: c.failed,
    dropped: c.dropped,
    errorPct: round3(errorPct(c.target, Math.max(c.failed, c.target - c.openAtRamp), c.dropped)),
    rampSeconds: c.rampSeconds,
    dialsPerSecond: c.dialsPerSecond,
  };
}

function traffic(round: Round, t: LoadReport["traffic"], runSamples: number, steadyClients: ClientSample[]): RoundResult["traffic"] {
  // A round stopped early skips the generator's end-of-run accounting; its samples still tell the rate.
  const fromSamples = t.runSeconds === 0 && steadyClients.length > 0;
  const achieved = fromSamples ? Math.round(mean(steadyClients.map((c) => c.msgsOutPerSec))) : t.achievedPerSec;
  const received = fromSamples ? Math.round(mean(steadyClients.map((c) => c.msgsInPerSec))) : t.receivedPerSec;
  return {
    runSeconds: fromSamples ? runSamples : t.runSeconds,
    achievedPerSec: achieved,
    receivedPerSec: received,
    bytesOutPerSec: Math.round(achieved * round.size),
    bytesInPerSec: Math.round(received * round.size),
  };
}

/** Means over the steady run, peaks over the whole round; null when the server never gave a figure. */
function serverSummary(samples: SweepSample[], steady: SweepSample[], openAtRamp: number, x: RoundEnding): RoundResult["server"] {
  const all = samples.map((s) => s.server).filter((s): s is ServerSample => s !== null);
  if (all.length === 0) return null;
  const srv = steady.map((s) => s.server).filter((s): s is ServerSample => s !== null);
  const cpu = mean(srv.map((s) => s.cpuCores));
  const msgsIn = mean(srv.map((s) => s.msgsInPerSec));
  return {
    workers: peak(all.map((s) => s.workers.length)),
    cpuCores: round3(cpu),
    cpuCoresMax: round3(peak(srv.map((s) => s.cpuCores))),
    baseRssBytes: x.baseRss,
    rampRssBytes: x.rampRss,
    peakRssBytes: peak(all.map((s) => s.rssBytes)),
    rssPerConnectionBytes: openAtRamp > 0 && x.rampRss > 0 ? Math.round((x.rampRss - x.baseRss) / openAtRamp) : 0,
    lagMaxMs: round2(peak(srv.map((s) => s.lagMs))),
    msgsInPerSec: Math.round(msgsIn),
    msgsOutPerSec: Math.round(mean(srv.map((s) => s.msgsOutPerSec))),
    cpuMicrosPerMessage: msgsIn > 0 ? round2((cpu * 1e6) / msgsIn) : 0,
    cpuCoresPerKiloConn: openAtRamp > 0 ? round3((cpu * 1000) / openAtRamp) : 0,
    source: x.local ? "proc" : "stats",
  };
}

function machineSummary(samples: SweepSample[], run: SweepSample[], steady: SweepSample[]): RoundResult["machine"] {
  const active = samples.filter((s) => s.phase === "ramp" || s.phase === "run");
  return {
    busyCoresMean: round2(mean(steady.map((s) => s.machine.busyCores))),
    load1Max: peak(active.map((s) => s.machine.load1)),
    load1End: (run.at(-1) ?? active.at(-1))?.machine.load1 ?? 0,
  };
}
