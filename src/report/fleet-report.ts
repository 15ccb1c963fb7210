// A run on many agents, in text: the load report of the merged figures, then one row per agent, what
// happened during the run (agents lost, Redis away), the coordination's cost, and the result with the
// fleet's exit code (3 for a partial run). The live line: the fleet's sums, then each agent's state.
import { renderTable } from "./table.ts";
import { renderLoadReport } from "./load-report.ts";
import { progressLine } from "./progress.ts";
import { bytes, compact, count } from "../format.ts";
import type { MonitorReport } from "../agents/monitor.ts";
import type { FleetReport } from "../agents/merge.ts";
import type { FleetSnapshot } from "../agents/remote.ts";

const ms = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3));
const signed = (v: number): string => `${v >= 0 ? "+" : ""}${ms(v)}`;

export function renderFleetReport(r: FleetReport): string {
  const f = r.fleet;
  const lines = renderLoadReport(r).split("\n");
  if (lines.at(-1)?.startsWith("Result:")) lines.pop();
  const out = [...lines];
  const mode = r.plan.mode === "receive" || r.plan.mode === "idle" ? "push p99" : "rtt p99";
  out.push(`Agents (run ${f.run.id} on ${f.run.redis}${f.startSkewMs !== null ? `; start skew ${ms(f.startSkewMs)} ms on Redis's clock` : ""})`);
  const rows = f.agents.map((a) => [
    a.name, a.host, count(a.connections), count(a.openAtRamp), count(a.failed), count(a.dropped), count(a.sent), count(a.received),
    a.status === "lost" || a.sent + a.received === 0 ? "-" : ms(a.latencyP99Ms), a.cpuSeconds.toFixed(2), String(a.workers), `${signed(a.clockOffsetMs)} ms`,
    a.startOffsetMs === null ? "-" : `+${ms(a.startOffsetMs)} ms`, a.note ? `${a.status}: ${a.note}` : a.status,
  ]);
  const table = renderTable(["agent", "host", "conns", "opened", "failed", "dropped", "sent", "received", mode, "cpu s", "workers", "clock", "start", "status"], rows, {
    align: ["left", "left", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "left"],
  });
  out.push(table.split("\n").map((l) => `  ${l}`).join("\n"));
  for (const m of f.monitors) out.push(...monitorLines(m));
  if (f.events.length > 0) {
    out.push("Events");
    for (const e of f.events) out.push(`  ${e}`);
  }
  if (f.redisCommandsPerAgentPerSec !== null) {
    out.push(`Coordination: ${f.redisCommandsPerAgentPerSec} Redis commands per agent per second during the traffic (Redis's own count, INFO stats)`);
  }
  out.push("");
  if (f.partial) out.push(`Result: partial run (exit 3): ${r.verdict.reasons.join("; ")}`);
  else out.push(r.verdict.met ? "Result: plan met (exit 0)" : `Result: plan NOT met (exit 1): ${r.verdict.reasons.join("; ")}`);
  return out.join("\n");
}

/** The target's machine as one monitor saw it during the traffic. */
function monitorLines(m: MonitorReport): string[] {
  const head = `Target machine: monitor ${m.name} on ${m.host}, watching ${m.watching}`;
  const t = m.traffic;
  if (!t) return [head, `  no sample during the traffic (${m.samples.length} in all; see --json)`];
  const lines = [
    `${head}; during the traffic (${t.seconds} s, per second in --json)`,
    `  CPU       ${t.busyCoresMean.toFixed(2)} cores busy on average (user ${t.userMean.toFixed(2)}, system ${t.systemMean.toFixed(2)}, softirq ${t.softirqMean.toFixed(2)}), peak ${t.busyCoresMax.toFixed(2)}; load1 peak ${t.load1Max}`,
    `  memory    ${bytes(t.memUsedMaxBytes)} used at the peak of ${bytes(t.memTotalBytes)}${t.tcpInuseMax !== null ? `; TCP sockets in use, peak ${count(t.tcpInuseMax)}` : ""}`,
  ];
  if (t.treeCpuMean !== null) {
    lines.push(`  process   ${t.treeCpuMean.toFixed(2)} cores on average, peak ${t.treeCpuMax!.toFixed(2)}; RSS peak ${bytes(t.treeRssMaxBytes!)} over ${t.treeProcessesMax} processes`);
  }
  return lines;
}

/** The fleet's progress line, then each agent's state and open connections. */
export function fleetLine(s: FleetSnapshot): string {
  const agents = s.agents.map((a) => `${a.name} ${a.state === "lost" || a.state === "failed" || a.state === "late" ? a.state.toUpperCase() : a.state}${a.state === "lost" ? "" : ` ${compact(a.open)}`}`);
  return `${progressLine(s)}  | ${agents.join("  ")}`;
}

/** The fleet's live line: redrawn in place on a terminal, one line a second otherwise. */
export class FleetPrinter {
  private drawn = false;
  constructor(
    private readonly out: { write(s: string): unknown } = process.stderr,
    private readonly tty = Boolean((process.stderr as { isTTY?: boolean }).isTTY),
  ) {}

  update(s: FleetSnapshot): void {
    if (!this.tty) {
      this.out.write(fleetLine(s) + "\n");
      return;
    }
    this.out.write(`\r${fleetLine(s)}\x1b[K`);
    this.drawn = true;
  }

  /** Keeps the last line and moves below it (an event line, the end). */
  settle(): void {
    if (this.tty && this.drawn) this.out.write("\n");
    this.drawn = false;
  }
}
