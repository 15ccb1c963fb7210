// The conclusions a sweep draws from its rounds (report.json's `findings`, named apart from the doctor's
// checks in system/findings.ts): which held, what a message and a connection cost the server, whether send
// frequency or payload size grew that cost, memory per connection, the load average, and whether the
// generator (not the server) was the limit. A classic sweep tests the field report's own four conclusions
// on its round pairs instead of the generic pairs. Only what the data supports is said.
import { bytes, count, shortMs } from "../format.ts";
import { latenessLimit, latenessRule } from "./criteria.ts";
import { CLASSIC_CORES } from "./rounds.ts";
import type { Criteria, MachineInfo, RoundResult, SweepReport } from "./schema.ts";

const dec = (v: number, d = 1) => v.toFixed(d);
const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;
/** An extrapolated count to three significant digits: its precision is no better. */
const approx = (n: number) => count(Number(n.toPrecision(3)));
const us = (v: number) => `${v >= 10 ? v.toFixed(0) : v.toFixed(1)} µs`;
/** µs to a tenth: comparisons of close figures need the decimal. */
const us1 = (v: number) => `${v.toFixed(1)} µs`;
const ms = (v: number) => `${shortMs(v)} ms`;
const plural = (n: number, one: string) => `${n} ${one}${n > 1 ? "s" : ""}`;
const signed = (v: number) => `${v >= 0 ? "+" : ""}${Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(1)}%`;
/** b against a, in percent. */
const change = (a: number, b: number) => (b / a - 1) * 100;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? 0 : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function range(xs: number[], f: (v: number) => string): string {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return f(lo) === f(hi) ? f(lo) : `${f(lo)}-${f(hi)}`;
}

const R = (r: RoundResult) => `R${r.index}`;

/** Solves the normal equations of y ≈ X·b by Gaussian elimination; null when the columns are collinear. */
export function leastSquares(rows: number[][], y: number[]): number[] | null {
  const k = rows[0]?.length ?? 0;
  if (rows.length <= k) return null;
  const a = Array.from({ length: k }, (_, i) => [
    ...Array.from({ length: k }, (_, j) => rows.reduce((s, r) => s + r[i]! * r[j]!, 0)),
    rows.reduce((s, r, n) => s + r[i]! * y[n]!, 0),
  ]);
  for (let col = 0; col < k; col++) {
    let pivot = col;
    for (let r = col + 1; r < k; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[pivot]![col]!)) pivot = r;
    const scale = Math.max(...a.map((r) => Math.abs(r[col]!)), 1e-300);
    if (Math.abs(a[pivot]![col]!) < 1e-9 * scale) return null;
    [a[col], a[pivot]] = [a[pivot]!, a[col]!];
    for (let r = 0; r < k; r++) {
      if (r === col) continue;
      const f = a[r]![col]! / a[col]![col]!;
      for (let c = col; c <= k; c++) a[r]![c]! -= f * a[col]![c]!;
    }
  }
  return a.map((r, i) => r[k]! / r[i]!);
}

export interface CpuModel {
  /** Cores the server spends with no traffic (its timers, stats, pings). */
  fixedCores: number;
  /** µs of server CPU per message received (per echo, for echo traffic). */
  microsPerMessage: number;
  /** µs per KiB of payload received, when payload sizes varied. */
  microsPerKiB: number | null;
  /** µs per second per open connection apart from its messages, when connection counts varied. */
  microsPerConnection: number | null;
  rounds: number;
}

/**
 * Server CPU ≈ fixed + a·messages/s [+ b·KiB/s] [+ c·connections], fitted over the rounds that applied
 * their load. A term enters only when its figure varied and the fit stays solvable; rounds that saturated
 * the machine are left out because their CPU says what was available, not what the load cost.
 */
