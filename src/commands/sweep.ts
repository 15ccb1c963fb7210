// `wsmillion sweep`: rounds (preset, file or flag matrix, or --find-max) -> runSweep -> report.md,
// report.json and report.html in --out, with a live progress line and the table at the end.
import type { Command } from "commander";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { renderHtml } from "../report/sweep-html.ts";
import { renderRoundList, roundList } from "../report/sweep-list.ts";
import { renderMarkdown, renderRoundsTable } from "../report/sweep-md.ts";
import { SweepProgress, roundEndLine } from "../report/sweep-progress.ts";
import { CRITERIA_DEFAULTS } from "../sweep/criteria.ts";
import {
  FIND_MAX_WHATS, PRESETS, classicPreset, findMaxStart, matrixParsers, matrixRounds, offered, roundLabel, roundsFromFile, type PresetName,
} from "../sweep/rounds.ts";
import type { RemoteTarget } from "../sweep/round.ts";
import { machineCapacity, runSweep, type FindMaxSettings, type SweepOptions } from "../sweep/sweep.ts";
import type { Criteria, FindMaxWhat, SweepReport } from "../sweep/schema.ts";
import { portsPerPair } from "../system/capacity.ts";
import { readLimits, type Limits } from "../system/limits.ts";
import { parseTargets, parseWsUrl } from "../system/targets.ts";
import { UsageError, choice, decimal, integer, workers } from "../flags.ts";
import { count } from "../format.ts";

export const SWEEP_DEFAULTS = {
  connections: [1000],
  size: [100],
  interval: [100],
  duration: 20,
  cooldown: 5,
  out: "./wsmillion-report",
  mode: "echo" as const,
  step: 1.5,
  maxRounds: 12,
  refine: 2,
  concurrency: 2000,
  path: "/ws",
};

export interface SweepFlags {
  preset?: PresetName;
  scale?: number;
  rounds?: string;
  connections?: number[];
  size?: number[];
  interval?: number[];
  duration: number;
  cooldown: number;
  out: string;
  target?: string;
  path?: string;
  mode: "echo" | "send";
  findMax?: FindMaxWhat | true;
  step: number;
  maxRounds: number;
  refine: number;
  maxErrors: number;
  maxP99: number;
  maxLateness: number | "interval";
  minAchieved: number;
  tripAfter: number;
  concurrency: number;
  loadWorkers: number | "auto";
  serverWorkers: number | "auto";
  quiet?: boolean;
  list?: boolean;
  json?: boolean;
}

function lateness(raw: string): number | "interval" {
  return raw === "interval" ? "interval" : decimal("--max-lateness", 0.001)(raw);
}

function remoteTarget(spec: string, pathFlag: string | undefined): RemoteTarget {
  const url = /^wss?:\/\//i.test(spec) ? parseWsUrl(spec, "--target") : { targets: parseTargets(spec, "--target"), path: null };
  const targets = url.targets;
  const path = pathFlag ?? url.path ?? SWEEP_DEFAULTS.path;
  if (!path.startsWith("/")) throw new UsageError(`--path must start with '/', got '${path}'`);
  return { spec, targets, path };
}

/** Flags -> SweepOptions; every conflict is a one-line UsageError. */
export function sweepOptions(f: SweepFlags, limits = readLimits(), argv: readonly string[] = process.argv.slice(2)): { options: SweepOptions; notes: string[] } {
  refuseConflicts(f);
  const notes: string[] = [];
  const target = f.target ? remoteTarget(f.target, f.path) : null;
  const chosen = chosenRounds(f, limits, target === null);
  const findMax: FindMaxSettings | null = f.findMax === undefined
    ? null
    : { what: f.findMax === true ? "connections" : f.findMax, step: f.step, maxRounds: f.maxRounds, refine: f.refine };
  const rounds = findMax ? [findMaxStart(chosen.rounds[0]!, findMax.what)] : chosen.rounds;
  if (findMax && chosen.rounds.length > 1) {
    notes.push(`--find-max starts from the first round (${roundLabel(rounds[0]!)}) and steps up ×${f.step}; the other ${chosen.rounds.length - 1} are not run`);
  }
  const warning = capacityWarning(Math.max(...rounds.map((r) => r.connections)), target, limits);
  if (warning) notes.push(warning);
  const criteria: Criteria = {
    maxErrorPct: f.maxErrors,
    maxP99Ms: f.maxP99,
    maxLatenessMs: f.maxLateness,
    minAchievedPct: f.minAchieved,
    tripAfterS: f.tripAfter,
  };
  return {
    notes,
    options: {
      rounds,
      source: findMax ? "find-max" : chosen.source,
      preset: chosen.preset,
      durationS: f.duration,
      cooldownS: f.cooldown,
      criteria,
      mode: f.mode,
      concurrency: f.concurrency,
      loadWorkers: f.loadWorkers,
      serverWorkers: f.serverWorkers,
      target,
      findMax,
      command: ["wsmillion", ...argv].join(" "),
      limits,
    },
  };
}

const matrixGiven = (f: SweepFlags): boolean => f.connections !== undefined || f.size !== undefined || f.interval !== undefined;

