// Live progress for `wsmillion load`, once a second: a progress bar during the ramp on a terminal (one
// line redrawn in place), plain lines when the output is not a terminal.
import type { ProgressSnapshot } from "../load/report.ts";
import { compact, shortMs } from "../format.ts";


export function bar(done: number, total: number, width = 24): string {
  const f = total > 0 ? Math.max(0, Math.min(1, done / total)) : 1;
  const full = Math.floor(f * width);
  return "[" + "#".repeat(full) + ".".repeat(width - full) + "]";
}

/** One progress line (no bar). */
export function progressLine(s: ProgressSnapshot, latencyLabel = "rtt"): string {
  const parts = [
    `${s.t.toFixed(0).padStart(4)}s ${s.phase.padEnd(7)}`,
    `open ${compact(s.open)}/${compact(s.target)}`,
    `dials/s ${compact(s.dialsPerSec)}`,
    `failed ${compact(s.failed)}`,
  ];
  if (s.dropped > 0) parts.push(`dropped ${compact(s.dropped)}`);
  parts.push(`msg/s out ${compact(s.msgsOutPerSec)} in ${compact(s.msgsInPerSec)}`);
  if (s.latencyP99Ms > 0) parts.push(`${latencyLabel} p50 ${shortMs(s.latencyP50Ms)} p99 ${shortMs(s.latencyP99Ms)} ms`);
  parts.push(`cpu ${s.cpuCores.toFixed(2)} rss ${compact(s.rssBytes / 1048576)}MiB`);
  if (s.lateWorkers > 0) parts.push(`(${s.lateWorkers} worker${s.lateWorkers === 1 ? "" : "s"} late: last rates held)`);
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
