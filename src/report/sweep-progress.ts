// The sweep's live progress line, once a second: which round, its phase and clock, the generator's and the
// server's figures, the load average. Redrawn in place on a terminal, one line a second otherwise.
import type { RoundView } from "../sweep/round.ts";
import type { RoundResult, SweepSample } from "../sweep/schema.ts";
import { compact, shortMs } from "../format.ts";


const mib = (b: number) => `${Math.round(b / 1048576)} MiB`;

export function sweepLine(s: SweepSample, v: RoundView): string {
  const head = `R${v.index}/${v.total}`;
  if (s.phase === "cooldown") {
    return `${head} cool-down ${s.roundT.toFixed(0)} s  busy ${s.machine.busyCores.toFixed(2)} cores  load ${s.machine.load1.toFixed(2)}`;
  }
  const parts = [`${head} ${v.label}`, `${s.phase.padEnd(7)} ${s.roundT.toFixed(0).padStart(3)} s`];
  const c = s.client;
  if (c) {
    parts.push(`open ${compact(c.open)}/${compact(c.target)}`);
    if (c.failed + c.dropped > 0) parts.push(`failed ${compact(c.failed)} dropped ${compact(c.dropped)}`);
    parts.push(`msg/s out ${compact(c.msgsOutPerSec)} in ${compact(c.msgsInPerSec)}`);
    if (c.rttP99Ms > 0) parts.push(`rtt p99 ${shortMs(c.rttP99Ms)} ms`);
    if (c.latenessP99Ms > 0) parts.push(`late p99 ${shortMs(c.latenessP99Ms)} ms`);
  }
  if (s.server) parts.push(`server ${s.server.cpuCores.toFixed(2)} cores ${mib(s.server.rssBytes)}`);
  if (c) parts.push(`gen ${c.cpuCores.toFixed(2)} cores`);
  parts.push(`load ${s.machine.load1.toFixed(2)}`);
  return parts.join("  ");
}

export function roundEndLine(r: RoundResult): string {
  const t = r.traffic;
  const figures =
    (r.inFlight ? `${compact(t.achievedPerSec)} msg/s closed loop` : `${compact(t.achievedPerSec)} of ${compact(r.offeredPerSec)} msg/s`) +
    (r.server ? `, server ${r.server.cpuCores.toFixed(2)} cores ${mib(r.server.peakRssBytes)}` : "") +
    (r.latency.rtt.count > 0 ? `, rtt p50 ${shortMs(r.latency.rtt.p50Ms)} p99 ${shortMs(r.latency.rtt.p99Ms)} ms` : "") +
    `, ${compact(r.outcome.openAtRamp)}/${compact(r.connections)} open`;
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