export function fitCpu(rounds: RoundResult[]): CpuModel | null {
  const pts = rounds.filter((r) => r.server && r.server.msgsInPerSec > 0);
  const varies = (f: (r: RoundResult) => number) => {
    const v = pts.map(f);
    return Math.max(...v) > Math.min(...v) * 1.01;
  };
  const msgs = (r: RoundResult) => r.server!.msgsInPerSec;
  const kib = (r: RoundResult) => (r.server!.msgsInPerSec * r.size) / 1024;
  const conns = (r: RoundResult) => r.outcome.openAtRamp;
  if (pts.length < 2 || !varies(msgs)) return null;
  const y = pts.map((r) => r.server!.cpuCores * 1e6);
  const tries: ((r: RoundResult) => number)[][] = [];
  const withKib = varies((r) => r.size);
  const withConns = varies(conns);
  if (withKib && withConns) tries.push([msgs, kib, conns]);
  if (withKib) tries.push([msgs, kib]);
  if (withConns) tries.push([msgs, conns]);
  tries.push([msgs]);
  for (const cols of tries) {
    // Two rounds per fitted figure at least, or the fit follows the noise.
    if (pts.length < 2 * (cols.length + 1) && cols.length > 1) continue;
    if (pts.length < cols.length + 2) continue;
    const b = leastSquares(pts.map((r) => [1, ...cols.map((f) => f(r))]), y);
    if (!b || b[1]! <= 0) continue;
    const at = (f: (r: RoundResult) => number) => (cols.includes(f) ? b[1 + cols.indexOf(f)]! : null);
    return { fixedCores: Math.max(0, b[0]! / 1e6), microsPerMessage: b[1]!, microsPerKiB: at(kib), microsPerConnection: at(conns), rounds: pts.length };
  }
  return null;
}

/** A round whose traffic was applied as planned, so its CPU reflects the plan rather than a saturated box. */
function applied(r: RoundResult, minAchievedPct: number): boolean {
  return r.server !== null && r.server.cpuCores > 0 && r.traffic.achievedPerSec >= (r.offeredPerSec * minAchievedPct) / 100;
}

interface Effect {
  pairs: number;
  /** Mean factor the varied quantity changed by, and mean factor of server CPU. */
  factor: number;
  cpuFactor: number;
  /** ln(cpu ratio) / ln(factor): 1 means CPU grew in proportion. */
  elasticity: number;
  example: string;
}

/** Pairs of rounds equal in everything but `vary`, heavier over lighter, CPU counted above `fixedCores`. */
function effect(rounds: RoundResult[], vary: "intervalMs" | "size" | "connections", fixedCores: number): Effect | null {
  const same = (a: RoundResult, b: RoundResult) =>
    (vary === "connections" || a.connections === b.connections) && (vary === "size" || a.size === b.size) && (vary === "intervalMs" || a.intervalMs === b.intervalMs);
  const ratios: { factor: number; cpu: number; a: RoundResult; b: RoundResult }[] = [];
  for (let i = 0; i < rounds.length; i++) {
    for (let j = 0; j < rounds.length; j++) {
      const a = rounds[i]!;
      const b = rounds[j]!;
      if (a === b || !same(a, b)) continue;
      // b is the heavier: more connections, a bigger payload, or a shorter interval.
      const factor = vary === "intervalMs" ? a.intervalMs / b.intervalMs : vary === "size" ? b.size / a.size : b.connections / a.connections;
      // Compared above the no-traffic CPU, which neither round's load caused.
      const ca = a.server!.cpuCores - fixedCores;
      const cb = b.server!.cpuCores - fixedCores;
      if (factor <= 1 || ca <= 0 || cb <= 0) continue;
      ratios.push({ factor, cpu: cb / ca, a, b });
    }
  }
  if (ratios.length === 0) return null;
  const factor = Math.exp(ratios.reduce((s, r) => s + Math.log(r.factor), 0) / ratios.length);
  const cpuFactor = Math.exp(ratios.reduce((s, r) => s + Math.log(r.cpu), 0) / ratios.length);
  const elasticity = ratios.reduce((s, r) => s + Math.log(r.cpu) / Math.log(r.factor), 0) / ratios.length;
  const e = ratios[0]!;
  return { pairs: ratios.length, factor, cpuFactor, elasticity, example: `${R(e.a)} → ${R(e.b)}` };
}


