// A sweep as text: one row per round (shared by the console table and report.md), the machine and
// versions, the findings, and the find-max answer.
import type { RoundResult, SweepReport } from "../sweep/schema.ts";
import { latenessRule } from "../sweep/criteria.ts";
import { clientSplit, fmtSize } from "../sweep/rounds.ts";
import { count, shortMs } from "../format.ts";
import { renderTable, type Align } from "./table.ts";
import { byCause } from "./load-report.ts";
import type { KernelReport } from "../system/tcp-counters.ts";

/** Three significant digits at most: 2.4 MiB, 23.8 MiB, 107 MiB. */
function sig(v: number): string {
  return Number(v.toFixed(1)) >= 100 ? v.toFixed(0) : v.toFixed(1);
}

export function fmtBytes(b: number): string {
  if (b >= 1 << 30) return `${sig(b / (1 << 30))} GiB`;
  if (b >= 1 << 20) return `${sig(b / (1 << 20))} MiB`;
  if (b >= 1024) return `${sig(b / 1024)} KiB`;
  return `${count(b)} B`;
}

export const ROUND_HEADERS = [
  "#", "connections", "payload", "every", "offered msg/s", "achieved msg/s", "bytes/s out", "server CPU", "gen CPU",
  "server RSS", "KiB/conn", "rtt p50 ms", "rtt p99 ms", "errors", "load1", "result",
] as const;

