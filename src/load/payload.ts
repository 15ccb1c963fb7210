// What load messages carry after their timestamp (protocol/stamp.ts keeps bytes 0-11): `fill` ('x' bytes,
// the generator's payload since the start), `random`, `text` (JSON-like records) or a file's bytes.
// Content matters only to a compressor. So without permessage-deflate the payload is built once per worker
// and never touched again; with it, `random` and `text` change on every message (a compressor with context
// takeover would otherwise find the whole previous message in its window), while `fill` and a file stay
// as they are, like a client that sends the same document over and over.
import { randomFillSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { UsageError } from "../flags.ts";
import { STAMP_BYTES } from "../protocol/stamp.ts";

export type PayloadSpec = "fill" | "random" | "text" | `file:${string}`;

export const PAYLOAD_FORMS = "fill, random, text or file:PATH";

/** `--payload` as given: fill | random | text | file:PATH (the file must be readable and not empty). */
export function parsePayload(raw: string): PayloadSpec {
  if (raw === "fill" || raw === "random" || raw === "text") return raw;
  if (raw.startsWith("file:")) {
    const path = raw.slice(5);
    let size: number;
    try {
      size = readFileSync(path).byteLength;
    } catch (err) {
      throw new UsageError(`--payload ${raw}: cannot read the file (${err instanceof Error ? err.message : String(err)})`);
    }
    if (size === 0) throw new UsageError(`--payload ${raw}: the file is empty`);
    return `file:${path}`;
  }
  throw new UsageError(`--payload takes ${PAYLOAD_FORMS}, got '${raw}'`);
}

/** Size of the text pool messages are cut from: larger than a 32 KiB window, so a pass over it never repeats within one. */
const TEXT_POOL_BYTES = 64 * 1024;

const SYMBOLS = ["ACME", "GLOBX", "INITECH", "UMBRL", "HOOLI", "STARK", "WAYNE", "CYBRD", "TYRL", "SOYLNT"];
const KINDS = ["trade", "quote", "order", "cancel", "chat", "presence"];
const VENUES = ["XNAS", "XNYS", "ARCX", "BATS", "IEXG"];
const WORDS = ["ok", "ship it", "brb", "see the chart", "filled", "partial", "lgtm", "on my way", "rebalancing", "halted"];

/**
 * JSON-like records, one per line, as a trading or chat feed sends them: the same keys every time and
 * values drawn from small vocabularies and ranges, from a fixed seed (every run sends the same text).
 */
export function textPool(bytes = TEXT_POOL_BYTES): Uint8Array {
  let x = 0x9e3779b9;
  const rand = (n: number): number => {
    // xorshift32: deterministic and cheap; quality does not matter here.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const pick = <T>(a: readonly T[]): T => a[rand(a.length)]!;
  let text = "";
  let ts = 1_712_345_678_901;
  for (let id = 48_213; text.length < bytes; id++) {
    ts += rand(250);
    const rec = {
      type: pick(KINDS), id, symbol: pick(SYMBOLS), price: (50 + rand(20_000) / 100).toFixed(2), qty: 100 * (1 + rand(50)),
      side: rand(2) === 0 ? "buy" : "sell", venue: pick(VENUES), user: `u-${10_000 + rand(90_000)}`, note: pick(WORDS), ts,
    };
    text += JSON.stringify(rec) + "\n";
  }
  return new TextEncoder().encode(text.slice(0, bytes));
}

/** One worker's payload buffer (shared by its connections) and, for random and text, its next content. */
export class Payload {
  readonly bytes: Uint8Array;
  /** True when `next()` changes anything (random and text). */
  readonly varies: boolean;
  private readonly start: number;
  private readonly pool: Uint8Array | null;
  private at = 0;

  constructor(
    private readonly spec: PayloadSpec,
    size: number,
  ) {
    this.bytes = new Uint8Array(size);
    this.start = size >= STAMP_BYTES ? STAMP_BYTES : 0;
    const body = this.bytes.subarray(this.start);
    this.pool = spec === "text" ? textPool() : null;
    this.varies = (spec === "random" || spec === "text") && body.byteLength > 0;
    if (spec === "fill") body.fill(0x78);
    else if (spec.startsWith("file:")) repeatInto(body, readFileSync(spec.slice(5)));
    else this.next();
  }

  /** New content after the stamp: fresh random bytes, or the text pool's next stretch. */
  next(): void {
    const body = this.bytes.subarray(this.start);
    if (this.spec === "random") {
      randomFillSync(body);
      return;
    }
    const pool = this.pool!;
    let o = 0;
    while (o < body.byteLength) {
      const n = Math.min(body.byteLength - o, pool.byteLength - this.at);
      body.set(pool.subarray(this.at, this.at + n), o);
      o += n;
      this.at = (this.at + n) % pool.byteLength;
    }
  }
}

/** `src` repeated (and cut) to fill `out`. */
function repeatInto(out: Uint8Array, src: Uint8Array): void {
  for (let o = 0; o < out.byteLength; o += src.byteLength) out.set(src.subarray(0, Math.min(src.byteLength, out.byteLength - o)), o);
}