/** Every conclusion the rounds support, in reading order: verdicts first, causes next, side notes last. */
export function drawConclusions(report: SweepReport): string[] {
  const rounds = report.rounds;
  if (rounds.length === 0) return ["No round ran."];
  const c = report.settings.criteria;
  const echo = report.settings.mode === "echo";
  const measured = rounds.filter((r) => r.server && r.server.cpuMicrosPerMessage > 0);
  const model = fitCpu(rounds.filter((r) => applied(r, c.minAchievedPct)));
  const classic = report.settings.source === "preset" && report.settings.preset?.name === "classic";
  const said = [
    verdicts(rounds, c),
    report.findMax ? findMaxAnswer(report.findMax, rounds) : null,
    serverCostPerMessage(measured, echo),
    report.settings.target === "local" ? generatorShare(measured, echo, report.machine.cores) : null,
    model ? fittedCost(model, echo) : null,
    ...(classic ? fieldReportTested(report) : genericPairs(report, model)),
    generatorBehind(rounds.filter((r) => !r.held), c),
  ];
  return said.filter((line): line is string => line !== null);
}

/** Pairs of any rounds that differ in one thing, memory per connection, the load average. */
function genericPairs(report: SweepReport, model: CpuModel | null): (string | null)[] {
  const ok = report.rounds.filter((r) => applied(r, report.settings.criteria.minAchievedPct));
  const fixed = model?.fixedCores ?? 0;
  const freq = effect(ok, "intervalMs", fixed);
  const size = effect(ok, "size", fixed);
  const conns = effect(ok, "connections", fixed);
  return [
    frequencyOrPayload(freq, size),
    conns ? connectionsCost(conns) : null,
    !freq && !size && !conns && ok.length > 1 ? NO_PAIRS : null,
    memoryPerConnection(report.rounds),
    loadAverage(report.rounds, report.machine.cores),
  ];
}

const NO_PAIRS = "No two rounds that applied their load differ in one thing only, so the CPU cost is not split by cause (vary one flag at a time).";

/** How many rounds held against which criteria, the heaviest that held and the first to fail. */
function verdicts(rounds: RoundResult[], c: Criteria): string {
  const held = rounds.filter((r) => r.held);
  const criteria = `errors ≤ ${c.maxErrorPct}%, round trip p99 ≤ ${c.maxP99Ms} ms, send lateness p99 ≤ ${latenessRule(c)}, ≥ ${c.minAchievedPct}% of the offered rate`;
  let verdict = `${held.length} of ${rounds.length} rounds held (${criteria}).`;
  // Closed-loop rounds offer no rate of their own: what they achieved is their weight.
  const weight = (r: RoundResult) => r.offeredPerSec || r.traffic.achievedPerSec;
  const heaviest = [...held].sort((a, b) => weight(b) - weight(a) || b.connections - a.connections)[0];
  if (heaviest) verdict += ` Heaviest that held: ${R(heaviest)}, ${heaviest.label} (${count(heaviest.traffic.achievedPerSec)} msg/s).`;
  const firstFail = rounds.find((r) => !r.held);
  if (firstFail) verdict += ` First to fail: ${R(firstFail)}, ${firstFail.label}: ${firstFail.reasons[0]}.`;
  return verdict;
}

/** The answer of --find-max: the most that held (rate: the best rate moved), what failed above it, and why the search ended. */
function findMaxAnswer(f: NonNullable<SweepReport["findMax"]>, rounds: RoundResult[]): string {
  if (f.what === "rate") {
    if (!f.best) return `Find-max (rate, closed loop): no level held; ${f.ended}.`;
    const b = f.best;
    return (
      `Find-max (rate, closed loop at ${count(b.connections)} connections): the most moved was ${count(b.achievedPerSec)} msg/s with ${b.inFlight} in flight ` +
      `per connection (R${b.round}; round trip p50 ${ms(b.rttP50Ms)}, p99 ${ms(b.rttP99Ms)}). Search ended: ${f.ended}.`
    );
  }
  if (!f.lastHeld) return `Find-max (connections): no level held; ${f.ended}.`;
  const lh = rounds.find((r) => r.index === f.lastHeld!.round)!;
  return (
    `Find-max (connections): the most that held was ${lh.label} = ${count(lh.offeredPerSec)} msg/s offered (${R(lh)})` +
    (f.firstFailed ? `; ${rounds.find((r) => r.index === f.firstFailed!.round)!.label} failed (${f.firstFailed.reasons[0]})` : "") +
    `. Search ended: ${f.ended}.`
  );
}

