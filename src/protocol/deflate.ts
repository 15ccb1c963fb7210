// permessage-deflate (RFC 7692) for the client side: the offer, a strict check of the server's answer, and
// one connection's compressor and decompressor.
//
// Per-connection state is two byte windows at most, and only with context takeover. Bun's node:zlib streams
// cannot be driven synchronously more than once (a sync call closes its handle), and one async stream per
// connection is slow and holds ~300 KiB of zlib state. So every message is compressed or inflated on its
// own with the one-shot sync calls, and context takeover is a preset dictionary: the last bytes of that
// direction's earlier messages. A raw DEFLATE stream with a preset dictionary decodes exactly like one
// whose window carried those bytes over, so peers with real sliding windows (the `ws` package, browsers)
// read what we send and we read what they send (test/load-deflate.test.ts checks both).
import zlib from "node:zlib";
import { CLOSE_INVALID_PAYLOAD, CLOSE_TOO_BIG } from "./close-codes.ts";
import { InflateError, type MessageInflater } from "./parser.ts";

/** What we offer in Sec-WebSocket-Extensions: the parameters a user sets to mirror a production client. */
export interface DeflateOffer {
  /** client_no_context_takeover: we compress every message on its own. */
  clientNoContextTakeover: boolean;
  /** server_no_context_takeover: we ask the server to compress every message on its own. */
  serverNoContextTakeover: boolean;
  /** client_max_window_bits: not offered (null), offered bare (true: the server may pick, as Chrome offers), or 8..15. */
  clientMaxWindowBits: number | true | null;
  /** server_max_window_bits: not offered (null) or 8..15. */
  serverMaxWindowBits: number | null;
}

/** What both ends use on one connection after the server's answer. */
export interface DeflateAgreement {
  /** We compress without context takeover. */
  clientNoContextTakeover: boolean;
  /** The server compresses without context takeover. */
  serverNoContextTakeover: boolean;
  /** Our LZ77 window (2^bits bytes). */
  clientWindowBits: number;
  /** The server's LZ77 window: how much of its earlier messages it may refer back to. */
  serverWindowBits: number;
  /** The server's answer as it was, for the report. */
  response: string;
}

export const EXTENSION_NAME = "permessage-deflate";
const MAX_BITS = 15;

export function offerHeader(o: DeflateOffer): string {
  let s = EXTENSION_NAME;
  if (o.clientNoContextTakeover) s += "; client_no_context_takeover";
  if (o.serverNoContextTakeover) s += "; server_no_context_takeover";
  if (o.clientMaxWindowBits === true) s += "; client_max_window_bits";
  else if (o.clientMaxWindowBits !== null) s += `; client_max_window_bits=${o.clientMaxWindowBits}`;
  if (o.serverMaxWindowBits !== null) s += `; server_max_window_bits=${o.serverMaxWindowBits}`;
  return s;
}

/** One element of an extension list: its name and parameters in order (value null when bare). */
interface Element {
  name: string;
  params: [string, string | null][];
}

/**
 * RFC 6455 §9.1: `name *(";" param)` elements separated by commas; a parameter value is a token or a
 * quoted-string (whose content, unescaped, must itself be a token). Returns a reason string when the
 * header does not follow that grammar.
 */
function parseExtensions(header: string): Element[] | string {
  const out: Element[] = [];
  let i = 0;
  const n = header.length;
  const skipSpace = (): void => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  for (;;) {
    skipSpace();
    const name = token();
    if (name === "") return `expected an extension name at offset ${i} of '${header}'`;
    const el: Element = { name, params: [] };
    out.push(el);
    skipSpace();
    while (i < n && header[i] === ";") {
      i++;
      skipSpace();
      const key = token();
      if (key === "") return `expected a parameter name at offset ${i} of '${header}'`;
      skipSpace();
      let value: string | null = null;
      if (header[i] === "=") {
        i++;
        skipSpace();
        if (header[i] === '"') {
          i++;
          let v = "";
          while (i < n && header[i] !== '"') {
            if (header[i] === "\\") i++;
            v += header[i] ?? "";
            i++;
          }
          if (i >= n) return `unterminated quoted value of '${key}'`;
          i++;
          value = v;
        } else {
          value = token();
        }
        if (value === "" || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(value)) return `parameter '${key}' has a value that is not a token`;
      }
      el.params.push([key.toLowerCase(), value]);
      skipSpace();
    }
    if (i >= n) return out;
    if (header[i] !== ",") return `unexpected '${header[i]}' at offset ${i} of '${header}'`;
    i++;
  }
}

/** RFC 7692 §7.1.2: a decimal integer from 8 to 15 without leading zeros. */
function windowBits(value: string | null): number | null {
  return value !== null && /^(?:[89]|1[0-5])$/.test(value) ? Number(value) : null;
}

export type DeflateAnswer = { readonly ok: true; readonly agreement: DeflateAgreement } | { readonly ok: false; readonly reason: string };

