// Plain aligned-text tables for console reports. Widths ignore ANSI colour codes so coloured cells line up.

export type Align = "left" | "right";

export interface TableOptions {
  /** Per column; missing columns align left. */
  align?: readonly Align[];
  /** Spaces between columns. */
  gap?: number;
  /** Underline the header row with dashes. */
  rule?: boolean;
}

const ANSI = /\x1b\[[0-9;]*m/g;

/** Printed width of a cell: ANSI escapes take no columns. */
export function visibleWidth(s: string): number {
  return s.replace(ANSI, "").length;
}

function pad(s: string, width: number, align: Align): string {
  const fill = " ".repeat(Math.max(0, width - visibleWidth(s)));
  return align === "right" ? fill + s : s + fill;
}

/** Renders rows under headers; the last column is not padded, so lines carry no trailing spaces. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[], opts: TableOptions = {}): string {
  const gap = " ".repeat(opts.gap ?? 2);
  const all = [headers, ...rows];
  const cols = Math.max(...all.map((r) => r.length));
  const widths = Array.from({ length: cols }, (_, c) => Math.max(0, ...all.map((r) => visibleWidth(r[c] ?? ""))));
  const line = (r: readonly string[]) =>
    widths
      .map((w, c) => {
        const align = opts.align?.[c] ?? "left";
        const cell = r[c] ?? "";
        return c === cols - 1 && align === "left" ? cell : pad(cell, w, align);
      })
      .join(gap)
      .trimEnd();
  const out = [line(headers)];
  if (opts.rule) out.push(line(widths.map((w) => "-".repeat(w))));
  for (const r of rows) out.push(line(r));
  return out.join("\n");
}
