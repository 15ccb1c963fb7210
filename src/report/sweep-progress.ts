// The sweep's live progress line, once a second: which round, its phase and clock, the generator's and the
// server's figures, the load average. Redrawn in place on a terminal, one line a second otherwise.
import type { RoundView } from "../sweep/run.ts";
import type { RoundResult, SweepSample } from "../sweep/schema.ts";

function n(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 1 : 2)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(v >= 1e5 ? 0 : 1)}k`;
  return String(Math.round(v));
}

function ms(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

const mib = (b: number) => `${Math.round(b / 1048576)} MiB`;

export function sweepLine(s: SweepSample, v: RoundView): string {
  const head = `R${v.index}/${v.total}`;
  if (s.phase === "cooldown") {
    return `${head} cool-down ${s.roundT.toFixed(0)} s  busy ${s.machine.busyCores.toFixed(2)} cores  load ${s.machine.load1.toFixed(2)}`;
  }
  const parts = [`${head} ${v.label}`, `${s.phase.padEnd(7)} ${s.roundT.toFixed(0).padStart(3)} s`];
  const c = s.client;
  if (c) {
    parts.push(`open ${n(c.open)}/${n(c.target)}`);
    if (c.failed + c.dropped > 0) parts.push(`failed ${n(c.failed)} dropped ${n(c.dropped)}`);
    parts.push(`msg/s out ${n(c.msgsOutPerSec)} in ${n(c.msgsInPerSec)}`);
    if (c.rttP99Ms > 0) parts.push(`rtt p99 ${ms(c.rttP99Ms)} ms`);
    if (c.latenessP99Ms > 0) parts.push(`late p99 ${ms(c.latenessP99Ms)} ms`);
  }
  if (s.server) parts.push(`server ${s.server.cpuCores.toFixed(2)} cores ${mib(s.server.rssBytes)}`);
  if (c) parts.push(`gen ${c.cpuCores.toFixed(2)} cores`);
  parts.push(`load ${s.machine.load1.toFixed(2)}`);
  return parts.join("  ");
}

export function roundEndLine(r: RoundResult): string {
  const t = r.traffic;
  const figures =
    `${n(t.achievedPerSec)} of ${n(r.offeredPerSec)} msg/s` +
    (r.server ? `, server ${r.server.cpuCores.toFixed(2)} cores ${mib(r.server.peakRssBytes)}` : "") +
    (r.latency.rtt.count > 0 ? `, rtt p50 ${ms(r.latency.rtt.p50Ms)} p99 ${ms(r.latency.rtt.p99Ms)} ms` : "") +
    `, ${n(r.outcome.openAtRamp)}/${n(r.connections)} open`;
  return r.held ? `R${r.index} held: ${r.label}: ${figures}` : `R${r.index} FAILED: ${r.label}: ${r.reasons.join("; ")} (${figures})`;
}

export class SweepProgress {
  private drawn = false;

  constructor(
    private readonly out: { write(s: string): unknown } = process.stderr,
    private readonly tty = Boolean((process.stderr as { isTTY?: boolean }).isTTY),
  ) {}

  update(s: SweepSample, v: RoundView): void {
    const line = sweepLine(s, v);
    if (!this.tty) {
      this.out.write(line + "\n");
      return;
    }
    this.out.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  /** A line that stays (round start and end, warnings): moves below the live line first. */
  say(line: string): void {
    this.out.write((this.tty && this.drawn ? "\r\x1b[K" : "") + line + "\n");
    this.drawn = false;
  }

  settle(): void {
    if (this.tty && this.drawn) this.out.write("\n");
    this.drawn = false;
  }
}
