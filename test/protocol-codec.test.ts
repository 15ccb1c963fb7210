// Unit tests of the client codec, named by the RFC 6455 behaviour they check.
import { describe, expect, test } from "bun:test";
import { acceptFor, generateKey, parseResponse, RequestTemplate } from "../src/protocol/handshake.ts";
import { MaskSource, applyMask } from "../src/protocol/mask.ts";
import { encodeClose, encodeFrame, maxFrameBytes, writeMaskedFrame } from "../src/protocol/frame.ts";
import { initParser, parseFrames, type FrameSink, type ParserState } from "../src/protocol/parser.ts";
import { closeCodeMeaning, isValidWireCloseCode } from "../src/protocol/close-codes.ts";
import { isValidUtf8 } from "../src/protocol/utf8.ts";

const masks = new MaskSource();

/** Unmasks a client frame: [opcode, fin, payload, mask]. */
function decodeClientFrame(f: Uint8Array): { opcode: number; fin: boolean; payload: Uint8Array; mask: Uint8Array } {
  expect(f[1]! & 0x80).toBe(0x80);
  let len = f[1]! & 0x7f;
  let at = 2;
  if (len === 126) { len = (f[2]! << 8) | f[3]!; at = 4; }
  else if (len === 127) { len = Number(new DataView(f.buffer, f.byteOffset).getBigUint64(2)); at = 10; }
  const mask = f.slice(at, at + 4);
  const payload = new Uint8Array(len);
  applyMask(f, at + 4, payload, 0, len, mask, 0);
  expect(f.byteLength).toBe(at + 4 + len);
  return { opcode: f[0]! & 0xf, fin: (f[0]! & 0x80) !== 0, payload, mask };
}

/** A server frame (unmasked unless asked). */
function sframe(opcode: number, payload: Uint8Array | string, { fin = true, rsv = 0, mask = false } = {}): Uint8Array {
  const body = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const len = body.byteLength;
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 255);
  else head.push(m | 127, 0, 0, 0, 0, (len >>> 24) & 255, (len >> 16) & 255, (len >> 8) & 255, len & 255);
  const out = new Uint8Array(head.length + (mask ? 4 : 0) + len);
  out.set(head, 0);
  out.set(body, head.length + (mask ? 4 : 0));
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.byteLength; }
  return out;
}

type Ev = [string, ...unknown[]];
class State implements ParserState {
  pbuf: Uint8Array | null = null; fragOp = 0; fragParts: Uint8Array[] | null = null; fragLen = 0; pdone = false; fragComp = false; pmd = null;
  events: Ev[] = [];
}
const sink: FrameSink<State> = {
  message: (s, op, d) => s.events.push(["message", op, new TextDecoder().decode(d), d.byteLength]),
  ping: (s, d) => s.events.push(["ping", new TextDecoder().decode(d)]),
  pong: (s, d) => s.events.push(["pong", new TextDecoder().decode(d)]),
  close: (s, code, reason) => s.events.push(["close", code, reason]),
  fail: (s, code, reason) => s.events.push(["fail", code, reason]),
};
function feed(bytes: Uint8Array, chunk = bytes.byteLength, max = 1 << 20): Ev[] {
  const s = new State();
  initParser(s);
  for (let i = 0; i < bytes.byteLength; i += chunk) parseFrames(s, bytes.subarray(i, i + chunk), sink, max);
  return s.events;
}