/** Server CPU per message and per 1,000 connections, all in, over the rounds that measured it. */
function serverCostPerMessage(measured: RoundResult[], echo: boolean): string | null {
  if (measured.length === 0) return null;
  const per = measured.map((r) => r.server!.cpuMicrosPerMessage);
  const perK = measured.map((r) => r.server!.cpuCoresPerKiloConn);
  const verb = echo ? "echoed message (one in, one out)" : "message received";
  return (
    `Server CPU per ${verb}, all in: ${us(median(per))} median (${range(per, us)} over ${plural(measured.length, "round")}); ` +
    `per 1,000 connections ${range(perK, (v) => dec(v, 3))} cores at the rounds' traffic.`
  );
}

/** Said only when the generator, sharing this machine, cost more per message than the server. */
function generatorShare(measured: RoundResult[], echo: boolean, cores: number): string | null {
  const gen = measured.filter((r) => r.client.cpuMicrosPerMessage > 0);
  if (gen.length === 0) return null;
  const g = median(gen.map((r) => r.client.cpuMicrosPerMessage));
  // The server's figure is per echo, two messages moved; the generator's is per message moved.
  const srvMed = median(gen.map((r) => r.server!.cpuMicrosPerMessage)) / (echo ? 2 : 1);
  if (g <= srvMed) return null;
  return (
    `The generator spent ${us(g)} per message moved against the server's ${us(srvMed)} (all in): with both on this machine the load ` +
    `generator, not the server, takes the larger share of the ${plural(cores, "core")}.`
  );
}

/** The fitted split of server CPU: per message, per KiB and per connection, on top of idle. */
function fittedCost(model: CpuModel, echo: boolean): string {
  const parts = [`${us(model.microsPerMessage)} of server CPU per ${echo ? "echo" : "message"}`];
  if (model.microsPerKiB !== null) parts.push(model.microsPerKiB > 0 ? `${us(model.microsPerKiB)} per KiB of payload` : "nothing measurable per KiB of payload");
  if (model.microsPerConnection !== null) {
    parts.push(model.microsPerConnection > 0 ? `${us(model.microsPerConnection)} per second per connection beyond its messages` : "nothing measurable per connection beyond its messages");
  }
  return (
    `Fitted over ${plural(model.rounds, "round")} that applied their load: ${parts.join(", ")}, on top of ${dec(model.fixedCores, 2)} cores with no traffic ` +
    `(the workers' timers, stats and pings). The per-round figure above is all in, so it is highest at the lightest rounds.`
  );
}

/** Rounds compared in pairs: what more sends and bigger payloads did to server CPU, and which cost more. */
function frequencyOrPayload(freq: Effect | null, size: Effect | null): string | null {
  if (!freq && !size) return null;
  const parts: string[] = [];
  if (freq) parts.push(`${dec(freq.factor, freq.factor % 1 ? 1 : 0)}x the send frequency took ${dec(freq.cpuFactor, 2)}x the server CPU above idle (${plural(freq.pairs, "pair")}, e.g. ${freq.example})`);
  if (size) parts.push(`${dec(size.factor, size.factor % 1 ? 1 : 0)}x the payload took ${dec(size.cpuFactor, 2)}x (${plural(size.pairs, "pair")}, e.g. ${size.example})`);
  const line = parts.join("; ") + ".";
  if (!freq || !size) return line;
  return (
    (freq.elasticity > size.elasticity ? "Send frequency costs more CPU than payload size: " : "Payload size cost as much CPU as send frequency here: ") +
    line +
    ` Per doubling, frequency added ${dec((2 ** freq.elasticity - 1) * 100, 0)}% CPU, payload ${dec((2 ** size.elasticity - 1) * 100, 0)}%.`
  );
}

/** Rounds compared in pairs: what more connections at the same cadence did to server CPU. */
function connectionsCost(conns: Effect): string {
  return `${dec(conns.factor, 2)}x the connections at the same cadence took ${dec(conns.cpuFactor, 2)}x the server CPU above idle (${plural(conns.pairs, "pair")}, e.g. ${conns.example}).`;
}

