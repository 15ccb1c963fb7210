// `wsmillion demo` (what `npm start` runs): the whole exercise on this machine with nothing to set up.
// Limits summary, a local `serve`, connections ramped to what fits, a round of echo traffic, an optional
// idle hold, the report. `--connections 1000000 --hold 60 --out DIR` is the million run (docs/MILLION.md).
import type { Command } from "commander";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runLoad } from "../load/coordinator.ts";
import type { LoadReport } from "../load/report.ts";
import { completePlan } from "../load/plan.ts";
import { failedOrDropped, kernelSection, renderLoadReport } from "../report/load-report.ts";
import { ProgressPrinter } from "../report/progress.ts";
import { renderTable } from "../report/table.ts";
import { Timeline, type TimelineSummary } from "../report/timeline.ts";
import { timelineSvg } from "../report/timeline-svg.ts";
import { PING_BUDGET_PER_SEC, SERVER_DEFAULTS, chooseLiveness, livenessLine, livenessProblem, type Liveness } from "../server/config.ts";
import { startServer } from "../server/supervisor.ts";
import { capacityFor, checkPlan, pairsFor, portsPerPair, workerNofile } from "../system/capacity.ts";
import { COSTS, echoCapacity } from "../system/model.ts";
import { applySysctls, describeChange, restoreSysctls, type Applied } from "../system/fixes.ts";
import { readLimits } from "../system/limits.ts";
import { loopbackTargets } from "../system/targets.ts";
import { finalLine } from "./serve.ts";
import { UsageError, bytes, integer } from "../flags.ts";
import { count } from "../format.ts";
import type { Target } from "../system/targets.ts";

interface DemoFlags {
  connections?: number;
  /** Unset: chosen from what this machine drives (defaultInterval). */
  interval?: number;
  size: number;
  duration: number;
  hold: number;
  concurrency: number;
  /** Unset: scaled with the connections (chooseLiveness). */
  pingInterval?: number;
  idleTimeout?: number;
  out?: string;
}

const DEFAULT_CONNECTIONS = 50_000;
/**
 * Measured at a million: with ~100 processes on 2 cores a dial can wait several seconds for its upgrade, and
 * a 10 s limit reset 281 of them near the end of the ramp.
 */
const DEMO_HANDSHAKE_TIMEOUT_S = 60;

const fmt = count;
const kib = (b: number) => `${(b / 1024).toFixed(2)} KiB`;

/**
 * Checks whose fix the demo applies even when they only warn: our server's workers leave the port group,
 * and both ends' packets share the loopback queue.
 */
const ALSO_APPLIED = new Set(["migrate_req", "netdev_backlog"]);

/** As root, lifts the runtime sysctls the plan's failing checks name; says what it changed. */
function applyNeededSysctls(connections: number, targets: ReturnType<typeof loopbackTargets>): Applied[] {
  if (process.getuid?.() !== 0) return [];
  const { findings } = checkPlan({ role: "both", connections, targets }, readLimits());
  const needed = findings.filter((f) => f.status === "fail" || (f.status === "warn" && ALSO_APPLIED.has(f.id)));
  const applied = applySysctls(needed.flatMap((f) => f.sysctls ?? []));
  for (const a of applied) console.log(`sysctl ${describeChange(a)}`);
  return applied;
}

/** Puts back the settings the demo changed; leaves alone any that someone changed meanwhile. */
function restoreChangedSysctls(applied: Applied[]): void {
  for (const r of restoreSysctls(applied)) console.log(`sysctl restored ${describeChange(r)}`);
}

export function timelineTable(s: TimelineSummary): string {
  const p = s.perConnection;
  return renderTable(
    ["per connection at the peak", "bytes"],
    [
      ["system memory used (MemTotal - MemAvailable, above the baseline)", kib(p.system)],
      ["kernel slab growth (sockets, both ends)", kib(p.kernelSlab)],
      ["server processes' RSS growth", kib(p.serverGrowth)],
      ["load processes' RSS growth", kib(p.loadGrowth)],
    ],
    { align: ["left", "right"] },
  );
}

