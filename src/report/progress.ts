// Live progress for `wsmillion load`, once a second: a progress bar during the ramp on a terminal (one
// line redrawn in place), plain lines when the output is not a terminal.
import type { ProgressSnapshot } from "../load/coordinator.ts";

function n(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 1 : 2)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(v >= 1e5 ? 0 : 1)}k`;
  return String(Math.round(v));
}

function ms(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function bar(done: number, total: number, width = 24): string {
  const f = total > 0 ? Math.max(0, Math.min(1, done / total)) : 1;
  const full = Math.floor(f * width);
  return "[" + "#".repeat(full) + ".".repeat(width - full) + "]";
}

/** One progress line (no bar). */
export function progressLine(s: ProgressSnapshot, latencyLabel = "rtt"): string {
  const parts = [
    `${s.t.toFixed(0).padStart(4)}s ${s.phase.padEnd(7)}`,
    `open ${n(s.open)}/${n(s.target)}`,
    `dials/s ${n(s.dialsPerSec)}`,
    `failed ${n(s.failed)}`,
  ];
  if (s.dropped > 0) parts.push(`dropped ${n(s.dropped)}`);
  parts.push(`msg/s out ${n(s.msgsOutPerSec)} in ${n(s.msgsInPerSec)}`);
  if (s.latencyP99Ms > 0) parts.push(`${latencyLabel} p50 ${ms(s.latencyP50Ms)} p99 ${ms(s.latencyP99Ms)} ms`);
  parts.push(`cpu ${s.cpuCores.toFixed(2)} rss ${n(s.rssBytes / 1048576)}MiB`);
  return parts.join("  ");
}

export class ProgressPrinter {
  private drawn = false;
  constructor(
    private readonly out: { write(s: string): unknown } = process.stderr,
    private readonly tty = Boolean((process.stderr as { isTTY?: boolean }).isTTY),
    private readonly latencyLabel = "rtt",
  ) {}

  update(s: ProgressSnapshot): void {
    if (!this.tty) {
      this.out.write(progressLine(s, this.latencyLabel) + "\n");
      return;
    }
    const line = s.phase === "ramp" ? `${bar(s.open + s.failed, s.target)} ${progressLine(s, this.latencyLabel)}` : progressLine(s, this.latencyLabel);
    this.out.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  /** Keeps the last line and moves below it (phase change, end). */
  settle(): void {
    if (this.tty && this.drawn) this.out.write("\n");
    this.drawn = false;
  }
}