/** Server RSS per connection after the ramp, or why there is no such figure. */
function memoryPerConnection(rounds: RoundResult[]): string | null {
  // Below a thousand connections the runtime's own growth (JIT, heap) swamps what the connections add.
  const mem = rounds.filter((r) => r.server && r.server.rssPerConnectionBytes > 0 && r.outcome.openAtRamp >= 1000);
  if (mem.length === 0) {
    return rounds.some((r) => r.server) ? "Every round had under 1,000 connections: too few for a per-connection memory figure (the runtime's own growth dominates)." : null;
  }
  const per = mem.map((r) => r.server!.rssPerConnectionBytes);
  const biggest = [...mem].sort((a, b) => b.connections - a.connections)[0]!;
  return (
    `A connection cost the server ${kib(median(per))} of RSS (median; ${range(per, kib)}), measured after each ramp; ` +
    `the largest round (${count(biggest.connections)} connections) peaked at ${mib(biggest.server!.peakRssBytes)} with traffic.`
  );
}

/** The highest 1-minute load average, and the rounds where runnable tasks outnumbered the cores. */
function loadAverage(rounds: RoundResult[], cores: number): string | null {
  const busiest = [...rounds].sort((a, b) => b.machine.load1Max - a.machine.load1Max)[0]!;
  if (!(busiest.machine.load1Max > 0)) return null;
  let line = `Load average (1 min) peaked at ${dec(busiest.machine.load1Max, 2)} on ${plural(cores, "core")} in ${R(busiest)}`;
  const over = rounds.filter((r) => r.machine.load1Max > cores);
  if (over.length > 0) {
    const overFailed = over.filter((r) => !r.held).length;
    line += `; it passed the core count in ${plural(over.length, "round")} (runnable tasks were queuing), ${overFailed} of which failed`;
  }
  return line + ". It trails the load by about a minute, so read it next to the busy cores (shown per second) rather than alone.";
}

/** Sends left a round's interval late (by default) or more: the generator, not the server, was behind. */
function fellBehind(r: RoundResult, c: Criteria): boolean {
  return r.latency.lateness.count > 0 && r.latency.lateness.p99Ms > latenessLimit(c, r.intervalMs);
}

/** Failed rounds where the generator fell behind its schedule: they measured the machine, not the server. */
function generatorBehind(failed: RoundResult[], c: Criteria): string | null {
  const late = failed.filter((r) => fellBehind(r, c));
  if (late.length === 0) return null;
  return (
    `In ${late.map(R).join(", ")} the generator fell behind its schedule (send lateness p99 up to ${ms(Math.max(...late.map((r) => r.latency.lateness.p99Ms)))}): ` +
    `those rounds measure what this machine does with both ends on it, not the server alone.`
  );
}

// The field report's conclusions, tested on a classic sweep. Rounds keep the report's numbers (R1-R13).

/** The report's round 1: about 960% of its 1,600% CPU for 4 x 10,000 connections echoing 100 B every 100 ms. */
const REPORT_R1 = { cpuCores: 9.6, msgsPerSec: 400_000 };

/** Payload "hardly moves" the CPU when a doubling of it adds less than this to the CPU per message, in percent. */
export const PAYLOAD_HARDLY_PCT = 10;
/** Frequency "moves it a lot" when a doubling of it adds at least this to the server's CPU, in percent (proportional: 100). */
export const FREQUENCY_A_LOT_PCT = 50;

/** The report's round number `n`, when it ran. */
const roundNo = (rounds: RoundResult[], n: number) => rounds.find((r) => r.index === n);

/**
 * Why a round cannot stand for the server in a comparison, or null when it can: it ran, the server's CPU
 * and messages were measured, and the generator applied the planned load (kept its schedule and reached
 * --min-achieved of the offered rate). A generator-limited round measured the machine, not the server.
 */
export function notComparable(r: RoundResult, c: Criteria): string | null {
  if (!r.server || r.server.cpuCores <= 0 || r.server.msgsInPerSec <= 0) return `${R(r)} has no server figures`;
  if (fellBehind(r, c) || !applied(r, c.minAchievedPct)) return `${R(r)} was generator-limited`;
  return null;
}

