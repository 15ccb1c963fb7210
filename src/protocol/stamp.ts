// The timestamp header that load payloads (echo round trips) and server pushes carry, so latency can be
// measured across processes: bytes 0-7 the sender's wall clock in ms (float64 LE, sub-ms precision),
// bytes 8-11 a sequence number (uint32 LE). Payloads shorter than STAMP_BYTES carry no stamp.
export const STAMP_BYTES = 12;

/** Wall-clock milliseconds with sub-millisecond precision, comparable between processes on one machine. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function writeStamp(buf: Uint8Array, sentAtMs: number, seq: number): void {
  if (buf.byteLength < STAMP_BYTES) return;
  const view = new DataView(buf.buffer, buf.byteOffset, STAMP_BYTES);
  view.setFloat64(0, sentAtMs, true);
  view.setUint32(8, seq >>> 0, true);
}

/** The sender's wall clock in ms, or NaN when the payload is too short to carry a stamp. */
export function readStampTime(buf: Uint8Array): number {
  if (buf.byteLength < STAMP_BYTES) return NaN;
  return new DataView(buf.buffer, buf.byteOffset, STAMP_BYTES).getFloat64(0, true);
}

export function readStampSeq(buf: Uint8Array): number {
  if (buf.byteLength < STAMP_BYTES) return -1;
  return new DataView(buf.buffer, buf.byteOffset, STAMP_BYTES).getUint32(8, true);
}
