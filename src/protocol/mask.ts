// Masking keys (RFC 6455 §5.3): a fresh, unpredictable 32-bit key for every client frame. Keys come from a
// pool filled by the system CSPRNG in 64 KiB batches, so each frame costs an index bump, not a syscall.

const POOL_BYTES = 64 * 1024;

export class MaskSource {
  private readonly pool = new Uint8Array(POOL_BYTES);
  private pos = POOL_BYTES;

  /** Writes the next 4-byte mask into out[at..at+4]. */
  writeMask(out: Uint8Array, at: number): void {
    if (this.pos >= POOL_BYTES) {
      crypto.getRandomValues(this.pool);
      this.pos = 0;
    }
    const p = this.pool;
    const i = this.pos;
    out[at] = p[i]!;
    out[at + 1] = p[i + 1]!;
    out[at + 2] = p[i + 2]!;
    out[at + 3] = p[i + 3]!;
    this.pos = i + 4;
  }
}

/** XORs src[0..len) with the mask at mask[maskAt..+4] into out from outAt (out may equal src). */
export function applyMask(src: Uint8Array, srcAt: number, out: Uint8Array, outAt: number, len: number, mask: Uint8Array, maskAt: number): void {
  const m0 = mask[maskAt]!, m1 = mask[maskAt + 1]!, m2 = mask[maskAt + 2]!, m3 = mask[maskAt + 3]!;
  let i = 0;
  const n4 = len - 3;
  for (; i < n4; i += 4) {
    out[outAt + i] = src[srcAt + i]! ^ m0;
    out[outAt + i + 1] = src[srcAt + i + 1]! ^ m1;
    out[outAt + i + 2] = src[srcAt + i + 2]! ^ m2;
    out[outAt + i + 3] = src[srcAt + i + 3]! ^ m3;
  }
  for (; i < len; i++) out[outAt + i] = src[srcAt + i]! ^ mask[maskAt + (i & 3)]!;
}