function refuseConflicts(f: SweepFlags): void {
  if (f.preset && f.rounds) throw new UsageError("give either --preset or --rounds, not both");
  if ((f.preset || f.rounds) && matrixGiven(f)) throw new UsageError(`--connections/--size/--interval build rounds themselves; drop them, or drop --${f.preset ? "preset" : "rounds"}`);
  if (f.scale !== undefined && f.preset === undefined && (matrixGiven(f) || f.rounds)) throw new UsageError("--scale applies to a --preset only");
  if (f.path !== undefined && !f.target) throw new UsageError("--path goes with --target (a local server always serves /ws)");
  // Closed loop sends the next message when an echo returns; with --mode send none ever does.
  if (f.findMax === "rate" && f.mode === "send") throw new UsageError("--find-max rate runs closed loop, which needs echoes: drop --mode send");
  if (f.list && f.findMax !== undefined) throw new UsageError("--list shows a list of rounds; --find-max picks each level from the last one's verdict, so there is none to show");
  if (f.json && !f.list) throw new UsageError("--json goes with --list (a sweep always writes report.json in --out)");
}

/** The rounds from --rounds, the flag matrix or the preset (the default, except that --find-max alone starts from the matrix defaults). */
function chosenRounds(f: SweepFlags, limits: Limits, local: boolean): Pick<SweepOptions, "rounds" | "source" | "preset"> {
  if (f.rounds) return { rounds: roundsFromFile(f.rounds), source: "file", preset: null };
  if (matrixGiven(f) || (f.preset === undefined && f.findMax !== undefined)) {
    const d = SWEEP_DEFAULTS;
    return { rounds: matrixRounds(f.connections ?? d.connections, f.size ?? d.size, f.interval ?? d.interval), source: "matrix", preset: null };
  }
  const p = classicPreset({
    cores: limits.cores.value ?? 1,
    local,
    scale: f.scale,
    // Leave a fifth of what the limits allow unused: a sweep measures a machine, it should not exhaust it.
    capacity: (n) => machineCapacity(limits, local, n) * 0.8,
  });
  return { rounds: p.rounds, source: "preset", preset: { name: p.name, scale: p.scale, rule: p.rule } };
}

/** A warning when the largest round needs more than this machine (local) or the destination pairs' ports hold. */
function capacityWarning(biggest: number, target: RemoteTarget | null, limits: Limits): string | null {
  if (!target) {
    const cap = machineCapacity(limits, true, biggest);
    if (biggest <= cap) return null;
    return `warning: a round asks for ${count(biggest)} connections; with server and load on this machine its limits hold about ${count(cap)} (see \`wsmillion doctor --connections ${biggest}\`)`;
  }
  const pairs = target.targets.length;
  if (biggest <= pairs * portsPerPair(limits)) return null;
  return `warning: ${count(biggest)} connections over ${pairs} destination pair${pairs > 1 ? "s" : ""} exceed the ephemeral ports (${count(portsPerPair(limits))} per pair); give --target a range such as 127.0.0.1-8:PORT`;
}

/** Writes report.md, report.json and report.html into `dir`; returns their paths. */
export function writeReport(report: SweepReport, dir: string): { md: string; json: string; html: string } {
  mkdirSync(dir, { recursive: true });
  const paths = { md: join(dir, "report.md"), json: join(dir, "report.json"), html: join(dir, "report.html") };
  writeFileSync(paths.json, JSON.stringify(report, null, 2) + "\n");
  writeFileSync(paths.md, renderMarkdown(report));
  writeFileSync(paths.html, renderHtml(report));
  return paths;
}