/** The load processes' resident memory before they dialled. */
const loadBaseRss = (r: LoadReport) => r.workers.reduce((sum, w) => sum + w.baseRssBytes, 0);

function writeRun(dir: string, report: LoadReport, timeline: Timeline, applied: Applied[]): void {
  mkdirSync(dir, { recursive: true });
  const summary = timeline.summary(loadBaseRss(report));
  writeFileSync(join(dir, "demo.json"), JSON.stringify({ schema: "wsmillion.demo/1", summary, applied, timeline: timeline.samples, load: report }, null, 2) + "\n");
  const rows = timeline.samples.map((x) => [
    x.t.toFixed(0),
    x.phase,
    fmt(x.open),
    x.serverConns < 0 ? "-" : fmt(x.serverConns),
    fmt(x.failed),
    `${(x.memUsedBytes / 2 ** 30).toFixed(2)}`,
    (x.serverCpuCores + x.loadCpuCores).toFixed(2),
    x.rttP99Ms ? x.rttP99Ms.toFixed(1) : "-",
  ]);
  // The million run's resets were traced by hand to these counters: the written report keeps them too.
  const kernel = kernelSection(report.kernel, failedOrDropped(report)).slice(1);
  const md = [
    `# wsmillion demo: ${fmt(report.plan.connections)} connections`,
    "",
    `Ramp ${report.connections.rampSeconds.toFixed(1)} s, peak ${fmt(summary.peakOpen)} open, ${fmt(report.connections.failed)} failed, ` +
      `${summary.steadyMismatches} of ${summary.steadyCompared} steady-state samples where the server's /conns differed from our count ` +
        `(samples where the two were taken more than a second apart are not compared).`,
    "",
    "```",
    timelineTable(summary),
    "```",
    "",
    "```",
    renderTable(["t s", "phase", "open (ours)", "open (/conns)", "failed", "mem GiB", "cpu cores", "rtt p99 ms"], rows, { align: ["right", "left", "right", "right", "right", "right", "right", "right"] }),
    "```",
    "",
    ...(kernel.length > 0 ? ["```", ...kernel, "```", ""] : []),
  ].join("\n");
  writeFileSync(join(dir, "demo.md"), md);
  writeFileSync(join(dir, "demo.svg"), timelineSvg(timeline.samples, `wsmillion demo: ${fmt(report.plan.connections)} connections on one machine`));
}

/**
 * The default traffic round offers at most this share of the echoes the model says the box drives with both
 * ends on it: a first run on a small box must end with its plan met, and the model is a mean, not a bound.
 */
const TRAFFIC_SHARE = 0.5;
/** Intervals a person would pick (ms). */
const ROUND_INTERVALS = [100, 200, 250, 500, 1000, 2000, 2500, 5000, 10_000, 20_000, 30_000, 60_000];

/** The shortest round interval at which `connections` offer at most TRAFFIC_SHARE of what `cores` drive. */
export function defaultInterval(connections: number, cores: number): number {
  const ms = (connections * 1000) / (echoCapacity(cores) * TRAFFIC_SHARE);
  return ROUND_INTERVALS.find((r) => r >= ms) ?? ROUND_INTERVALS.at(-1)!;
}

/** What the demo runs, sized to this machine before anything starts. */
interface DemoSetup {
  connections: number;
  /** Each connection sends every intervalMs in the traffic round. */
  intervalMs: number;
  /** The server's pings and idle timeout: what the user gave, the rest scaled with the connections. */
  liveness: Liveness;
  pairs: number;
  targets: Target[];
  nofile: number;
}

