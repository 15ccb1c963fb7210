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

function fmtSize(b: number): string {
  if (b >= 1 << 20 && b % (1 << 20) === 0) return `${b / (1 << 20)} MiB`;
  if (b >= 1024 && b % 1024 === 0) return `${b / 1024} KiB`;
  return `${count(b)} B`;
}

export function roundLabel(r: Round): string {
  return `${count(r.connections)} × ${fmtSize(r.size)} every ${count(r.intervalMs)} ms`;
}

/** Messages per second the round offers: every connection sends once per interval. */
export function offered(r: Pick<Round, "connections" | "intervalMs">): number {
  return (r.connections * 1000) / r.intervalMs;
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

/**
 * The field report's thirteen rounds: four connection levels, payload 100 or 1000 bytes, a message every
 * 100 or 200 ms. Each level runs the lightest and the heaviest cadence and a bigger payload at the slower
 * one, so neighbouring rounds differ in one thing only: that is what lets the findings say whether
 * frequency or size cost the CPU.
 */
export const CLASSIC_ROUNDS: readonly Round[] = Object.freeze([
  { connections: 40_000, size: 100, intervalMs: 100 },
  { connections: 40_000, size: 1000, intervalMs: 100 },
  { connections: 40_000, size: 100, intervalMs: 200 },
  { connections: 40_000, size: 1000, intervalMs: 200 },
  { connections: 60_000, size: 100, intervalMs: 100 },
  { connections: 60_000, size: 100, intervalMs: 200 },
  { connections: 60_000, size: 1000, intervalMs: 200 },
  { connections: 80_000, size: 100, intervalMs: 100 },
  { connections: 80_000, size: 100, intervalMs: 200 },
  { connections: 80_000, size: 1000, intervalMs: 200 },
  { connections: 100_000, size: 100, intervalMs: 100 },
  { connections: 100_000, size: 100, intervalMs: 200 },
  { connections: 100_000, size: 1000, intervalMs: 200 },
]);

export const PRESETS = ["classic"] as const;
export type PresetName = (typeof PRESETS)[number];

export interface ScaledPreset {
  name: PresetName;
  scale: number;
  /** The rule in words, with this machine's figures, for the report. */
  rule: string;
  rounds: Round[];
}

/** Connections a scaled round asks for: to the nearest hundred, never fewer than 100. */
export function scaleConnections(connections: number, scale: number): number {
  return Math.max(100, Math.round((connections * scale) / 100) * 100);
}

/**
 * Scales the classic rounds to this machine: connections × (cores / 16), halved when the load generator
 * shares the box with the server (it costs as much CPU per message as the server or more), and never past
 * what memory and the other limits allow for the largest round (`capacity`, both ends counted). Payloads
 * and intervals stay as they were: they are what the study compares. `scale` given: used as is.
 */
export function classicPreset(opts: { cores: number; local: boolean; capacity: (connections: number) => number; scale?: number }): ScaledPreset {
  const largest = Math.max(...CLASSIC_ROUNDS.map((r) => r.connections));
  let scale: number;
  let rule: string;
  if (opts.scale !== undefined) {
    scale = opts.scale;
    rule = `--scale ${scale}: connections × ${scale}`;
  } else {
    const byCores = opts.cores / CLASSIC_CORES;
    const shared = opts.local ? 0.5 : 1;
    scale = Math.min(1, byCores * shared);
    rule = `connections × ${opts.cores} cores / ${CLASSIC_CORES} (the report's server)` + (opts.local ? " × 1/2 (the load generator shares this machine)" : "");
    const fits = opts.capacity(scaleConnections(largest, scale));
    if (scaleConnections(largest, scale) > fits) {
      scale = Math.max(100 / largest, fits / largest);
      rule += `, then capped at ${count(Math.floor(fits))} connections (what this machine's limits hold)`;
    }
    rule += `; payloads and intervals unchanged; connections to the nearest 100`;
  }
  const rounds = CLASSIC_ROUNDS.map((r) => ({ ...r, connections: scaleConnections(r.connections, scale) }));
  return { name: "classic", scale: Math.round(scale * 10_000) / 10_000, rule, rounds };
}

// --find-max.

export const FIND_MAX_WHATS: readonly FindMaxWhat[] = ["connections", "rate"];

/** The round `step` times heavier than `r`: more connections, or (rate) a shorter interval. */
export function heavier(r: Round, what: FindMaxWhat, step: number): Round {
  if (what === "connections") return { ...r, connections: Math.max(r.connections + 1, Math.round(r.connections * step)) };
  return { ...r, intervalMs: Math.max(1, Math.min(r.intervalMs - 1, Math.round(r.intervalMs / step))) };
}

/** Halfway between a level that held and one that failed, or null when no whole level lies between. */
export function between(held: Round, failed: Round, what: FindMaxWhat): Round | null {
  if (what === "connections") {
    const c = Math.round((held.connections + failed.connections) / 2);
    return c > held.connections && c < failed.connections ? { ...held, connections: c } : null;
  }
  // Halfway in rate, not in interval: rate is what the question is about.
  const rate = (offered(held) + offered(failed)) / 2;
  const intervalMs = Math.round((held.connections * 1000) / rate);
  return intervalMs < held.intervalMs && intervalMs > failed.intervalMs ? { ...held, intervalMs } : null;
}
