// Incremental frame parser for the client side (RFC 6455 §5): frames split across TCP reads, fragmented
// messages with control frames interleaved, close codes, size limits and UTF-8 checks, and compressed
// messages (RSV1) when the connection negotiated permessage-deflate (RFC 7692 §6). State lives in fields
// of the caller's per-connection object and events go to one shared sink, so parsing allocates nothing on
// the common path (whole uncompressed frames in one read): message payloads are views into the read buffer.
import {
  OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, MAX_CONTROL_PAYLOAD,
} from "./constants.ts";
import { CLOSE_INVALID_PAYLOAD, CLOSE_NO_STATUS, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, isValidWireCloseCode } from "./close-codes.ts";
import { isValidUtf8 } from "./utf8.ts";

/** Per-connection parser state; the connection object carries these fields itself. */
export interface ParserState {
  /** Bytes of an incomplete frame kept from the previous read, or null. */
  pbuf: Uint8Array | null;
  /** Opcode of the fragmented message in progress (text or binary), 0 when none. */
  fragOp: number;
  /** Fragments of the message in progress (copied), or null. */
  fragParts: Uint8Array[] | null;
  fragLen: number;
  /** Set once a close frame arrived or the parser failed: later bytes are ignored. */
  pdone: boolean;
  /** The message in progress is compressed (its first frame had RSV1). */
  fragComp: boolean;
  /** permessage-deflate negotiated on this connection: RSV1 marks compressed messages. Null: RSV bits fail. */
  pmd: MessageInflater | null;
}

/** Inflates one compressed message (permessage-deflate). */
export interface MessageInflater {
  /** The inflated payload, at most maxBytes; throws an InflateError to fail the connection. */
  inflate(data: Uint8Array, maxBytes: number): Uint8Array;
}

/** A compressed message that cannot be delivered: the connection fails with `code` (1007 or 1009). */
export class InflateError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Receives parsed events. Payload views are valid only during the call. */
export interface FrameSink<S> {
  message(s: S, opcode: number, data: Uint8Array): void;
  ping(s: S, data: Uint8Array): void;
  pong(s: S, data: Uint8Array): void;
  /** A close frame: code (1005 when absent) and reason. */
  close(s: S, code: number, reason: string): void;
  /** The peer broke the protocol: the connection must be failed with this close code. */
  fail(s: S, code: number, reason: string): void;
}

export function initParser(s: ParserState): void {
  s.pbuf = null;
  s.fragOp = 0;
  s.fragParts = null;
  s.fragLen = 0;
  s.pdone = false;
  s.fragComp = false;
}

const decoder = new TextDecoder();

function failWith<S extends ParserState>(s: S, sink: FrameSink<S>, code: number, reason: string): void {
  s.pdone = true;
  s.pbuf = null;
  s.fragParts = null;
  sink.fail(s, code, reason);
}

/** A compressed message's payload inflated, or null once the connection was failed (1007 or 1009). */
function inflateOrFail<S extends ParserState>(s: S, sink: FrameSink<S>, data: Uint8Array, maxMessage: number): Uint8Array | null {
  try {
    return s.pmd!.inflate(data, maxMessage);
  } catch (err) {
    if (!(err instanceof InflateError)) throw err;
    failWith(s, sink, err.code, err.message);
    return null;
  }
}