function sizeDemo(f: DemoFlags): DemoSetup {
  const limits = readLimits();
  const wanted = f.connections ?? DEFAULT_CONNECTIONS;
  // Spread over enough loopback destination addresses that no pair's port range gets crowded.
  const pairs = pairsFor(wanted, limits);
  const targets = loopbackTargets(pairs, SERVER_DEFAULTS.port);
  const fits = capacityFor({ role: "both", connections: wanted, targets }, limits).both;
  const connections = f.connections ?? Math.min(DEFAULT_CONNECTIONS, Math.floor(fits.max));
  const nofile = workerNofile(limits);
  const cores = limits.cores.value ?? 1;
  const intervalMs = f.interval ?? defaultInterval(connections, cores);
  console.log(`wsmillion demo: server and load generator on this machine, ${fmt(connections)} connections`);
  console.log(
    `limits: open files ${fmt(nofile)} per process, ephemeral ports ${fmt(portsPerPair(limits))} per destination, ` +
      `${fmt(limits.cores.value ?? 0)} cores, ${fmt((limits.memAvailable.value ?? 0) / 2 ** 30)} GiB available; ` +
      `this box holds about ${fmt(fits.max)} connections with both ends on it (binding: ${fits.binding}); run \`wsmillion doctor\` for details`,
  );
  if (f.interval === undefined) {
    console.log(
      `traffic: every ${fmt(intervalMs)} ms per connection, ${fmt((connections * 1000) / intervalMs)} msg/s: at most half of the ` +
        `${fmt(echoCapacity(cores))} echoes/s the capacity model gives ${cores} cores with both ends here (${COSTS.echoCpuMicros} µs of CPU per echo, measured); --interval sets it`,
    );
  }
  const liveness = chooseLiveness(connections, { pingInterval: f.pingInterval, idleTimeout: f.idleTimeout });
  if (f.pingInterval === undefined || f.idleTimeout === undefined) console.log(livenessLine(connections, liveness));
  return { connections, intervalMs, liveness, pairs, targets, nofile };
}

