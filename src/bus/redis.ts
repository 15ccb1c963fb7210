// The one place that speaks to Redis: a connection for commands and, on request, one of its own for blocking
// stream reads (a blocking XREAD stalls every other command on its connection). Bun's built-in RedisClient
// (see docs/ARCHITECTURE.md for why, measured) with its own reconnect switched off: we reconnect here, every
// second for as long as it takes, so the callers know exactly when Redis is away (agents buffer their figures
// then, and count how long it lasted) and nothing gives up after a fixed number of tries. Commands are never
// queued while Redis is away: they fail at once and the caller decides what to keep.
import { RedisClient } from "bun";
import { sleep } from "../sleep.ts";
import { diagnose } from "./probe.ts";
import type { RedisUrl } from "./url.ts";

/** A reply as Bun decodes RESP3: strings, numbers, null, arrays and maps (objects). */
export type Reply = string | number | bigint | boolean | null | Reply[] | { [k: string]: Reply };

/** Why Redis cannot be used, in one line (a usage-level failure: exit 2). */
export class BusError extends Error {}

/** An entry of one of our streams: every entry carries one field, `m`, the message as JSON. */
export interface StreamEntry {
  stream: string;
  id: string;
  m: string;
}

const RETRY_MS = 1000;
const CONNECT_TIMEOUT_MS = 3000;
/** A command unanswered this long means a dead connection (a half-open TCP link never closes by itself). */
const COMMAND_TIMEOUT_MS = 5000;

/** One connection that comes back by itself. */
class Link {
  private client: RedisClient | null = null;
  up = false;
  private reconnecting = false;
  private closed = false;

  constructor(
    private readonly url: RedisUrl,
    private readonly changed: (up: boolean) => void,
  ) {}