/** Two rounds of the report to compare, or why not. */
type Pair = { a: RoundResult; b: RoundResult } | { why: string };

function pair(rounds: RoundResult[], an: number, bn: number, c: Criteria): Pair {
  const a = roundNo(rounds, an);
  const b = roundNo(rounds, bn);
  if (!a || !b) return { why: `R${a ? bn : an} did not run` };
  const why = notComparable(a, c) ?? notComparable(b, c);
  return why ? { why } : { a, b };
}

const cores = (r: RoundResult) => r.server!.cpuCores;
const perMsg = (r: RoundResult) => r.server!.cpuMicrosPerMessage;
/** Growth per doubling of a quantity that changed by `factor` when the cost changed by `ratio`, in percent. */
const perDoubling = (ratio: number, factor: number) => (ratio ** (1 / Math.log2(factor)) - 1) * 100;
const mark = (ok: boolean) => (ok ? "confirmed" : "not confirmed");

/** A test of the report: its line, or null with what could not be compared and why. */
export interface Tested {
  line: string | null;
  omitted: string[];
}

const drawn = (line: string): Tested => ({ line, omitted: [] });
const notDrawn = (why: string): Tested => ({ line: null, omitted: [why] });

/** (a) The 1-minute load average against the cores in the rounds offering the most messages/s. */
export function loadAverageTest(rounds: RoundResult[], machine: Pick<MachineInfo, "cores">, durationS: number): Tested {
  const ran = rounds.filter((r) => r.machine.load1Max > 0);
  if (ran.length === 0) return notDrawn("(a): no load average was read");
  const top = Math.max(...ran.map((r) => r.offeredPerSec));
  const heaviest = ran.filter((r) => r.offeredPerSec === top);
  const over = heaviest.filter((r) => r.machine.load1Max > machine.cores);
  const confirmed = over.length * 2 >= heaviest.length;
  const each = heaviest.map((r) => `${R(r)} ${dec(r.machine.load1Max, 2)} (busy ${dec(r.machine.busyCoresMean, 2)})`).join(", ");
  // The kernel's 1-minute figure moves toward a new level by 1 - e^(-t/60) in t seconds.
  const reach = (1 - Math.exp(-durationS / 60)) * 100;
  return drawn(
    `Report (a), "watch the load average": ${mark(confirmed)}. In the heaviest rounds (${count(top)} msg/s offered) the 1-minute load average peaked at ${each} ` +
      `on ${plural(machine.cores, "core")}: ` +
      (confirmed ? "runnable tasks outnumbered the cores, the machine was saturated" : "it stayed under the cores, so here it warned of nothing") +
      (durationS < 60 ? `. A round of ${durationS} s moves it only ${dec(reach, 0)}% of the way to its level, so it understates short rounds.` : ".")
  );
}

