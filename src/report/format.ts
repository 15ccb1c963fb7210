// Number formats shared by the live progress lines: short enough to fit one terminal line.

/** 950, 12.3k, 123k, 1.23M, 12.3M. */
export function compact(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 1 : 2)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(v >= 1e5 ? 0 : 1)}k`;
  return String(Math.round(v));
}

/** Milliseconds with the precision that matters at their size: 0.42, 12.3, 250. */
export function shortMs(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