export const ROUND_ALIGN: readonly Align[] = ["right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "left"];

/** The first reason, short enough for a table cell; every reason in full is listed under the table. */
function result(r: RoundResult): string {
  if (r.held) return "held";
  const why = (r.stoppedEarly ? `stopped: ${r.stoppedEarly}` : (r.reasons[0] ?? "failed")).replace(/ \(.*$/, "").replace(/: the generator fell behind$/, "");
  return `FAILED: ${why}${r.reasons.length > 1 ? ` (+${r.reasons.length - 1})` : ""}`;
}

/** The total, with the field report's split beside it when the round has one: "2,600 (4 x 650)". */
function connectionsCell(r: Pick<RoundResult, "connections" | "clients">): string {
  const parts = clientSplit(r);
  return parts ? `${count(r.connections)} (${parts})` : count(r.connections);
}

export function roundRow(r: RoundResult): string[] {
  const s = r.server;
  const errs = Math.max(r.outcome.failed, r.connections - r.outcome.openAtRamp) + r.outcome.dropped;
  return [
    String(r.index),
    connectionsCell(r),
    fmtSize(r.size),
    r.inFlight ? `${count(r.inFlight)} in flight` : `${count(r.intervalMs)} ms`,
    r.inFlight ? "closed loop" : count(r.offeredPerSec),
    count(r.traffic.achievedPerSec),
    `${fmtBytes(r.traffic.bytesOutPerSec)}/s`,
    s ? s.cpuCores.toFixed(2) : "n/a",
    r.client.cpuCores.toFixed(2),
    s ? fmtBytes(s.peakRssBytes) : "n/a",
    s && s.rssPerConnectionBytes > 0 ? (s.rssPerConnectionBytes / 1024).toFixed(2) : "n/a",
    r.latency.rtt.count > 0 ? shortMs(r.latency.rtt.p50Ms) : "n/a",
    r.latency.rtt.count > 0 ? shortMs(r.latency.rtt.p99Ms) : "n/a",
    errs === 0 ? "0" : `${count(errs)} (${r.outcome.errorPct.toFixed(r.outcome.errorPct >= 10 ? 0 : 1)}%)`,
    r.machine.load1Max.toFixed(2),
    result(r),
  ];
}

export function renderRoundsTable(report: SweepReport): string {
  return renderTable([...ROUND_HEADERS], report.rounds.map(roundRow), { align: ROUND_ALIGN });
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, "\\|");
}

export function machineLine(report: SweepReport): string {
  const m = report.machine;
  const v = report.versions;
  return `${m.cores} cores (${m.cpuModel}), ${fmtBytes(m.memTotalBytes)} RAM, Linux ${m.kernel} ${m.arch}; open files ${count(m.nofile)} per process, ` +
    `ephemeral ports ${m.portRange}; wsmillion ${v.wsmillion}, Bun ${v.bun}`;
}

export function settingsLine(report: SweepReport): string {
  const s = report.settings;
  const c = s.criteria;
  const where = s.target === "local" ? "a fresh local `wsmillion serve` per round" : `the server at ${s.target}`;
  return `${s.mode} traffic against ${where}; ${s.durationS} s of traffic per round (unless the round says otherwise), ${s.cooldownS} s cool-down between rounds; ` +
    `a round fails on errors > ${c.maxErrorPct}%, round trip p99 > ${c.maxP99Ms} ms, send lateness p99 > ${latenessRule(c)} or < ${c.minAchievedPct}% of the offered rate ` +
    `(latency limits stop a round after ${c.tripAfterS} s in a row over them)`;
}

export function renderMarkdown(report: SweepReport): string {
  const out: string[] = [];
  const source = report.settings.preset
    ? `the \`${report.settings.preset.name}\` preset${report.settings.preset.name === "classic" ? ", the field report's thirteen rounds" : ""} ` +
      `(scale ${report.settings.preset.scale}: ${report.settings.preset.rule})`
    : report.settings.source === "find-max" ? "--find-max" : report.settings.source === "file" ? "a rounds file" : "the flag matrix";
  out.push(`# wsmillion sweep: ${report.rounds.length} round${report.rounds.length === 1 ? "" : "s"}`);
  out.push("");
  out.push(`${report.startedAt} to ${report.endedAt}${report.interrupted ? " (interrupted)" : ""}. Rounds from ${source}.`);
  out.push("");
  out.push(`- Command: \`${report.command}\``);
  out.push(`- Machine: ${machineLine(report)}`);
  out.push(`- Settings: ${settingsLine(report)}`);
  out.push("");
  out.push("## Rounds");
  out.push("");
  out.push(`| ${ROUND_HEADERS.join(" | ")} |`);
  out.push(`| ${ROUND_ALIGN.map((a) => (a === "right" ? "---:" : "---")).join(" | ")} |`);
  for (const r of report.rounds) out.push(`| ${roundRow(r).map(mdEscape).join(" | ")} |`);
  out.push("");
  out.push("CPU in cores (1.00 = one core busy), the mean over each round's traffic; server CPU and RSS from /proc for a local server, " +
    "from its /stats otherwise; KiB/conn is the server's RSS growth over the ramp per connection; errors are failed dials, " +
    "connections missing after the ramp and dropped ones; load1 is the highest 1-minute load average seen during the round." +
    (report.rounds.some((r) => clientSplit(r) !== null)
      ? " A split such as 4 x N is the field report's, over its client machines; here all of them ran from this machine."
      : ""));
  out.push("");
  out.push("## Findings");
  out.push("");
  for (const f of report.findings) out.push(`- ${f}`);
  const failed = report.rounds.filter((r) => !r.held);
  if (failed.length > 0) {
    out.push("");
    out.push("## Why rounds failed");
    out.push("");
    for (const r of failed) out.push(`- R${r.index} (${r.label}): ${r.reasons.join("; ")}`);
  }
  out.push(...kernelMarkdown(report.rounds.map((r) => ({ index: r.index, label: r.label, kernel: r.load.kernel }))));
  out.push("");
  out.push("Everything, with per-second samples and merged latency histograms: `report.json`. Charts: `report.html`.");
  return out.join("\n") + "\n";
}

/**
 * The kernel TCP counters that moved and matter in each round (the load report's `kernel`), grouped by likely
 * cause, then each doctor check's fix once. Nothing when no round had any.
 */
export function kernelMarkdown(all: { index: number; label: string; kernel: KernelReport }[]): string[] {
  const rounds = all.filter((r) => r.kernel.notable.length > 0);
  if (rounds.length === 0) return [];
  const out = ["", "## Kernel TCP counters", "", `Counted over each round's ramp, run and close on ${rounds[0]!.kernel.scope}: system-wide, so other programs' TCP on it counts too. Per round, what moved and matters:`, ""];
  const fixes = new Map<string, { title: string; fix: string[]; avoid: string[] }>();
  for (const r of rounds) {
    for (const group of byCause(r.kernel.notable)) {
      const { likelyCause, check } = group[0]!;
      const counters = group.map((n) => `${n.counter} +${count(n.delta)} (${n.phases.join(", ")})`).join(", ");
      out.push(`- R${r.index} (${r.label}): ${counters}. Likely cause: ${likelyCause}.` + (check ? ` Fix: the doctor's check \`${check.id}\` (${check.title}: ${check.value}).` : ""));
      if (check && !fixes.has(check.id)) fixes.set(check.id, { title: check.title, fix: group[0]!.fix, avoid: group[0]!.avoid });
    }
  }
  for (const [id, f] of fixes) {
    out.push("", `Fix for \`${id}\` (${f.title}):`, "", "```", ...f.fix, "```");
    for (const a of f.avoid) out.push("", `Avoid: ${a}`);
  }
  return out;
}
