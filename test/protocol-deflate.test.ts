// permessage-deflate (RFC 7692) on the client side, unit by unit: the offer, the check of the server's
// answer (one test per rule), our per-message compressor and inflater against zlib streams that keep a real
// sliding window (as the `ws` package and browsers do), the window we keep, and the parser's RSV1 rules.
import { describe, expect, test } from "bun:test";
import zlib from "node:zlib";
import { acceptDeflate, History, MessageDeflate, offerHeader, type DeflateAgreement, type DeflateOffer } from "../src/protocol/deflate.ts";
import { acceptFor, parseResponse, RequestTemplate } from "../src/protocol/handshake.ts";
import { initParser, parseFrames, type FrameSink, type MessageInflater, type ParserState } from "../src/protocol/parser.ts";

const OFFER: DeflateOffer = { clientNoContextTakeover: false, serverNoContextTakeover: false, clientMaxWindowBits: null, serverMaxWindowBits: null };
const offer = (o: Partial<DeflateOffer> = {}): DeflateOffer => ({ ...OFFER, ...o });
const enc = new TextEncoder();
const SYNC = zlib.constants.Z_SYNC_FLUSH;

describe("the offer (RFC 7692 §7.1)", () => {
  test("bare by default, as Firefox and Safari offer", () => {
    expect(offerHeader(OFFER)).toBe("permessage-deflate");
  });
  test("every parameter, with and without values", () => {
    expect(offerHeader(offer({ clientNoContextTakeover: true, serverNoContextTakeover: true, clientMaxWindowBits: 10, serverMaxWindowBits: 12 }))).toBe(
      "permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits=10; server_max_window_bits=12",
    );
    expect(offerHeader(offer({ clientMaxWindowBits: true }))).toBe("permessage-deflate; client_max_window_bits");
  });
  test("the upgrade request carries it", () => {
    const req = new RequestTemplate({ host: "h:1", path: "/ws", deflate: offer({ serverNoContextTakeover: true }) }).render("K");
    expect(req).toContain("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n");
    expect(new RequestTemplate({ host: "h:1", path: "/ws" }).render("K")).not.toContain("Sec-WebSocket-Extensions");
  });
});