describe("opening handshake (RFC 6455 §4)", () => {
  test("Sec-WebSocket-Accept of the RFC's sample key", () => {
    expect(acceptFor("dGhlIHNhbXBsZSBub25jZQ==")).toBe("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  });
  test("keys are 16 random bytes in base64, fresh each time", () => {
    const a = generateKey();
    const b = generateKey();
    expect(a).toHaveLength(24);
    expect(Buffer.from(a, "base64")).toHaveLength(16);
    expect(a).not.toBe(b);
  });
  test("the request carries the required headers, subprotocols and extra headers", () => {
    const req = new RequestTemplate({ host: "127.0.0.1:8080", path: "/ws", subprotocols: ["chat", "v2"], headers: [["Authorization", "Bearer x"]] }).render("KEY");
    expect(req.startsWith("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")).toBe(true);
    for (const h of ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: KEY", "Sec-WebSocket-Protocol: chat, v2", "Authorization: Bearer x"]) {
      expect(req).toContain(h + "\r\n");
    }
    expect(req.endsWith("\r\n\r\n")).toBe(true);
  });
  const key = "dGhlIHNhbXBsZSBub25jZQ==";
  const ok = (extra = "") => new TextEncoder().encode(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n${extra}\r\n`);
  test("a correct 101 is accepted, with the offset of the first frame", () => {
    const buf = concat(ok(), new Uint8Array([0x81, 0]));
    const r = parseResponse(buf, key);
    expect(r).toEqual({ ok: true, headerBytes: buf.byteLength - 2, protocol: "", deflate: null });
  });
  test("an incomplete header block waits for more bytes", () => {
    expect(parseResponse(ok().subarray(0, 30), key)).toBeNull();
  });
  test("a wrong accept key is refused (§4.1 step 4)", () => {
    const bad = new TextEncoder().encode(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n`);
    expect(parseResponse(bad, key)).toMatchObject({ ok: false, cause: "BAD_ACCEPT" });
  });
  test("a non-101 status is reported with its code", () => {
    const r = parseResponse(new TextEncoder().encode("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"), key);
    expect(r).toMatchObject({ ok: false, cause: "HTTP_503", status: 503 });
  });
  test("missing Upgrade/Connection headers, garbage and unoffered subprotocols are refused", () => {
    const noUp = new TextEncoder().encode(`HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`);
    expect(parseResponse(noUp, key)).toMatchObject({ ok: false, cause: "BAD_RESPONSE" });
    expect(parseResponse(new TextEncoder().encode("SSH-2.0-OpenSSH\r\n\r\n"), key)).toMatchObject({ ok: false, cause: "BAD_RESPONSE" });
    expect(parseResponse(ok("Sec-WebSocket-Protocol: other\r\n"), key, ["chat"])).toMatchObject({ ok: false, cause: "BAD_SUBPROTOCOL" });
    expect(parseResponse(ok("Sec-WebSocket-Protocol: chat\r\n"), key, ["chat"])).toMatchObject({ ok: true, protocol: "chat" });
    expect(parseResponse(ok("Sec-WebSocket-Extensions: permessage-deflate\r\n"), key)).toMatchObject({ ok: false, cause: "BAD_EXTENSION" });
  });
});

describe("client frames (RFC 6455 §5.2, §5.3)", () => {
  test("every frame is masked, with a fresh key each time", () => {
    const p = new TextEncoder().encode("hello");
    const a = decodeClientFrame(encodeFrame(1, p, masks));
    const b = decodeClientFrame(encodeFrame(1, p, masks));
    expect(new TextDecoder().decode(a.payload)).toBe("hello");
    expect(a.opcode).toBe(1);
    expect(a.fin).toBe(true);
    expect(Buffer.from(a.mask).equals(Buffer.from(b.mask))).toBe(false);
  });
  test("7-bit, 16-bit and 64-bit lengths", () => {
    for (const len of [0, 1, 125, 126, 65535, 65536, 70000]) {
      const p = new Uint8Array(len).map((_, i) => i & 0xff);
      const out = new Uint8Array(maxFrameBytes(len));
      const n = writeMaskedFrame(out, 0, 2, p, len, masks);
      const f = decodeClientFrame(out.subarray(0, n));
      expect(f.payload).toEqual(p);
    }
  });
  test("frames written back to back into one buffer (one write) each decode with their own mask", () => {
    const p = new Uint8Array(100).map((_, i) => i);
    const one = maxFrameBytes(100);
    const out = new Uint8Array(3 * one);
    let at = 0;
    for (let i = 0; i < 3; i++) at += writeMaskedFrame(out, at, 2, p, 100, masks);
    expect(at).toBe(3 * one);
    const frames = [0, 1, 2].map((i) => decodeClientFrame(out.subarray(i * one, (i + 1) * one)));
    for (const f of frames) expect(f.payload).toEqual(p);
    expect(Buffer.from(frames[0]!.mask).equals(Buffer.from(frames[1]!.mask))).toBe(false);
  });
  test("close frames carry the code and a reason cut to the control-frame limit", () => {
    const f = decodeClientFrame(encodeClose(1000, "x".repeat(300), masks));
    expect(f.opcode).toBe(8);
    expect((f.payload[0]! << 8) | f.payload[1]!).toBe(1000);
    expect(f.payload.byteLength).toBe(125);
  });
});

describe("incremental parser (RFC 6455 §5)", () => {
  const stream = concat(sframe(2, "abc"), sframe(1, "héllo"), sframe(9, "p"), sframe(1, "x".repeat(300)), sframe(2, new Uint8Array(70000)));
  test("whole and split reads give the same events (every chunk size)", () => {
    const whole = feed(stream);
    expect(whole.map((e) => e[0])).toEqual(["message", "message", "ping", "message", "message"]);
    expect(whole[1]).toEqual(["message", 1, "héllo", 6]);
    expect(whole[4]![3]).toBe(70000);
    for (const chunk of [1, 2, 3, 7, 100]) expect(feed(stream, chunk)).toEqual(whole);
  });
  test("fragmented messages reassemble, with control frames interleaved (§5.4)", () => {
    const ev = feed(concat(sframe(1, "he", { fin: false }), sframe(9, "ping!"), sframe(0, "ll", { fin: false }), sframe(10, "pong"), sframe(0, "o")), 1);
    expect(ev).toEqual([["ping", "ping!"], ["pong", "pong"], ["message", 1, "hello", 5]]);
  });
  test("close frames give the code and reason; no code means 1005", () => {
    expect(feed(concat(sframe(8, new Uint8Array([0x03, 0xe8, 0x62, 0x79, 0x65])), sframe(1, "after")))).toEqual([["close", 1000, "bye"]]);
    expect(feed(sframe(8, new Uint8Array(0)))).toEqual([["close", 1005, ""]]);
  });
  test("protocol violations fail with 1002", () => {
    const cases: [string, Uint8Array][] = [
      ["masked server frame", sframe(2, "a", { mask: true })],
      ["reserved bits", sframe(2, "a", { rsv: 4 })],
      ["reserved opcode", sframe(3, "a")],
      ["fragmented control frame", sframe(9, "a", { fin: false })],
      ["control frame over 125 bytes", sframe(9, "x".repeat(126))],
      ["continuation with nothing to continue", sframe(0, "a")],
      ["new message inside a fragmented one", concat(sframe(1, "a", { fin: false }), sframe(1, "b"))],
      ["1-byte close payload", sframe(8, new Uint8Array([3]))],
      ["close code 1005 on the wire", sframe(8, new Uint8Array([0x03, 0xed]))],
      ["non-minimal length", new Uint8Array([0x82, 126, 0, 5, 1, 2, 3, 4, 5])],
    ];
    for (const [what, bytes] of cases) {
      const ev = feed(bytes);
      expect([what, ev[0]?.[0], ev[0]?.[1]]).toEqual([what, "fail", 1002]);
    }
  });
  test("invalid UTF-8 in text messages and close reasons fails with 1007 (§8.1)", () => {
    expect(feed(sframe(1, new Uint8Array([0xc3, 0x28])))[0]!.slice(0, 2)).toEqual(["fail", 1007]);
    expect(feed(concat(sframe(1, new Uint8Array([0xe2, 0x82]), { fin: false }), sframe(0, new Uint8Array([0xac]))))).toEqual([["message", 1, "€", 3]]);
    expect(feed(sframe(8, new Uint8Array([0x03, 0xe8, 0xff])))[0]!.slice(0, 2)).toEqual(["fail", 1007]);
    expect(feed(sframe(2, new Uint8Array([0xff])))[0]!.slice(0, 2)).toEqual(["message", 2]);
  });
  test("messages over the limit fail with 1009, also across fragments", () => {
    expect(feed(sframe(2, new Uint8Array(200)), 1000, 100)[0]!.slice(0, 2)).toEqual(["fail", 1009]);
    expect(feed(concat(sframe(2, new Uint8Array(60), { fin: false }), sframe(0, new Uint8Array(60))), 1000, 100)[0]!.slice(0, 2)).toEqual(["fail", 1009]);
  });
});

describe("close codes and UTF-8", () => {
  test("wire-valid close codes (§7.4)", () => {
    for (const c of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999]) expect(isValidWireCloseCode(c)).toBe(true);
    for (const c of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) expect(isValidWireCloseCode(c)).toBe(false);
    expect(closeCodeMeaning(1006)).toContain("without a close frame");
    expect(closeCodeMeaning(4001)).toBe("application-defined");
  });
  test("UTF-8 validation", () => {
    expect(isValidUtf8(new TextEncoder().encode("ok ✓ 😀"))).toBe(true);
    expect(isValidUtf8(new Uint8Array([0xed, 0xa0, 0x80]))).toBe(false); // surrogate
    expect(isValidUtf8(new Uint8Array([0xc0, 0x80]))).toBe(false); // overlong
    expect(isValidUtf8(new Uint8Array(0))).toBe(true);
  });
});