/** (b) Memory per connection against CPU per connection: which of them this machine runs out of first. */
export function memoryVsCpuTest(rounds: RoundResult[], machine: Pick<MachineInfo, "cores" | "memTotalBytes">, c: Criteria): Tested {
  // Below a thousand connections the runtime's own growth (JIT, heap) swamps what the connections add.
  const mem = rounds.filter((r) => r.server && r.server.rssPerConnectionBytes > 0 && r.outcome.openAtRamp >= 1000);
  const cpu = rounds.filter((r) => notComparable(r, c) === null && r.outcome.openAtRamp > 0);
  if (mem.length === 0 || machine.memTotalBytes <= 0) return notDrawn("(b): no round of 1,000 connections or more measured the server's memory");
  if (cpu.length === 0) return notDrawn("(b): no round measured the server's CPU with the generator on schedule");
  const perConn = median(mem.map((r) => r.server!.rssPerConnectionBytes));
  const memConns = machine.memTotalBytes / perConn;
  const busiest = [...cpu].sort((a, b) => cores(b) - cores(a))[0]!;
  const cpuPerConn = cores(busiest) / busiest.outcome.openAtRamp;
  const cpuConns = machine.cores / cpuPerConn;
  const s = busiest.server!;
  const r1 = roundNo(rounds, 1);
  const vsReport =
    r1 && notComparable(r1, c) === null
      ? ` The report's round 1 ran at about ${dec(REPORT_R1.cpuCores)} of ${CLASSIC_CORES} cores for ${count(REPORT_R1.msgsPerSec)} echoes/s, ` +
        `${us1((REPORT_R1.cpuCores * 1e6) / REPORT_R1.msgsPerSec)} per echo; here R1 took ${us1(perMsg(r1))}.`
      : "";
  return drawn(
    `Report (b), "memory use is low and CPU use very high": ${mark(cpuConns < memConns)}. A connection cost the server ${kib(perConn)} of RSS (median), ` +
      `so this machine's ${bytes(machine.memTotalBytes)} would hold about ${approx(memConns)} connections; at ${R(busiest)}'s traffic (${busiest.label}) a connection ` +
      `cost ${dec(cpuPerConn * 1000, 3)} ms of CPU a second, so ${plural(machine.cores, "core")} would hold about ${approx(cpuConns)}: ` +
      (cpuConns < memConns ? `CPU runs out ${dec(memConns / cpuConns, 0)} times sooner than memory` : "memory runs out first") +
      `. In ${R(busiest)} the server used ${dec(s.cpuCores, 2)} cores (${dec((s.cpuCores / machine.cores) * 100, 0)}% of the machine) and ` +
      `${bytes(s.peakRssBytes)} (${dec((s.peakRssBytes / machine.memTotalBytes) * 100, 1)}% of its memory).${vsReport}`
  );
}

/** (c) The payload alone changed: R1 (100 B) against R3 (200 B) and R4 (1,000 B), same connections and interval. */
export function payloadTest(rounds: RoundResult[], c: Criteria): Tested {
  const pairs = [pair(rounds, 1, 3, c), pair(rounds, 1, 4, c)];
  const ok = pairs.filter((p): p is { a: RoundResult; b: RoundResult } => "a" in p);
  const omitted = pairs.flatMap((p, i) => ("why" in p ? [`(c) R1 vs R${i === 0 ? 3 : 4}: ${p.why}`] : []));
  if (ok.length === 0) return { line: null, omitted };
  // Pooled over the pairs in log terms, so the 10x pair weighs more than the 2x one, as its signal does.
  const e = ok.reduce((sum, p) => sum + Math.log(perMsg(p.b) / perMsg(p.a)), 0) / ok.reduce((sum, p) => sum + Math.log(p.b.size / p.a.size), 0);
  const doubling = (2 ** e - 1) * 100;
  const each = ok.map(
    (p) =>
      `${R(p.a)} → ${R(p.b)} (${dec(p.b.size / p.a.size, 0)}x the payload, ${count(p.a.size)} → ${count(p.b.size)} B): ${us1(perMsg(p.a))} → ${us1(perMsg(p.b))} ` +
      `(${signed(change(perMsg(p.a), perMsg(p.b)))}; ${dec(cores(p.a), 2)} → ${dec(cores(p.b), 2)} cores)`,
  );
  return {
    line:
      `Report (c), "the payload size hardly moves the CPU": ${mark(doubling < PAYLOAD_HARDLY_PCT)}. Server CPU per echo ${each.join("; ")}. ` +
      `Per doubling of the payload ${signed(doubling)} (hardly: under +${PAYLOAD_HARDLY_PCT}%).`,
    omitted,
  };
}

/** (d) The interval alone changed: R7 (200 ms) against R9 (100 ms), same connections and payload. */
export function frequencyTest(rounds: RoundResult[], c: Criteria): Tested {
  const p = pair(rounds, 7, 9, c);
  if ("why" in p) return notDrawn(`(d) R7 vs R9: ${p.why}`);
  const factor = p.a.intervalMs / p.b.intervalMs;
  const doubling = perDoubling(cores(p.b) / cores(p.a), factor);
  return drawn(
    `Report (d), "the send frequency moves the CPU a lot": ${mark(doubling >= FREQUENCY_A_LOT_PCT)}. ${R(p.a)} → ${R(p.b)} (${dec(factor, 0)}x the frequency, ` +
      `every ${count(p.a.intervalMs)} → ${count(p.b.intervalMs)} ms, ${count(p.a.server!.msgsInPerSec)} → ${count(p.b.server!.msgsInPerSec)} msg/s): server CPU ` +
      `${dec(cores(p.a), 2)} → ${dec(cores(p.b), 2)} cores (${signed(change(cores(p.a), cores(p.b)))}); per doubling of the frequency ${signed(doubling)} ` +
      `(a lot: at least +${FREQUENCY_A_LOT_PCT}%, half of proportional).`,
  );
}