/**
 * Checks the server's Sec-WebSocket-Extensions answer to our one offer (RFC 7692 §5, §7.1). Each rule
 * that fails the connection is named in the reason:
 * - the answer names one extension, the one we offered (RFC 6455 §9.1: only offered extensions);
 * - every parameter is defined for a response, appears once, and has a valid value (§7.1: no value for the
 *   *_no_context_takeover ones, 8..15 for the *_max_window_bits ones);
 * - server_no_context_takeover and server_max_window_bits we offered are accepted by including them, the
 *   latter with the same or a smaller value (§7.1.1.1, §7.1.2.1); the server may add either unasked;
 * - client_max_window_bits only when we offered it, and never above a value we offered (§7.1.2.2); the
 *   server may add client_no_context_takeover unasked (§7.1.1.2).
 */
export function acceptDeflate(header: string, offer: DeflateOffer): DeflateAnswer {
  const fail = (reason: string): DeflateAnswer => ({ ok: false, reason });
  const parsed = parseExtensions(header);
  if (typeof parsed === "string") return fail(`malformed Sec-WebSocket-Extensions: ${parsed}`);
  if (parsed.length !== 1) return fail(`the server accepted ${parsed.length} extensions ('${header}'); we offered only ${EXTENSION_NAME}`);
  const el = parsed[0]!;
  if (el.name.toLowerCase() !== EXTENSION_NAME) return fail(`the server chose extension '${el.name}', which we did not offer`);
  const seen = new Set<string>();
  let serverNoTakeover = false;
  let clientNoTakeover = offer.clientNoContextTakeover;
  let serverBits: number | null = null;
  let clientBits: number | null = null;
  for (const [key, value] of el.params) {
    if (seen.has(key)) return fail(`parameter ${key} appears twice (RFC 7692 §7: each parameter at most once)`);
    seen.add(key);
    if (key === "server_no_context_takeover" || key === "client_no_context_takeover") {
      if (value !== null) return fail(`${key}=${value}: this parameter takes no value (RFC 7692 §7.1.1)`);
      if (key === "server_no_context_takeover") serverNoTakeover = true;
      else clientNoTakeover = true;
    } else if (key === "server_max_window_bits") {
      const bits = windowBits(value);
      if (bits === null) return fail(`server_max_window_bits=${value ?? "(none)"}: a response must give a value from 8 to 15 (RFC 7692 §7.1.2.1)`);
      if (offer.serverMaxWindowBits !== null && bits > offer.serverMaxWindowBits) {
        return fail(`server_max_window_bits=${bits} is above the ${offer.serverMaxWindowBits} we offered (RFC 7692 §7.1.2.1: the same or a smaller value)`);
      }
      serverBits = bits;
    } else if (key === "client_max_window_bits") {
      if (offer.clientMaxWindowBits === null) return fail(`client_max_window_bits in the answer, but we did not offer it (RFC 7692 §7.1.2.2)`);
      const bits = windowBits(value);
      if (bits === null) return fail(`client_max_window_bits=${value ?? "(none)"}: a response must give a value from 8 to 15 (RFC 7692 §7.1.2.2)`);
      if (offer.clientMaxWindowBits !== true && bits > offer.clientMaxWindowBits) {
        return fail(`client_max_window_bits=${bits} is above the ${offer.clientMaxWindowBits} we offered (RFC 7692 §7.1.2.2)`);
      }
      clientBits = bits;
    } else {
      return fail(`parameter '${key}' is not defined for a permessage-deflate response (RFC 7692 §7.1)`);
    }
  }
  if (offer.serverNoContextTakeover && !serverNoTakeover) {
    return fail(`we offered server_no_context_takeover and the answer leaves it out (RFC 7692 §7.1.1.1: a server accepts it by including it)`);
  }
  if (offer.serverMaxWindowBits !== null && serverBits === null) {
    return fail(`we offered server_max_window_bits=${offer.serverMaxWindowBits} and the answer leaves it out (RFC 7692 §7.1.2.1: a server accepts it by including it)`);
  }
  const offeredClientBits = typeof offer.clientMaxWindowBits === "number" ? offer.clientMaxWindowBits : MAX_BITS;
  return {
    ok: true,
    agreement: {
      clientNoContextTakeover: clientNoTakeover,
      serverNoContextTakeover: serverNoTakeover,
      clientWindowBits: clientBits ?? offeredClientBits,
      serverWindowBits: serverBits ?? MAX_BITS,
      response: header.trim(),
    },
  };
}

/**
 * The most of our own earlier messages we use as the compressor's dictionary. RFC 7692 lets a compressor
 * refer to any part of its window, so a shorter dictionary is still a valid context takeover: measured here,
 * a 32 KiB dictionary costs ~70 µs more per message than none (zlib hashes every dictionary byte) and 4 KiB
 * ~5 µs, and repetitive JSON compresses no better with the whole window than with its last 4 KiB.
 */
export const SEND_HISTORY_BYTES = 4096;