/** Feeds one read's bytes to the parser. */
export function parseFrames<S extends ParserState>(s: S, chunk: Uint8Array, sink: FrameSink<S>, maxMessage: number): void {
  if (s.pdone) return;
  let buf = chunk;
  if (s.pbuf !== null) {
    const joined = new Uint8Array(s.pbuf.byteLength + chunk.byteLength);
    joined.set(s.pbuf, 0);
    joined.set(chunk, s.pbuf.byteLength);
    buf = joined;
    s.pbuf = null;
  }
  const total = buf.byteLength;
  let at = 0;
  while (at < total) {
    if (total - at < 2) break;
    const b0 = buf[at]!;
    const b1 = buf[at + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    // RSV1 is permessage-deflate's "compressed" bit, allowed on the first frame of a data message only
    // (RFC 7692 §6); RSV2/RSV3 have no extension of ours.
    let comp = false;
    if ((b0 & 0x70) !== 0) {
      if ((b0 & 0x30) !== 0 || s.pmd === null) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "reserved bits set without a negotiated extension");
      if ((opcode & 0x8) !== 0) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "RSV1 (compressed) set on a control frame");
      if (opcode === OP_CONTINUATION) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "RSV1 (compressed) set on a continuation frame");
      comp = true;
    }
    if ((b1 & 0x80) !== 0) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "server frames must not be masked");
    let len = b1 & 0x7f;
    let hdr = 2;
    if (len === 126) {
      if (total - at < 4) break;
      len = (buf[at + 2]! << 8) | buf[at + 3]!;
      hdr = 4;
      if (len < 126) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "length not in minimal form");
    } else if (len === 127) {
      if (total - at < 10) break;
      const hi = ((buf[at + 2]! << 24) | (buf[at + 3]! << 16) | (buf[at + 4]! << 8) | buf[at + 5]!) >>> 0;
      const lo = ((buf[at + 6]! << 24) | (buf[at + 7]! << 16) | (buf[at + 8]! << 8) | buf[at + 9]!) >>> 0;
      if (hi & 0x80000000) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "64-bit length with the top bit set");
      len = hi * 0x100000000 + lo;
      hdr = 10;
      if (len < 65536) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "length not in minimal form");
    }
    const control = (opcode & 0x8) !== 0;
    if (control) {
      if (opcode !== OP_CLOSE && opcode !== OP_PING && opcode !== OP_PONG) {
        return failWith(s, sink, CLOSE_PROTOCOL_ERROR, `reserved control opcode 0x${opcode.toString(16)}`);
      }
      if (!fin) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "fragmented control frame");
      if (len > MAX_CONTROL_PAYLOAD) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, `control frame payload of ${len} bytes (max 125)`);
    } else {
      if (opcode !== OP_CONTINUATION && opcode !== OP_TEXT && opcode !== OP_BINARY) {
        return failWith(s, sink, CLOSE_PROTOCOL_ERROR, `reserved data opcode 0x${opcode.toString(16)}`);
      }
      if (opcode === OP_CONTINUATION) {
        if (s.fragOp === 0) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "continuation frame without a message in progress");
      } else if (s.fragOp !== 0) {
        return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "new data frame while a fragmented message is in progress");
      }
      if (len > maxMessage || s.fragLen + len > maxMessage) {
        return failWith(s, sink, CLOSE_TOO_BIG, `message larger than ${maxMessage} bytes`);
      }
    }
    if (total - at < hdr + len) break;
    const start = at + hdr;
    const payload = buf.subarray(start, start + len);
    at = start + len;

    if (control) {
      if (opcode === OP_PING) sink.ping(s, payload);
      else if (opcode === OP_PONG) sink.pong(s, payload);
      else {
        let code = CLOSE_NO_STATUS;
        let reason = "";
        if (len === 1) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload");
        if (len >= 2) {
          code = (payload[0]! << 8) | payload[1]!;
          if (!isValidWireCloseCode(code)) return failWith(s, sink, CLOSE_PROTOCOL_ERROR, `invalid close code ${code}`);
          const r = payload.subarray(2);
          if (!isValidUtf8(r)) return failWith(s, sink, CLOSE_INVALID_PAYLOAD, "close reason is not valid UTF-8");
          reason = decoder.decode(r);
        }
        s.pdone = true;
        s.pbuf = null;
        s.fragParts = null;
        sink.close(s, code, reason);
        return;
      }
      if (s.pdone) return;
      continue;
    }

    if (opcode !== OP_CONTINUATION && fin) {
      // Whole message in one frame: the common case, no copy (unless compressed).
      let data = payload;
      if (comp) {
        const inflated = inflateOrFail(s, sink, payload, maxMessage);
        if (inflated === null) return;
        data = inflated;
      }
      if (opcode === OP_TEXT && !isValidUtf8(data)) return failWith(s, sink, CLOSE_INVALID_PAYLOAD, "text message is not valid UTF-8");
      sink.message(s, opcode, data);
      if (s.pdone) return;
      continue;
    }
    if (opcode !== OP_CONTINUATION) {
      s.fragOp = opcode;
      s.fragParts = [];
      s.fragLen = 0;
      s.fragComp = comp;
    }
    s.fragParts!.push(payload.slice());
    s.fragLen += len;
    if (fin) {
      const parts = s.fragParts!;
      let msg: Uint8Array = new Uint8Array(s.fragLen);
      let o = 0;
      for (const p of parts) { msg.set(p, o); o += p.byteLength; }
      const op = s.fragOp;
      s.fragOp = 0;
      s.fragParts = null;
      s.fragLen = 0;
      if (s.fragComp) {
        s.fragComp = false;
        const inflated = inflateOrFail(s, sink, msg, maxMessage);
        if (inflated === null) return;
        msg = inflated;
      }
      if (op === OP_TEXT && !isValidUtf8(msg)) return failWith(s, sink, CLOSE_INVALID_PAYLOAD, "text message is not valid UTF-8");
      sink.message(s, op, msg);
      if (s.pdone) return;
    }
  }
  if (at < total) s.pbuf = buf.slice(at);
}