export function registerSweep(program: Command): void {
  const d = SWEEP_DEFAULTS;
  const c = CRITERIA_DEFAULTS;
  program
    .command("sweep")
    .description("run rounds of N connections × B bytes every T ms against a local server (or --target), sample everything each second, write report.md/.json/.html")
    .option("--preset <name>", `built-in rounds: ${PRESETS.join(", ")} (the field report's 13 rounds scaled to this machine; the default when no rounds are given)`, choice("--preset", PRESETS))
    .option("--scale <factor>", "preset: multiply its connections by this instead of the machine-derived scale", decimal("--scale", 0.0001, 100))
    .option("--rounds <file>", "rounds from a JSON or YAML file: a list of { connections, size, interval, duration? }")
    .option("--connections <list>", `matrix: connection counts, comma-separated (default ${d.connections.join(",")})`, matrixParsers.connections)
    .option("--size <list>", `matrix: payload sizes in bytes (100, 1k...), comma-separated (default ${d.size.join(",")})`, matrixParsers.size)
    .option("--interval <list>", `matrix: ms between a connection's sends, comma-separated (default ${d.interval.join(",")})`, matrixParsers.interval)
    .option("--duration <s>", "seconds of traffic per round", integer("--duration", 1, 86_400), d.duration)
    .option("--cooldown <s>", "seconds between rounds (the machine is still sampled)", integer("--cooldown", 0, 3600), d.cooldown)
    .option("--out <dir>", "directory for report.md, report.json, report.html", d.out)
    .option("--target <url>", "aim at this server instead of a local one per round: ws://host:port/path or a spec such as 127.0.0.1-8:8080")
    .option("--path <path>", `with --target: the WebSocket path when the URL has none (default ${d.path})`)
    .option("--mode <mode>", "echo (round trips measured; local server echoes) or send (fire and forget; local server sinks)", choice("--mode", ["echo", "send"] as const), d.mode)
    .option(
      "--find-max [what]",
      `${FIND_MAX_WHATS.join(" or ")} (default connections): raise connections from the first round until the criteria fail; or, for rate, keep its connections ` +
        "in closed loop with more messages in flight each level until the rate stops growing or the criteria fail",
      choice("--find-max", FIND_MAX_WHATS),
    )
    .option("--step <factor>", "find-max: each level is this many times the last", decimal("--step", 1.01, 100), d.step)
    .option("--max-rounds <n>", "find-max: at most this many rounds", integer("--max-rounds", 1, 1000), d.maxRounds)
    .option("--refine <n>", "find-max connections: rounds halfway between the last level that held and the first that failed", integer("--refine", 0, 20), d.refine)
    .option("--max-errors <pct>", "criterion: failed + missing + dropped connections, % of the target", decimal("--max-errors", 0, 100), c.maxErrorPct)
    .option("--max-p99 <ms>", "criterion: echo round trip p99", decimal("--max-p99", 0.001), c.maxP99Ms)
    .option("--max-lateness <ms|interval>", "criterion: send lateness p99, the generator behind its schedule (interval: the round's interval)", lateness, c.maxLatenessMs)
    .option("--min-achieved <pct>", "criterion: achieved send rate, % of offered", decimal("--min-achieved", 0, 100), c.minAchievedPct)
    .option("--trip-after <s>", "a latency criterion stops a round after this many seconds in a row over its limit", integer("--trip-after", 1, 3600), c.tripAfterS)
    .option("--concurrency <n>", "dials in flight at once during a ramp", integer("--concurrency", 1, 100_000), d.concurrency)
    .option("--load-workers <auto|n>", "load generator processes per round (auto: as few as the open-files limit allows)", workers("--load-workers"), "auto")
    .option("--server-workers <auto|n>", "local server worker processes (auto: one per core, more when connections need them)", workers("--server-workers"), "auto")
    .option("--quiet", "no live progress line; the table and findings at the end only")
    .option("--list", "print the rounds as they would run on this machine (scaled, for a preset) and exit without running them")
    .option("--json", "with --list: one JSON document instead of the table")
    .action(runSweepCommand);
}

/** The command itself: the plan said aloud, the rounds with a live line, then the table, conclusions and files; or with --list the rounds only. */
async function runSweepCommand(f: SweepFlags): Promise<void> {
  const { options: o, notes } = sweepOptions(f);
  if (f.list) {
    for (const n of notes) console.error(n);
    const list = roundList(o.rounds, o.source, o.preset);
    process.stdout.write(f.json ? JSON.stringify(list, null, 2) + "\n" : renderRoundList(list));
    return;
  }
  const out = resolve(f.out);
  const progress = new SweepProgress(process.stderr, Boolean(process.stderr.isTTY));
  const say = (line: string) => (f.quiet ? undefined : progress.say(line));
  for (const n of notes) progress.say(n);
  announce(o, out, say);

  const abort = new AbortController();
  const onSignal = (): void => {
    if (abort.signal.aborted) process.exit(130);
    progress.say("wsmillion sweep: interrupted; closing this round and writing the report (Ctrl-C again to quit now)");
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let report: SweepReport;
  try {
    report = await runSweep(o, {
      signal: abort.signal,
      onSample: f.quiet ? undefined : (s, v) => progress.update(s, v),
      onRoundEnd: (r) => say(roundEndLine(r)),
      onLog: (l) => progress.say(l),
    });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  progress.settle();
  const paths = writeReport(report, out);
  console.log("");
  console.log(renderRoundsTable(report));
  console.log("");
  for (const line of report.findings) console.log(`- ${line}`);
  console.log("");
  console.log(`wrote ${paths.md}, ${paths.json}, ${paths.html}`);
  process.exitCode = report.interrupted ? 1 : 0;
}

/** What is about to run, where, and (without --find-max) every round with its offered rate. */
function announce(o: SweepOptions, out: string, say: (line: string) => void): void {
  const what = o.findMax ? `find-max (${o.findMax.what}) from ${roundLabel(o.rounds[0]!)}, up to ${o.findMax.maxRounds} rounds` : `${o.rounds.length} round${o.rounds.length > 1 ? "s" : ""}`;
  say(`wsmillion sweep: ${what}, ${o.durationS} s of ${o.mode} traffic each, against ${o.target ? o.target.spec : "a fresh local server per round"}; report in ${out}`);
  if (o.preset) say(`preset ${o.preset.name}, scale ${o.preset.scale}: ${o.preset.rule}`);
  if (!o.findMax) {
    for (const [i, r] of o.rounds.entries()) say(`  R${i + 1}: ${roundLabel(r)} (${count(offered(r))} msg/s offered)`);
  }
}