describe("the server's answer (RFC 7692 §5, §7.1)", () => {
  const ok = (header: string, o = OFFER): DeflateAgreement => {
    const a = acceptDeflate(header, o);
    if (!a.ok) throw new Error(`refused '${header}': ${a.reason}`);
    return a.agreement;
  };
  const refused = (header: string, o = OFFER): string => {
    const a = acceptDeflate(header, o);
    if (a.ok) throw new Error(`accepted '${header}'`);
    return a.reason;
  };

  test("a bare answer: both ends keep their context and use 32 KiB windows", () => {
    expect(ok("permessage-deflate")).toEqual({ clientNoContextTakeover: false, serverNoContextTakeover: false, clientWindowBits: 15, serverWindowBits: 15, response: "permessage-deflate" });
  });
  test("§7.1.1.1, §7.1.1.2, §7.1.2.1: the server may add server_no_context_takeover, client_no_context_takeover and server_max_window_bits unasked", () => {
    expect(ok("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")).toMatchObject({
      clientNoContextTakeover: true, serverNoContextTakeover: true, serverWindowBits: 10, clientWindowBits: 15,
    });
  });
  test("§7.1.1.2: client_no_context_takeover we offered holds even when the answer leaves it out", () => {
    expect(ok("permessage-deflate", offer({ clientNoContextTakeover: true })).clientNoContextTakeover).toBe(true);
  });
  test("RFC 6455 §9.1: an extension we did not offer fails", () => {
    expect(refused("x-webkit-deflate-frame")).toContain("'x-webkit-deflate-frame', which we did not offer");
  });
  test("RFC 6455 §9.1: more extensions than the one we offered fail", () => {
    expect(refused("permessage-deflate, permessage-deflate; client_no_context_takeover")).toContain("accepted 2 extensions");
  });
  test("§7.1: a parameter not defined for a response fails", () => {
    expect(refused("permessage-deflate; mystery=1")).toContain("parameter 'mystery' is not defined");
  });
  test("§7: a parameter given twice fails", () => {
    expect(refused("permessage-deflate; server_no_context_takeover; server_no_context_takeover")).toContain("server_no_context_takeover appears twice");
  });
  test("§7.1.1: the *_no_context_takeover parameters take no value", () => {
    expect(refused("permessage-deflate; client_no_context_takeover=1")).toContain("takes no value");
  });
  test("§7.1.2.1: server_max_window_bits must be 8 to 15, without leading zeros, and must have a value", () => {
    for (const v of ["7", "16", "010", "x"]) expect(refused(`permessage-deflate; server_max_window_bits=${v}`)).toContain("a value from 8 to 15");
    expect(refused("permessage-deflate; server_max_window_bits")).toContain("server_max_window_bits=(none)");
    expect(ok("permessage-deflate; server_max_window_bits=8").serverWindowBits).toBe(8);
  });
  test("RFC 6455 §9.1: a quoted value counts as its content", () => {
    expect(ok('permessage-deflate; server_max_window_bits="11"').serverWindowBits).toBe(11);
  });
  test("§7.1.2.1: an offered server_max_window_bits is accepted with the same or a smaller value, never a larger one, never left out", () => {
    expect(ok("permessage-deflate; server_max_window_bits=9", offer({ serverMaxWindowBits: 10 })).serverWindowBits).toBe(9);
    expect(refused("permessage-deflate; server_max_window_bits=11", offer({ serverMaxWindowBits: 10 }))).toContain("above the 10 we offered");
    expect(refused("permessage-deflate", offer({ serverMaxWindowBits: 10 }))).toContain("leaves it out");
  });
  test("§7.1.1.1: an offered server_no_context_takeover is accepted by including it", () => {
    expect(ok("permessage-deflate; server_no_context_takeover", offer({ serverNoContextTakeover: true })).serverNoContextTakeover).toBe(true);
    expect(refused("permessage-deflate", offer({ serverNoContextTakeover: true }))).toContain("server_no_context_takeover and the answer leaves it out");
  });
  test("§7.1.2.2: client_max_window_bits only when we offered it", () => {
    expect(refused("permessage-deflate; client_max_window_bits=10")).toContain("we did not offer it");
  });
  test("§7.1.2.2: offered bare, the server picks our window", () => {
    expect(ok("permessage-deflate; client_max_window_bits=10", offer({ clientMaxWindowBits: true })).clientWindowBits).toBe(10);
    expect(ok("permessage-deflate", offer({ clientMaxWindowBits: true })).clientWindowBits).toBe(15);
  });
  test("§7.1.2.2: offered with a value, the answer may lower it but not raise it; left out, we keep our value", () => {
    expect(ok("permessage-deflate; client_max_window_bits=9", offer({ clientMaxWindowBits: 12 })).clientWindowBits).toBe(9);
    expect(refused("permessage-deflate; client_max_window_bits=13", offer({ clientMaxWindowBits: 12 }))).toContain("above the 12 we offered");
    expect(ok("permessage-deflate", offer({ clientMaxWindowBits: 12 })).clientWindowBits).toBe(12);
  });
  test("§7.1.2.2: client_max_window_bits in an answer must have a value", () => {
    expect(refused("permessage-deflate; client_max_window_bits", offer({ clientMaxWindowBits: true }))).toContain("must give a value");
  });
  test("a header that is not an extension list fails", () => {
    expect(refused("permessage-deflate;;")).toContain("malformed");
    expect(refused('permessage-deflate; server_max_window_bits="10')).toContain("malformed");
  });

  const key = "dGhlIHNhbXBsZSBub25jZQ==";
  const response = (...ext: string[]): Uint8Array =>
    enc.encode(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n${ext.map((e) => `Sec-WebSocket-Extensions: ${e}\r\n`).join("")}\r\n`);
  test("the handshake: agreed, declined (no header), or BAD_EXTENSION with the rule", () => {
    expect(parseResponse(response("permessage-deflate; server_max_window_bits=10"), key, [], OFFER)).toMatchObject({ ok: true, deflate: { serverWindowBits: 10 } });
    expect(parseResponse(response(), key, [], OFFER)).toMatchObject({ ok: true, deflate: null });
    expect(parseResponse(response("permessage-deflate; server_max_window_bits=16"), key, [], OFFER)).toMatchObject({ ok: false, cause: "BAD_EXTENSION", detail: expect.stringContaining("8 to 15") });
    expect(parseResponse(response("permessage-deflate"), key)).toMatchObject({ ok: false, cause: "BAD_EXTENSION" });
  });
  test("RFC 7230 §3.2.2: repeated Sec-WebSocket-Extensions lines form one list (here: two extensions, refused)", () => {
    expect(parseResponse(response("permessage-deflate", "permessage-deflate"), key, [], OFFER)).toMatchObject({ ok: false, cause: "BAD_EXTENSION", detail: expect.stringContaining("accepted 2") });
  });
});

/** A zlib stream with a real sliding window, driven one message at a time with a sync flush (what `ws` does). */
function windowed(stream: zlib.DeflateRaw | zlib.InflateRaw): (data: Uint8Array) => Promise<Buffer> {
  return (data) =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const on = (c: Buffer): void => void chunks.push(c);
      stream.on("data", on);
      stream.once("error", reject);
      stream.write(data);
      stream.flush(SYNC, () => {
        stream.off("data", on);
        stream.off("error", reject);
        resolve(Buffer.concat(chunks));
      });
    });
}

const TAIL = Buffer.from([0, 0, 0xff, 0xff]);
const agreement = (a: Partial<DeflateAgreement> = {}): DeflateAgreement => ({
  clientNoContextTakeover: false, serverNoContextTakeover: false, clientWindowBits: 15, serverWindowBits: 15, response: "permessage-deflate", ...a,
});
/** JSON-like lines, different values each: compressible as real feeds are. */
const jsonLines = (bytes: number): Uint8Array => {
  let text = "";
  for (let i = 0; text.length < bytes; i++) text += JSON.stringify({ type: ["trade", "quote"][i % 2], id: 1000 + i, price: ((i * 7919) % 10_000) / 100, user: `u-${(i * 104_729) % 90_000}` }) + "\n";
  return enc.encode(text.slice(0, bytes));
};

/** A run of 700-byte JSON-like messages where each from the fourth on repeats the one three before (2,100 bytes back). */
const messages = (): Uint8Array[] => {
  const pool = jsonLines(8192);
  const out: Uint8Array[] = [];
  for (let i = 0; i < 40; i++) out.push(pool.subarray((i % 3) * 1000, (i % 3) * 1000 + 700));
  return out;
};

describe("compression per message, read by a real sliding window (context takeover as a preset dictionary)", () => {
  test("with takeover: every message we compress inflates in one long-lived window, and repeats shrink to back-references", async () => {
    const ours = new MessageDeflate(agreement());
    const inflate = windowed(zlib.createInflateRaw({ windowBits: 15 }));
    const sizes: number[] = [];
    for (const m of messages()) {
      const z = ours.compress(m);
      sizes.push(z.byteLength);
      expect(Buffer.from(await inflate(Buffer.concat([z, TAIL])))).toEqual(Buffer.from(m));
    }
    // Messages 3.. repeat one within our dictionary: a few bytes each.
    expect(Math.max(...sizes.slice(3))).toBeLessThan(Math.min(...sizes.slice(0, 3)) / 4);
  });

  test("with takeover: what a long-lived compressor sends (referring to earlier messages) inflates here", async () => {
    const ours = new MessageDeflate(agreement());
    const deflate = windowed(zlib.createDeflateRaw({ windowBits: 15 }));
    for (const m of messages()) {
      const z = await deflate(m);
      expect(z.subarray(z.length - 4)).toEqual(TAIL);
      expect(Buffer.from(ours.inflate(z.subarray(0, z.length - 4), 1 << 20))).toEqual(Buffer.from(m));
    }
  });

  test("with a small server window (2^9): only the last 512 bytes are kept, and that is enough", async () => {
    const ours = new MessageDeflate(agreement({ serverWindowBits: 9 }));
    const deflate = windowed(zlib.createDeflateRaw({ windowBits: 9 }));
    for (const m of messages()) {
      const z = await deflate(m);
      expect(Buffer.from(ours.inflate(z.subarray(0, z.length - 4), 1 << 20))).toEqual(Buffer.from(m));
    }
  });

  test("without takeover: each message stands alone both ways (a fresh inflater reads it; a repeat costs as much as the first)", () => {
    const ours = new MessageDeflate(agreement({ clientNoContextTakeover: true, serverNoContextTakeover: true }));
    const ms = messages();
    const sizes = ms.map((m) => {
      const z = ours.compress(m);
      expect(zlib.inflateRawSync(Buffer.concat([z, TAIL]), { finishFlush: SYNC })).toEqual(Buffer.from(m));
      return z.byteLength;
    });
    expect(sizes[3]).toBe(sizes[0]!);
    for (const m of ms) {
      const z = zlib.deflateRawSync(m, { finishFlush: SYNC });
      expect(Buffer.from(ours.inflate(z.subarray(0, z.length - 4), 1 << 20))).toEqual(Buffer.from(m));
    }
  });

  test("RFC 7692 §7.2.3.6: an empty message compresses to one 0x00 byte and inflates back to nothing", () => {
    const ours = new MessageDeflate(agreement());
    expect([...ours.compress(new Uint8Array(0))]).toEqual([0]);
    expect(ours.inflate(new Uint8Array([0]), 100).byteLength).toBe(0);
  });

  test("RFC 7692 §7.2.3.5: a message compressed in a final block (BFINAL) by a peer without sync flush inflates", () => {
    const ours = new MessageDeflate(agreement({ serverNoContextTakeover: true }));
    const z = zlib.deflateRawSync(Buffer.from("hello, final block"));
    expect(Buffer.from(ours.inflate(Buffer.concat([z, Buffer.from([0])]), 100)).toString()).toBe("hello, final block");
  });

  test("a compression bomb stops at the limit (1009) and data that does not inflate fails with 1007", () => {
    const ours = new MessageDeflate(agreement());
    const bomb = zlib.deflateRawSync(Buffer.alloc(8 << 20), { finishFlush: SYNC, level: 9 });
    expect(bomb.byteLength).toBeLessThan(16 << 10);
    expect(() => ours.inflate(bomb.subarray(0, bomb.length - 4), 1 << 20)).toThrow(expect.objectContaining({ code: 1009 }));
    expect(() => ours.inflate(new Uint8Array([0xff, 0xff, 0xff]), 1 << 20)).toThrow(expect.objectContaining({ code: 1007 }));
    // Exactly the limit is allowed.
    const z = zlib.deflateRawSync(Buffer.alloc(1000, 7), { finishFlush: SYNC });
    expect(ours.inflate(z.subarray(0, z.length - 4), 1000).byteLength).toBe(1000);
  });

  test("with a small client window (2^9): what we compress inflates in a 512-byte window", async () => {
    const small = new MessageDeflate(agreement({ clientWindowBits: 9 }));
    const read = windowed(zlib.createInflateRaw({ windowBits: 9 }));
    for (const m of messages()) expect(Buffer.from(await read(Buffer.concat([small.compress(m), TAIL])))).toEqual(Buffer.from(m));
  });
});

describe("the window (History)", () => {
  const bytes = (from: number, n: number): Uint8Array => new Uint8Array(n).map((_, i) => (from + i) & 0xff);
  test("empty until something is appended; then holds everything up to the cap", () => {
    const h = new History(1000);
    expect(h.view()).toBeNull();
    h.append(bytes(0, 300));
    h.append(bytes(300, 300));
    expect(h.view()).toEqual(bytes(0, 600));
  });
  test("past the cap it slides: the last `cap` bytes, in order", () => {
    const h = new History(1000);
    for (let i = 0; i < 7; i++) h.append(bytes(i * 300, 300));
    expect(h.view()).toEqual(bytes(2100 - 1000, 1000));
  });
  test("growing from its first small buffer to the full window keeps every byte in order", () => {
    const h = new History(4096);
    for (let i = 0; i < 5; i++) h.append(bytes(i * 300, 300));
    expect(h.view()).toEqual(bytes(0, 1500));
    for (let i = 5; i < 20; i++) h.append(bytes(i * 300, 300));
    expect(h.view()).toEqual(bytes(6000 - 4096, 4096));
  });
  test("one message larger than the window keeps its own tail", () => {
    const h = new History(512);
    h.append(bytes(0, 100));
    h.append(bytes(100, 2000));
    expect(h.view()).toEqual(bytes(2100 - 512, 512));
  });
});

type Ev = [string, ...unknown[]];
class State implements ParserState {
  pbuf: Uint8Array | null = null; fragOp = 0; fragParts: Uint8Array[] | null = null; fragLen = 0; pdone = false; fragComp = false;
  pmd: MessageInflater | null = null;
  events: Ev[] = [];
}
const sink: FrameSink<State> = {
  message: (s, op, d) => s.events.push(["message", op, new TextDecoder().decode(d)]),
  ping: (s, d) => s.events.push(["ping", d.byteLength]),
  pong: (s, d) => s.events.push(["pong", d.byteLength]),
  close: (s, code) => s.events.push(["close", code]),
  fail: (s, code, reason) => s.events.push(["fail", code, reason]),
};
/** A server frame with RSV bits (`rsv` 4 = RSV1). */
function frame(opcode: number, body: Uint8Array, { fin = true, rsv = 0 } = {}): Uint8Array {
  const out = new Uint8Array(2 + body.byteLength);
  out[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  out[1] = body.byteLength;
  out.set(body, 2);
  return out;
}
const deflated = (text: string): Uint8Array => {
  const z = zlib.deflateRawSync(Buffer.from(text), { finishFlush: SYNC });
  return z.subarray(0, z.length - 4);
};
function feed(deflate: boolean, ...frames: Uint8Array[]): Ev[] {
  const s = new State();
  initParser(s);
  if (deflate) s.pmd = new MessageDeflate(agreement());
  for (const f of frames) parseFrames(s, f, sink, 1 << 16);
  return s.events;
}

describe("the parser's RSV1 rules (RFC 7692 §6)", () => {
  test("a compressed message (RSV1) is delivered inflated; an uncompressed one as it is", () => {
    expect(feed(true, frame(1, deflated("hello"), { rsv: 4 }), frame(1, enc.encode("plain")))).toEqual([["message", 1, "hello"], ["message", 1, "plain"]]);
  });
  test("a compressed message in fragments: RSV1 on the first only, inflated once whole", () => {
    const z = deflated("hello fragmented world");
    expect(feed(true, frame(1, z.subarray(0, 5), { fin: false, rsv: 4 }), frame(9, new Uint8Array(0)), frame(0, z.subarray(5)))).toEqual([
      ["ping", 0], ["message", 1, "hello fragmented world"],
    ]);
  });
  test("RSV1 without permessage-deflate negotiated fails with 1002", () => {
    expect(feed(false, frame(1, deflated("x"), { rsv: 4 }))[0]!.slice(0, 2)).toEqual(["fail", 1002]);
  });
  test("RSV1 on a control frame, on a continuation frame, and RSV2 fail with 1002", () => {
    expect(feed(true, frame(9, new Uint8Array(0), { rsv: 4 }))[0]).toEqual(["fail", 1002, "RSV1 (compressed) set on a control frame"]);
    expect(feed(true, frame(2, new Uint8Array([1]), { fin: false }), frame(0, new Uint8Array([2]), { rsv: 4 }))[0]).toEqual(["fail", 1002, "RSV1 (compressed) set on a continuation frame"]);
    expect(feed(true, frame(2, new Uint8Array([1]), { rsv: 2 }))[0]!.slice(0, 2)).toEqual(["fail", 1002]);
  });
  test("text is checked for UTF-8 after inflation (1007)", () => {
    const z = zlib.deflateRawSync(Buffer.from([0xc3, 0x28]), { finishFlush: SYNC });
    expect(feed(true, frame(1, z.subarray(0, z.length - 4), { rsv: 4 }))[0]!.slice(0, 2)).toEqual(["fail", 1007]);
  });
  test("a compressed payload that does not inflate fails with 1007; past --max-message with 1009", () => {
    expect(feed(true, frame(2, new Uint8Array([0xff, 0xff]), { rsv: 4 }))[0]!.slice(0, 2)).toEqual(["fail", 1007]);
    const bomb = zlib.deflateRawSync(Buffer.alloc(1 << 20), { finishFlush: SYNC, level: 9 });
    const body = bomb.subarray(0, bomb.length - 4);
    expect(body.byteLength).toBeLessThan(126 * 16);
    const s = new State();
    initParser(s);
    s.pmd = new MessageDeflate(agreement());
    // A 16-bit length frame: the bomb is ~1 KiB on the wire.
    const head = new Uint8Array([0xc2, 126, body.byteLength >> 8, body.byteLength & 0xff]);
    parseFrames(s, new Uint8Array([...head, ...body]), sink, 1 << 16);
    expect(s.events[0]).toEqual(["fail", 1009, "compressed message inflates past 65536 bytes (--max-message)"]);
  });
});