/** The local server, then the load against it; prints the report and the verdict, returns the exit code. */
async function runDemo(f: DemoFlags, setup: DemoSetup, applied: Applied[], abort: AbortController, progress: ProgressPrinter): Promise<number> {
  const { connections, intervalMs, pairs, targets, nofile } = setup;
  const server = await startServer(
    {
      ...SERVER_DEFAULTS,
      host: pairs > 1 ? "0.0.0.0" : "127.0.0.1",
      port: 0,
      maxConns: connections,
      pingInterval: setup.liveness.pingInterval,
      idleTimeout: setup.liveness.idleTimeout,
      // The clients are ours: no slow-loris to guard against, and at a million dials queue for seconds.
      handshakeTimeout: DEMO_HANDSHAKE_TIMEOUT_S,
      quiet: true,
    },
    { nofileSoft: nofile, log: (l) => console.error(l) },
  );
  console.log(`server: ws://127.0.0.1:${server.port}/ws, ${server.sizing.initial} workers, ${fmt(server.sizing.perWorker)} connections each`);
  const plan = completePlan(
    {
      targets: targets.map((t) => ({ ...t, port: server.port })),
      connections,
      concurrency: f.concurrency,
      durationS: f.duration,
      holdS: f.hold,
      intervalMs,
      size: f.size,
      mode: "echo",
      handshakeTimeoutMs: DEMO_HANDSHAKE_TIMEOUT_S * 1000,
      statusUrl: `http://127.0.0.1:${server.port}/conns`,
    },
    nofile,
  );
  console.log(
    `load: ${plan.workers} workers over ${pairs} destination address${pairs > 1 ? "es" : ""}; then ${f.size} B every ${intervalMs} ms per connection for ${f.duration} s` +
      (f.hold > 0 ? `, then ${f.hold} s idle` : ""),
  );
  const timeline = new Timeline(() => fetch(`http://127.0.0.1:${server.port}/stats`).then((r) => r.json()));
  await timeline.start();
  // One sample at a time, in order, even when a cluster-wide /stats takes longer than a second.
  let sampling = Promise.resolve();
  const report = await runLoad(plan, {
    signal: abort.signal,
    onProgress: (s) => {
      progress.update(s);
      const takenAt = performance.now();
      sampling = sampling.then(() => timeline.record(s, takenAt));
    },
    onPhase: () => progress.settle(),
  });
  await sampling;
  progress.settle();
  console.log(renderLoadReport(report));
  const summary = timeline.summary(loadBaseRss(report));
  console.log(timelineTable(summary));
  console.log(`server ${finalLine(await server.stop())}`);
  if (f.out) {
    writeRun(f.out, report, timeline, applied);
    console.log(`wrote ${join(f.out, "demo.json")}, demo.md and demo.svg`);
  }
  if (abort.signal.aborted) {
    console.log(`\ndemo: interrupted at ${fmt(summary.peakOpen)} of ${fmt(connections)} connections open at the most, ${fmt(report.connections.failed)} failed`);
    return 130;
  }
  const t = report.traffic;
  const v = report.verdict;
  console.log(
    `\ndemo: ${fmt(report.connections.openAtRamp)} of ${fmt(connections)} connections held, ${fmt(report.connections.failed)} failed, ` +
      `${summary.steadyMismatches} of ${summary.steadyCompared} steady samples where /conns differed; ` +
      `traffic: ${fmt(t.achievedPerSec)} of ${fmt(t.offeredPerSec)} msg/s offered were driven; ` +
      (v.met ? "plan met" : `plan NOT met: ${v.reasons.join("; ")}`),
  );
  return v.exitCode;
}

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("the main job on this machine: a local server, connections ramped to what fits, a round of traffic, the report")
    .option("--connections <n>", `connections to ramp to (default ${fmt(DEFAULT_CONNECTIONS)} or what the limits allow)`, integer("--connections", 1, 10_000_000))
    .option("--interval <ms>", "traffic round: each connection sends every <ms> (default: what this machine drives, at most half of it)", integer("--interval", 1, 3_600_000))
    .option("--size <bytes>", "traffic round: payload bytes", bytes("--size", 12, 1 << 20), 100)
    .option("--duration <s>", "traffic round: seconds", integer("--duration", 1, 3600), 10)
    .option("--hold <s>", "after the traffic: hold the connections idle this long (server pings flowing)", integer("--hold", 0, 86_400), 0)
    .option("--concurrency <n>", "dials in flight at once", integer("--concurrency", 1, 100_000), 2000)
    .option("--ping-interval <s>", `server: ping every connection this often (default ${SERVER_DEFAULTS.pingInterval}, longer past ${count(SERVER_DEFAULTS.pingInterval * PING_BUDGET_PER_SEC)} connections: at most ${count(PING_BUDGET_PER_SEC)} pings/s)`, integer("--ping-interval", 0, 3600))
    .option("--idle-timeout <s>", "server: close connections silent this long (default: 4 ping intervals, at least 120)", integer("--idle-timeout", 0, 86_400))
    .option("--out <dir>", "write demo.json (timeline, memory split, load report), demo.md and demo.svg (chart) there")
    .action(async (f: DemoFlags) => {
      const setup = sizeDemo(f);
      const liveness = livenessProblem(setup.liveness.pingInterval, setup.liveness.idleTimeout);
      if (liveness) throw new UsageError(liveness);
      const progress = new ProgressPrinter(process.stderr, Boolean(process.stderr.isTTY));
      // Installed before any sysctl is changed: from the first change on, a Ctrl-C must reach the restore.
      const abort = new AbortController();
      const onInterrupt = (): void => {
        progress.settle();
        console.error("wsmillion demo: interrupted; closing connections, then putting the sysctls back");
        abort.abort();
      };
      process.once("SIGINT", onInterrupt);
      const applied = applyNeededSysctls(setup.connections, setup.targets);
      try {
        process.exitCode = abort.signal.aborted ? interruptedBeforeStart(setup) : await runDemo(f, setup, applied, abort, progress);
      } finally {
        process.off("SIGINT", onInterrupt);
        restoreChangedSysctls(applied);
      }
    });
}

function interruptedBeforeStart(setup: DemoSetup): number {
  console.log(`\ndemo: interrupted before the server started, 0 of ${fmt(setup.connections)} connections opened`);
  return 130;
}
