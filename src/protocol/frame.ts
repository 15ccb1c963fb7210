// Frame encoder (RFC 6455 §5.2) for the client side: every frame masked with a fresh key, written into a
// caller-owned buffer sized once with maxFrameBytes().
import { OP_CLOSE, OP_PONG, MAX_CONTROL_PAYLOAD } from "./constants.ts";
import { applyMask, type MaskSource } from "./mask.ts";

/** Header bytes (including the 4-byte mask) for a masked client frame carrying `len` payload bytes. */
export function maskedHeaderBytes(len: number): number {
  return (len < 126 ? 2 : len < 65536 ? 4 : 10) + 4;
}

export function maxFrameBytes(payloadLen: number): number {
  return maskedHeaderBytes(payloadLen) + payloadLen;
}

/** RSV1: under permessage-deflate, the message is compressed (RFC 7692 §6; first frame of a message only). */
export const RSV1 = 0x40;

/**
 * Writes one masked frame (FIN set unless `fin` is false; `rsv` RSV1 for a compressed message) for
 * payload[0..len) into out at `start` (several frames can share one buffer, and so one write). Returns the
 * frame length. `out` must hold start + maxFrameBytes(len).
 */
export function writeMaskedFrame(out: Uint8Array, start: number, opcode: number, payload: Uint8Array, len: number, masks: MaskSource, fin = true, rsv = 0): number {
  out[start] = (fin ? 0x80 : 0) | rsv | opcode;
  let at = start;
  if (len < 126) {
    out[at + 1] = 0x80 | len;
    at += 2;
  } else if (len < 65536) {
    out[at + 1] = 0x80 | 126;
    out[at + 2] = len >>> 8;
    out[at + 3] = len & 0xff;
    at += 4;
  } else {
    out[at + 1] = 0x80 | 127;
    const hi = Math.floor(len / 0x100000000);
    out[at + 2] = 0; out[at + 3] = 0; out[at + 4] = (hi >>> 8) & 0xff; out[at + 5] = hi & 0xff;
    out[at + 6] = (len >>> 24) & 0xff; out[at + 7] = (len >>> 16) & 0xff; out[at + 8] = (len >>> 8) & 0xff; out[at + 9] = len & 0xff;
    at += 10;
  }
  masks.writeMask(out, at);
  applyMask(payload, 0, out, at + 4, len, out, at);
  return at + 4 + len - start;
}

/** A standalone masked frame (control frames and tests; allocates). */
export function encodeFrame(opcode: number, payload: Uint8Array, masks: MaskSource, fin = true): Uint8Array {
  const out = new Uint8Array(maxFrameBytes(payload.byteLength));
  const n = writeMaskedFrame(out, 0, opcode, payload, payload.byteLength, masks, fin);
  return out.subarray(0, n);
}

const encoder = new TextEncoder();

/** A masked close frame with a code and an optional reason (truncated to fit the 125-byte control limit). */
export function encodeClose(code: number, reason: string, masks: MaskSource): Uint8Array {
  const r = encoder.encode(reason).subarray(0, MAX_CONTROL_PAYLOAD - 2);
  const body = new Uint8Array(2 + r.byteLength);
  body[0] = code >>> 8;
  body[1] = code & 0xff;
  body.set(r, 2);
  return encodeFrame(OP_CLOSE, body, masks);
}

export function encodePong(payload: Uint8Array, masks: MaskSource): Uint8Array {
  return encodeFrame(OP_PONG, payload, masks);
}
