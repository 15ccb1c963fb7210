// The one home of number formats for people: counts, bytes, and the short forms of the live progress
// lines. A leaf: every layer may use it. Infinity reads "unlimited" everywhere.

/** 1,234,567; Infinity -> "unlimited". Rounded to whole numbers. */
export function count(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "unlimited";
}

/** 512 B, 1.5 KiB, 20 MiB; Infinity -> "unlimited". */
export function bytes(n: number): string {
  if (!Number.isFinite(n)) return "unlimited";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

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
