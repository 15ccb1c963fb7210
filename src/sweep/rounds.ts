// Where a sweep's rounds come from: a matrix of flags, a file (JSON or YAML), or the `classic` preset (the
// field report's thirteen rounds, scaled to this machine). Also the steps of --find-max.
import { readFileSync } from "node:fs";
import { InvalidArgumentError } from "commander";
import { parse as parseYaml } from "yaml";
import { UsageError, bytes, integer } from "../flags.ts";
import { count } from "../format.ts";
import type { FindMaxWhat, Round } from "./schema.ts";

export const ROUND_LIMITS = {
  connections: [1, 10_000_000],
  size: [12, 16 << 20],
  intervalMs: [1, 3_600_000],
  durationS: [1, 86_400],
} as const;

/** A payload size exactly: 100 B, 2,000 B, 1 KiB (binary units only when they are whole). */
export function fmtSize(b: number): string {
  if (b >= 1 << 20 && b % (1 << 20) === 0) return `${b / (1 << 20)} MiB`;
  if (b >= 1024 && b % 1024 === 0) return `${b / 1024} KiB`;
  return `${count(b)} B`;
}

/** The connections as the field report split them over its client machines: "4 x 650"; null for an unsplit round. */
export function split(r: Pick<Round, "connections" | "clients">): string | null {
  return r.clients !== undefined && r.clients > 1 ? `${r.clients} x ${count(r.connections / r.clients)}` : null;
}

export function roundLabel(r: Round): string {
  const parts = split(r);
  const conns = parts ? `${count(r.connections)} (${parts})` : count(r.connections);
  const traffic = r.inFlight ? `, ${count(r.inFlight)} in flight` : ` every ${count(r.intervalMs)} ms`;
  return `${conns} × ${fmtSize(r.size)}${traffic}`;
}

/** Messages per second the round offers: every connection sends once per interval; 0 in closed loop, where the server's pace sets the rate. */
export function offered(r: Pick<Round, "connections" | "intervalMs" | "inFlight">): number {
  return r.inFlight ? 0 : (r.connections * 1000) / r.intervalMs;
}

/** A comma list for a matrix flag (`1000,5000`), each element checked by `one`. */
export function list<T>(flag: string, one: (raw: string) => T) {
  return (raw: string): T[] => {
    const parts = raw.split(",").map((p) => p.trim());
    if (parts.some((p) => p === "")) throw new InvalidArgumentError(`${flag} takes a comma list such as 100,1000, got '${raw}'`);
    return parts.map(one);
  };
}

export const matrixParsers = {
  connections: list("--connections", integer("--connections", ...ROUND_LIMITS.connections)),
  size: list("--size", bytes("--size", ...ROUND_LIMITS.size)),
  interval: list("--interval", integer("--interval", ...ROUND_LIMITS.intervalMs)),
};

/** Every combination, connections outermost, so memory grows monotonically through the sweep. */
export function matrixRounds(connections: number[], sizes: number[], intervals: number[]): Round[] {
  const out: Round[] = [];
  for (const connections_ of connections) for (const intervalMs of intervals) for (const size of sizes) out.push({ connections: connections_, size, intervalMs });
  return out;
}