  /** The first connection: its failure is the caller's (with the reason, diagnosed). */
  async open(): Promise<void> {
    try {
      await this.connectOnce();
    } catch (err) {
      this.close(); // no reconnecting behind a failed start
      const why = await diagnose(this.url);
      throw new BusError(why ?? `cannot connect to ${this.url.display}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async connectOnce(): Promise<void> {
    this.client?.close();
    const c = new RedisClient(this.url.href, { autoReconnect: false, enableOfflineQueue: false, connectionTimeout: CONNECT_TIMEOUT_MS, tls: this.url.tls });
    this.client = c;
    c.onclose = () => {
      if (this.client === c) this.lost();
    };
    await c.connect();
    this.up = true;
  }

  /** The connection is gone (closed by the server, a failed command, a timeout): reconnect every second. */
  lost(): void {
    if (this.closed) return;
    if (this.up) {
      this.up = false;
      this.changed(false);
    }
    if (this.reconnecting) return;
    this.reconnecting = true;
    void (async () => {
      while (!this.closed) {
        await sleep(RETRY_MS);
        if (this.closed) break;
        try {
          await this.connectOnce();
          this.reconnecting = false;
          this.changed(true);
          return;
        } catch {
          /* still away: try again in a second */
        }
      }
      this.reconnecting = false;
    })();
  }

  async send(cmd: string, args: string[], timeoutMs: number): Promise<Reply> {
    const c = this.client;
    if (!c || !this.up) throw new BusDown();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BusDown(`no answer to ${cmd} within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return (await Promise.race([c.send(cmd, args), timeout])) as Reply;
    } catch (err) {
      if (err instanceof BusDown || isConnectionError(err)) {
        if (this.client === c) this.lost();
        throw err instanceof BusDown ? err : new BusDown();
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.closed = true;
    this.up = false;
    this.client?.close();
  }
}

/** Redis is away right now; the caller keeps what it wanted to send, or drops it. */
export class BusDown extends Error {
  constructor(message = "Redis is unreachable") {
    super(message);
  }
}

function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("ERR_REDIS_CONNECTION");
}

export class Bus {
  private readonly main: Link;
  private readonly reader: Link | null;
  /** When the command connection last came up or went away (performance.now ms). */
  private changedAt = performance.now();
  /** Called when the command connection goes away or comes back. */
  onChange: ((up: boolean) => void) | null = null;

  private constructor(
    readonly url: RedisUrl,
    withReader: boolean,
  ) {
    this.main = new Link(url, (up) => {
      this.changedAt = performance.now();
      this.onChange?.(up);
    });
    this.reader = withReader ? new Link(url, () => {}) : null;
  }

  /** Connects (and the reader, when asked); throws a BusError naming the cause when Redis cannot be used. */
  static async open(url: RedisUrl, opts: { reader?: boolean } = {}): Promise<Bus> {
    const bus = new Bus(url, opts.reader ?? false);
    await bus.main.open();
    try {
      await bus.reader?.open();
    } catch (err) {
      bus.close();
      throw err;
    }
    return bus;
  }

  get up(): boolean {
    return this.main.up;
  }

  /** How long the command connection has been in its present state (up or away), in ms. */
  stateForMs(): number {
    return performance.now() - this.changedAt;
  }

  call(cmd: string, ...args: (string | number)[]): Promise<Reply> {
    return this.main.send(cmd, args.map(String), COMMAND_TIMEOUT_MS);
  }

  /** SET with a time to live; `onlyIf` "NX" sets only an absent key. Resolves false when NX found one. */
  async set(key: string, value: string, ttlS: number, onlyIf?: "NX"): Promise<boolean> {
    const r = await this.call("SET", key, value, "EX", ttlS, ...(onlyIf ? [onlyIf] : []));
    return r !== null;
  }

  async get(key: string): Promise<string | null> {
    return asString(await this.call("GET", key));
  }

  async mget(keys: string[]): Promise<(string | null)[]> {
    if (keys.length === 0) return [];
    const r = await this.call("MGET", ...keys);
    return Array.isArray(r) ? r.map(asString) : [];
  }

  /** Appends a message; `maxLen` trims the stream to about that many entries (approximate trimming is cheap). */
  async xadd(stream: string, m: string, maxLen?: number): Promise<string> {
    const trim = maxLen ? ["MAXLEN", "~", String(maxLen)] : [];
    return String(await this.call("XADD", stream, ...trim, "*", "m", m));
  }

  /** The id of a stream's last entry ("0-0" when empty or absent): a reader starting there sees only what follows. */
  async lastId(stream: string): Promise<string> {
    const r = await this.call("XREVRANGE", stream, "+", "-", "COUNT", "1");
    const first = Array.isArray(r) ? r[0] : null;
    return Array.isArray(first) && typeof first[0] === "string" ? first[0] : "0-0";
  }

  /** Entries after each stream's id, at once (on the command connection). */
  async read(from: [stream: string, afterId: string][], count = 1000): Promise<StreamEntry[]> {
    if (from.length === 0) return [];
    const r = await this.call("XREAD", "COUNT", count, "STREAMS", ...from.map(([s]) => s), ...from.map(([, id]) => id));
    return entries(r);
  }

  /**
   * Entries after each stream's id, waiting up to blockMs for the first (on the reader connection, which
   * waits alone). Resolves [] on timeout; throws BusDown when Redis is away.
   */
  async readBlocking(from: [stream: string, afterId: string][], blockMs: number, count = 100): Promise<StreamEntry[]> {
    if (!this.reader) throw new Error("this bus was opened without a reader");
    const args = ["COUNT", String(count), "BLOCK", String(blockMs), "STREAMS", ...from.map(([s]) => s), ...from.map(([, id]) => id)];
    return entries(await this.reader.send("XREAD", args, blockMs + COMMAND_TIMEOUT_MS));
  }

  /** Redis's clock (TIME), in ms. */
  async time(): Promise<number> {
    const r = await this.call("TIME");
    if (!Array.isArray(r) || r.length < 2) throw new Error("TIME gave no time");
    return Number(r[0]) * 1000 + Number(r[1]) / 1000;
  }

  /**
   * This machine's clock against Redis's: Redis ms = Date.now() + offsetMs. Of several TIME round trips
   * the shortest is kept, whose midpoint is the closest to the instant Redis read its clock.
   */
  async clock(samples = 7): Promise<{ offsetMs: number; rttMs: number }> {
    let best = { offsetMs: 0, rttMs: Infinity };
    for (let i = 0; i < samples; i++) {
      const t1 = performance.now();
      const redis = await this.time();
      const t2 = performance.now();
      const rtt = t2 - t1;
      if (rtt < best.rttMs) best = { offsetMs: redis - (performance.timeOrigin + (t1 + t2) / 2), rttMs: rtt };
    }
    return { offsetMs: round3(best.offsetMs), rttMs: round3(best.rttMs) };
  }

  close(): void {
    this.main.close();
    this.reader?.close();
  }
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

function asString(r: Reply | undefined): string | null {
  return typeof r === "string" ? r : r === null || r === undefined ? null : String(r);
}

/** XREAD's reply (a map in RESP3, pairs in RESP2) as entries in order. */
function entries(r: Reply): StreamEntry[] {
  if (r === null || typeof r !== "object") return [];
  const pairs: [string, Reply][] = Array.isArray(r) ? r.filter(Array.isArray).map((p) => [String(p[0]), p[1] ?? null]) : Object.entries(r);
  const out: StreamEntry[] = [];
  for (const [stream, list] of pairs) {
    if (!Array.isArray(list)) continue;
    for (const e of list) {
      if (!Array.isArray(e) || typeof e[0] !== "string" || !Array.isArray(e[1])) continue;
      const fields = e[1];
      const i = fields.indexOf("m");
      if (i >= 0 && typeof fields[i + 1] === "string") out.push({ stream, id: e[0], m: fields[i + 1] as string });
    }
  }
  return out;
}