/**
 * R10 against R11: the same payload bytes per second as twice the messages of half the size. The share of
 * the message ratio the CPU followed (0: it followed the bytes, which were equal; 1: the messages) says which
 * one the server pays for, the question behind (c) and (d); the middle third says both, neither clearly.
 */
export function equalBytesTest(rounds: RoundResult[], c: Criteria): Tested {
  const p = pair(rounds, 10, 11, c);
  if ("why" in p) return notDrawn(`R10 vs R11: ${p.why}`);
  const msgs = p.a.server!.msgsInPerSec / p.b.server!.msgsInPerSec;
  const bytesA = p.a.server!.msgsInPerSec * p.a.size;
  const bytesB = p.b.server!.msgsInPerSec * p.b.size;
  const share = Math.log(cores(p.a) / cores(p.b)) / Math.log(msgs);
  const verdict =
    share >= 2 / 3
      ? "CPU follows the messages, not the bytes, as the report's (c) and (d) say."
      : share <= 1 / 3
        ? "CPU follows the bytes more than the messages, against the report's (c) and (d)."
        : "CPU followed the messages and the bytes alike: neither explains it alone.";
  return drawn(
    `Equal byte rates, ${R(p.a)} vs ${R(p.b)} (${mib(bytesA)}/s and ${mib(bytesB)}/s in; ${dec(msgs, 2)}x the messages in ${R(p.a)}): server CPU ` +
      `${dec(cores(p.a), 2)} vs ${dec(cores(p.b), 2)} cores (${dec(cores(p.a) / cores(p.b), 2)}x), ${dec(share * 100, 0)}% of the way from equal to the message ratio: ` +
      verdict,
  );
}

/** R12 repeats R10: how far the same round's figures moved, the noise any other comparison sits in. */
export function repeatabilityTest(rounds: RoundResult[], c: Criteria): Tested {
  const p = pair(rounds, 10, 12, c);
  if ("why" in p) return notDrawn(`repeatability R10 vs R12: ${p.why}`);
  const rate = (r: RoundResult) => r.traffic.achievedPerSec;
  const p99 = (r: RoundResult) => r.latency.rtt.p99Ms;
  const rtt = p.a.latency.rtt.count > 0 && p.b.latency.rtt.count > 0 ? `, round trip p99 ${ms(p99(p.a))} → ${ms(p99(p.b))} (${signed(change(p99(p.a), p99(p.b)))})` : "";
  return drawn(
    `Repeatability, ${R(p.b)} repeats ${R(p.a)}: server CPU per echo ${us1(perMsg(p.a))} → ${us1(perMsg(p.b))} (${signed(change(perMsg(p.a), perMsg(p.b)))}), ` +
      `achieved ${count(rate(p.a))} → ${count(rate(p.b))} msg/s (${signed(change(rate(p.a), rate(p.b)))})${rtt}. ` +
      `A difference between other rounds smaller than these is within this machine's noise.`,
  );
}

/** The report's conclusions (a)-(d), the equal byte rates and the repeat, then what could not be tested and why. */
function fieldReportTested(report: SweepReport): (string | null)[] {
  const rounds = report.rounds;
  const c = report.settings.criteria;
  const tests = [
    loadAverageTest(rounds, report.machine, report.settings.durationS),
    memoryVsCpuTest(rounds, report.machine, c),
    payloadTest(rounds, c),
    frequencyTest(rounds, c),
    equalBytesTest(rounds, c),
    repeatabilityTest(rounds, c),
  ];
  const omitted = tests.flatMap((t) => t.omitted);
  return [
    ...tests.map((t) => t.line),
    omitted.length > 0 ? `Not tested (a comparison needs its rounds run, the server measured and the generator on schedule): ${omitted.join("; ")}.` : null,
  ];
}