/** A window's first buffer: enough for a few small messages. */
const SMALL_HISTORY = 1024;

/**
 * The last `cap` bytes of a direction's messages. An idle connection holds nothing; the first messages get
 * a small buffer, and past that it goes straight to the cap: steps in between would each leave a freed
 * buffer the allocator keeps (measured: doubling from 256 bytes to 32 KiB cost ~12 KiB more RSS per connection).
 */
export class History {
  private buf: Uint8Array | null = null;
  private len = 0;
  constructor(private readonly cap: number) {}

  append(data: Uint8Array): void {
    const cap = this.cap;
    const n = data.byteLength;
    if (n >= cap) {
      this.room(cap).set(data.subarray(n - cap));
      this.len = cap;
      return;
    }
    const need = this.len + n;
    if (need <= cap) {
      const b = this.room(need);
      b.set(data, this.len);
      this.len = need;
      return;
    }
    // Full: slide the window left by what no longer fits.
    const b = this.buf!;
    const keep = cap - n;
    b.copyWithin(0, this.len - keep, this.len);
    b.set(data, keep);
    this.len = cap;
  }

  /** The window as it stands (a view; valid until the next append). */
  view(): Uint8Array | null {
    return this.buf === null || this.len === 0 ? null : this.buf.subarray(0, this.len);
  }

  /** A buffer of at least `need` bytes holding the current content: SMALL_HISTORY bytes, then the cap. */
  private room(need: number): Uint8Array {
    const b = this.buf;
    if (b !== null && b.byteLength >= need) return b;
    const grown = new Uint8Array(need <= SMALL_HISTORY && SMALL_HISTORY < this.cap ? SMALL_HISTORY : this.cap);
    if (b !== null) grown.set(b.subarray(0, this.len));
    this.buf = grown;
    return grown;
  }
}

/** RFC 7692 §7.2.1: a message compressed with a sync flush ends in this empty stored block, which is not sent. */
const TAIL = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
const SYNC = zlib.constants.Z_SYNC_FLUSH;

/** The inflater's input (message + TAIL), reused across messages: zlib reads it synchronously. */
let scratch = new Uint8Array(4096);

/** One connection's permessage-deflate: the agreement and, with context takeover, each direction's window. */
export class MessageDeflate implements MessageInflater {
  private readonly sent: History | null;
  private readonly received: History | null;
  /** zlib cannot compress with a 256-byte window: it uses 512 then, whose matches reach at most 250 bytes back (window minus its 262-byte lookahead), so an 8-bit peer still reads them (as Chromium does). */
  private readonly compressBits: number;

  constructor(readonly agreement: DeflateAgreement) {
    const cb = agreement.clientWindowBits;
    this.compressBits = cb < 9 ? 9 : cb;
    this.sent = agreement.clientNoContextTakeover ? null : new History(Math.min(SEND_HISTORY_BYTES, 1 << cb));
    this.received = agreement.serverNoContextTakeover ? null : new History(1 << agreement.serverWindowBits);
  }

  /** The payload of one message as sent with RSV1 (a fresh buffer). */
  compress(payload: Uint8Array): Uint8Array {
    const dict = this.sent?.view() ?? null;
    const opts: zlib.ZlibOptions = { finishFlush: SYNC, windowBits: this.compressBits };
    if (dict !== null) opts.dictionary = dict;
    const out = zlib.deflateRawSync(payload, opts);
    this.sent?.append(payload);
    const n = out.byteLength;
    const tail = n >= 4 && out[n - 4] === 0 && out[n - 3] === 0 && out[n - 2] === 0xff && out[n - 1] === 0xff;
    return tail ? out.subarray(0, n - 4) : out;
  }

  /**
   * One received message's payload, inflated; at most `maxBytes`, so a compression bomb stops there. Throws
   * an InflateError: 1009 past the limit, 1007 for data that does not inflate (RFC 7692 §8: fail the connection).
   */
  inflate(data: Uint8Array, maxBytes: number): Uint8Array {
    const n = data.byteLength;
    if (scratch.byteLength < n + 4) scratch = new Uint8Array(Math.max(n + 4, scratch.byteLength * 2));
    scratch.set(data, 0);
    scratch.set(TAIL, n);
    const dict = this.received?.view() ?? null;
    const opts: zlib.ZlibOptions = { finishFlush: SYNC, windowBits: this.agreement.serverWindowBits, maxOutputLength: maxBytes };
    if (dict !== null) opts.dictionary = dict;
    let out: Uint8Array;
    try {
      out = zlib.inflateRawSync(scratch.subarray(0, n + 4), opts);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === "ERR_BUFFER_TOO_LARGE") throw new InflateError(CLOSE_TOO_BIG, `compressed message inflates past ${maxBytes} bytes (--max-message)`);
      throw new InflateError(CLOSE_INVALID_PAYLOAD, `compressed message does not inflate: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.received?.append(out);
    return out;
  }
}