/** Reads a rounds file: `rounds: [...]` or a bare list, in YAML or JSON (YAML is a superset of JSON). */
export function roundsFromFile(path: string): Round[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`--rounds: cannot read '${path}' (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new UsageError(`--rounds ${path}: not valid YAML or JSON (${(err as Error).message.split("\n")[0]})`);
  }
  const items = Array.isArray(doc) ? doc : doc && typeof doc === "object" && Array.isArray((doc as { rounds?: unknown }).rounds) ? (doc as { rounds: unknown[] }).rounds : null;
  if (!items || items.length === 0) {
    throw new UsageError(`--rounds ${path}: expected a list of rounds, or 'rounds:' with one, e.g. - { connections: 1000, size: 100, interval: 100 }`);
  }
  return items.map((item, i) => parseRound(item, `--rounds ${path}: round ${i + 1}`));
}

function field(where: string, obj: Record<string, unknown>, names: string[], parse: (raw: string) => number, required: boolean): number | undefined {
  const name = names.find((n) => n in obj);
  if (name === undefined) {
    if (required) throw new UsageError(`${where}: missing '${names[0]}'`);
    return undefined;
  }
  const v = obj[name];
  if (typeof v !== "number" && typeof v !== "string") throw new UsageError(`${where}: '${name}' must be a number, got ${JSON.stringify(v)}`);
  try {
    return parse(String(v));
  } catch (err) {
    throw new UsageError(`${where}: ${(err as Error).message}`);
  }
}

const KNOWN_KEYS = new Set(["connections", "conns", "size", "bytes", "interval", "intervalMs", "duration", "durationS"]);

export function parseRound(item: unknown, where: string): Round {
  if (!item || typeof item !== "object" || Array.isArray(item)) throw new UsageError(`${where}: expected { connections, size, interval }, got ${JSON.stringify(item)}`);
  const obj = item as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !KNOWN_KEYS.has(k));
  if (unknown.length > 0) throw new UsageError(`${where}: unknown key '${unknown[0]}' (known: connections, size, interval, duration)`);
  const round: Round = {
    connections: field(where, obj, ["connections", "conns"], integer("connections", ...ROUND_LIMITS.connections), true)!,
    size: field(where, obj, ["size", "bytes"], bytes("size", ...ROUND_LIMITS.size), true)!,
    intervalMs: field(where, obj, ["interval", "intervalMs"], integer("interval", ...ROUND_LIMITS.intervalMs), true)!,
  };
  const durationS = field(where, obj, ["duration", "durationS"], integer("duration", ...ROUND_LIMITS.durationS), false);
  if (durationS !== undefined) round.durationS = durationS;
  return round;
}

// The classic preset.

/** Cores of the field report's server box. */
export const CLASSIC_CORES = 16;

/** The field report ran every round from this many client machines, N connections each ("4 x N"). */
export const CLASSIC_CLIENTS = 4;

/** Every per-client count in the field report is a multiple of this; scaling keeps them multiples of its scaled value. */
export const CLASSIC_STEP = 5000;

/**
 * The field report's thirteen rounds, as it ran them and in its order: [connections per client machine,
 * payload bytes, interval ms]. Rounds 1 and 3, and 1 and 4, differ in payload only; 7 and 9 in interval
 * only; 10 and 11 move the same bytes per second as twice the messages of half the size; 12 repeats 10;
 * 13 is where the report saw "many errors".
 */
const FIELD_ROUNDS: readonly (readonly [number, number, number])[] = [
  [10_000, 100, 100],
  [10_000, 50, 50],
  [10_000, 200, 100],
  [10_000, 1000, 100],
  [5000, 2000, 100],
  [20_000, 1000, 100],
  [20_000, 100, 200],
  [20_000, 50, 100],
  [20_000, 100, 100],
  [20_000, 1000, 200],
  [20_000, 2000, 400],
  [20_000, 1000, 200],
  [25_000, 1000, 200],
];

/** The field report's rounds with their connections summed over its client machines (what one machine runs today). */
export const CLASSIC_ROUNDS: readonly Round[] = Object.freeze(
  FIELD_ROUNDS.map(([perClient, size, intervalMs]) => ({ connections: CLASSIC_CLIENTS * perClient, size, intervalMs, clients: CLASSIC_CLIENTS })),
);

export const PRESETS = ["classic"] as const;
export type PresetName = (typeof PRESETS)[number];

export interface ScaledPreset {
  name: PresetName;
  /** The scale the rounds really ran at (after rounding the step), for the report. */
  scale: number;
  /** The rule in words, with this machine's figures, for the report. */
  rule: string;
  rounds: Round[];
}

/** Each client's share of a scaled round is a multiple of this, so every round's total is a multiple of 100. */
const SHARE_GRAIN = 25;

/** The scaled step: CLASSIC_STEP × scale in whole grains (rounded, or down when a cap must hold), never under one grain. */
function scaledStep(scale: number, down: boolean): number {
  const grains = (CLASSIC_STEP * scale) / SHARE_GRAIN;
  return Math.max(1, down ? Math.floor(grains) : Math.round(grains)) * SHARE_GRAIN;
}

/** The classic rounds with each client's connections in steps of `step` instead of CLASSIC_STEP. */
function classicAt(step: number): Round[] {
  return CLASSIC_ROUNDS.map((r) => ({ ...r, connections: (r.connections / CLASSIC_STEP) * step }));
}

/**
 * Scales the classic rounds to this machine: connections × (cores / 16), halved when the load generator
 * shares the box with the server (it costs as much CPU per message as the server or more), and never past
 * what memory and the other limits allow for the largest round (`capacity`, both ends counted). Each
 * client's share is scaled as a multiple of the scaled 5,000 step, so the rounds keep their exact ratios
 * (round 13 stays 5 times round 5) and their totals are multiples of 100. Payloads and intervals stay as
 * they were: they are what the study compares. `scale` given: used as is (1: the report's own numbers).
 */
export function classicPreset(opts: { cores: number; local: boolean; capacity: (connections: number) => number; scale?: number }): ScaledPreset {
  const largestSteps = Math.max(...CLASSIC_ROUNDS.map((r) => r.connections)) / CLASSIC_STEP;
  let scale: number;
  let rule: string;
  if (opts.scale !== undefined) {
    scale = opts.scale;
    rule = `connections × ${scale} (--scale${scale === 1 ? ": the report's own numbers" : ""})`;
  } else {
    scale = Math.min(1, (opts.cores / CLASSIC_CORES) * (opts.local ? 0.5 : 1));
    rule = `connections × ${opts.cores} cores / ${CLASSIC_CORES} (the report's server)` + (opts.local ? " × 1/2 (the load generator shares this machine)" : "");
  }
  let step = scaledStep(scale, false);
  if (opts.scale === undefined) {
    const fits = opts.capacity(largestSteps * step);
    if (largestSteps * step > fits) {
      scale = fits / (largestSteps * CLASSIC_STEP);
      step = scaledStep(scale, true);
      rule += `, then capped at ${count(Math.floor(fits))} connections (what this machine's limits hold)`;
    }
    rule += "; payloads and intervals unchanged";
  }
  if (step !== CLASSIC_STEP * scale) {
    const exact = Math.round(CLASSIC_STEP * scale * 100) / 100;
    rule += `; each client's ${count(CLASSIC_STEP)} connections become ${count(step)} (${exact} in whole multiples of ${SHARE_GRAIN}, so the rounds keep their ratios)`;
  }
  return { name: "classic", scale: step / CLASSIC_STEP, rule, rounds: classicAt(step) };
}

// --find-max.

export const FIND_MAX_WHATS: readonly FindMaxWhat[] = ["connections", "rate"];

/** The first level of a search: connections from the first round; rate adds closed loop, one message in flight. */
export function findMaxStart(first: Round, what: FindMaxWhat): Round {
  // The levels are this search's own, not the field report's rounds: no client split to show.
  const { clients: _clients, ...r } = first;
  return what === "rate" ? { ...r, inFlight: 1 } : r;
}

/** The round `step` times heavier than `r`: more connections, or (rate) more messages in flight per connection. */
export function heavier(r: Round, what: FindMaxWhat, step: number): Round {
  if (what === "connections") return { ...r, connections: Math.max(r.connections + 1, Math.round(r.connections * step)) };
  const inFlight = r.inFlight ?? 1;
  return { ...r, inFlight: Math.max(inFlight + 1, Math.round(inFlight * step)) };
}

/** Connections halfway between a level that held and one that failed, or null when no whole level lies between. */
export function between(held: Round, failed: Round): Round | null {
  const c = Math.round((held.connections + failed.connections) / 2);
  return c > held.connections && c < failed.connections ? { ...held, connections: c } : null;
}
