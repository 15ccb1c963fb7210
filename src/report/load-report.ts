// The console report at the end of `wsmillion load`: connections, failures by cause with what each means,
// latency percentiles, offered vs achieved throughput, send lateness, generator cost, the server's count.
import { renderTable } from "./table.ts";
import { HIST_LABELS, HIST_NAMES, type HistName } from "../load/metrics.ts";
import type { ErrorFigure, LoadReport } from "../load/report.ts";
import { count } from "../format.ts";
import { COUNTERS, KERNEL_PHASES, type KernelReport, type NotableCounter } from "../system/tcp-counters.ts";

// Memory here stays in one fixed unit with fixed decimals (not format.ts's `bytes`, which picks the unit),
// so the workers' rows and the per-connection figures line up and compare digit by digit.
function mib(b: number): string {
  return `${(b / 1048576).toFixed(1)} MiB`;
}

function kib(b: number): string {
  return `${(b / 1024).toFixed(2)} KiB`;
}

/** Like format.ts's shortMs, but with a third decimal below 10 ms: loopback percentiles differ there. */
function ms(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3);
}

export function renderLoadReport(r: LoadReport): string {
  const out: string[] = [];
  const p = r.plan;
  const c = r.connections;
  out.push(`wsmillion load: ${count(p.connections)} connections to ${p.tls ? "wss://" : ""}${p.targets.length === 1 ? p.targets[0] : `${p.targets.length} targets (${p.targets[0]} ...)`}${p.path}, mode ${p.mode}` +
    (p.inFlight > 0 ? `, closed loop: ${p.inFlight} of ${p.size} B in flight per connection` : p.intervalMs > 0 ? `, ${p.size} B every ${p.intervalMs} ms` : "") + `, ${p.workers} worker${p.workers === 1 ? "" : "s"}`);
  out.push("");
  out.push("Connections");
  const connRows: string[][] = [
    ["target", count(c.target)],
    ["opened (ramp)", `${count(c.openAtRamp)} in ${c.rampSeconds.toFixed(2)} s (${count(c.dialsPerSecond)}/s)`],
    ["open at end", count(c.openAtEnd)],
    ["attempted", count(c.attempted) + (c.reconnects > 0 ? ` (${count(c.reconnects)} reconnects)` : "")],
    ["failed", count(c.failed)],
    ["dropped", count(c.dropped)],
    ...(r.counters.failedByUs > 0 ? [["failed by us (protocol)", count(r.counters.failedByUs)]] : []),
    ["closed by us", count(c.closedByUs)],
  ];
  if (r.server.atRamp || r.server.atEnd) {
    const s = r.server.atEnd ?? r.server.atRamp!;
    connRows.push(["server /conns", `${count(s.conns)} open (we count ${count(r.server.atEnd ? c.openAtEnd : c.openAtRamp)}), ${count(s.closed)} closed`]);
  } else if (r.server.error) {
    connRows.push(["server /conns", `n/a (${r.server.error})`]);
  }
  out.push(indent(renderTable(["", ""], connRows, { align: ["left", "left"] }).split("\n").slice(1).join("\n")));

  causes(out, "Failed dials by cause", r.errors);
  causes(out, "Closed by the server (close frame)", r.drops.filter((d) => d.by === "server"));
  causes(out, "Dropped by the network or the server's TCP (no close frame)", r.drops.filter((d) => d.by === "network"));
  outages(out, r);
  if (r.ourCloses.length > 0) {
    out.push("");
    out.push("Failed by us: the server broke RFC 6455");
    for (const s of r.ourCloses) {
      out.push(`  ${count(s.count).padStart(8)}  we sent ${s.code}: ${s.meaning}`);
      if (s.example) out.push(`            e.g. ${s.example}`);
    }
  }
  out.push(...kernelSection(r.kernel, failedOrDropped(r)));

  if (r.deflate) {
    out.push("");
    out.push(`permessage-deflate: offered '${r.deflate.offer}'; the server's answers`);
    for (const a of r.deflate.answers) out.push(`  ${count(a.count).padStart(8)}  ${a.response === "none" ? "none (declined: messages go uncompressed)" : a.response}`);
  }

  out.push("");
  out.push("Latency (ms)");
  const rows: string[][] = [];
  for (const n of HIST_NAMES as readonly HistName[]) {
    const l = r.latency[n];
    if (l.count === 0) continue;
    rows.push([HIST_LABELS[n], count(l.count), ms(l.p50Ms), ms(l.p90Ms), ms(l.p99Ms), ms(l.p999Ms), ms(l.maxMs)]);
  }
  out.push(indent(renderTable(["", "count", "p50", "p90", "p99", "p99.9", "max"], rows, { align: ["left", "right", "right", "right", "right", "right", "right"] })));

  const t = r.traffic;
  if (p.mode !== "idle") {
    out.push("");
    out.push("Throughput");
    if (p.inFlight > 0) {
      out.push(`  closed loop: achieved ${count(t.achievedPerSec)} msg/s over ${t.runSeconds.toFixed(1)} s (the server's pace: ${p.inFlight} outstanding per connection)`);
    } else if (t.offeredPerSec > 0) {
      out.push(`  offered ${count(t.offeredPerSec)} msg/s, achieved ${count(t.achievedPerSec)} msg/s over ${t.runSeconds.toFixed(1)} s` +
        (t.skippedBackpressure > 0 ? ` (${count(t.skippedBackpressure)} sends skipped: socket backpressure)` : ""));
    }
    out.push(`  received ${count(t.receivedPerSec)} msg/s; totals ${count(t.sent)} sent (${mib(t.bytesOut)}), ${count(t.received)} received (${mib(t.bytesIn)})`);
    if (r.deflate) {
      out.push(`  on the wire (frames, before TLS): ${mib(t.wireBytesOut)} out, ${mib(t.wireBytesIn)} in; payload/wire ${ratio(t.bytesOut, t.wireBytesOut)} out, ${ratio(t.bytesIn, t.wireBytesIn)} in`);
    }
    if (r.latency.lateness.count > 0) {
      const l = r.latency.lateness;
      out.push(`  send lateness p99 ${ms(l.p99Ms)} ms, max ${ms(l.maxMs)} ms ${l.p99Ms > 10 ? "(the generator was behind: its own figures are suspect)" : "(the generator kept its schedule)"}`);
    }
  }

  out.push("");
  out.push("Generator");
  const g = r.generator;
  out.push(`  CPU ${g.cpuSeconds.toFixed(2)} s` + (g.cpuMicrosPerMessage > 0 ? `, ${g.cpuMicrosPerMessage.toFixed(2)} µs per message during the run` : "") +
    `; RSS fixed ${mib(g.fixedRssBytes)} (${g.processes} processes at rest), then ${kib(g.rssPerConnectionBytes)} per connection; workers' peak ${mib(g.peakRssBytes)}`);
  if (r.workers.length > 1 || r.workers.some((w) => w.error)) {
    const wrows = r.workers.map((w) => [
      String(w.index), String(w.pid), count(w.connections), count(w.openAtRamp), mib(w.peakRssBytes), kib(w.rssPerConnectionBytes),
      (w.cpuUserSeconds + w.cpuSystemSeconds).toFixed(2), ms(w.loopLagP99Ms), w.error ? w.error.split("\n")[0]! : "ok",
    ]);
    out.push(indent(renderTable(["worker", "pid", "conns", "opened", "peak RSS", "per conn", "cpu s", "lag p99", "status"], wrows,
      { align: ["right", "right", "right", "right", "right", "right", "right", "right", "left"] })));
  }

  for (const w of r.warnings) out.push(`warning: ${w}`);
  out.push("");
  out.push(r.verdict.met ? `Result: plan met (exit 0)${r.verdict.summary ? `: ${r.verdict.summary}` : ""}` : `Result: plan NOT met (exit 1): ${r.verdict.reasons.join("; ")}`);
  return out.join("\n");
}

/** Each outage: when the count fell below the target, when it was back, how low it went, what was refused. */
function outages(out: string[], r: LoadReport): void {
  const o = r.outages;
  if (o.count === 0) return;
  out.push("");
  out.push(`Outages: below the target of ${count(r.connections.target)} for ${o.belowTargetSeconds.toFixed(1)} s in all, longest ${o.longestSeconds.toFixed(1)} s (timed by the load workers)`);
  for (const x of o.recoveries) {
    const back = x.recoveredT === null ? "not back by the end" : `back at t=${x.recoveredT.toFixed(1)}s (${x.seconds!.toFixed(1)} s)`;
    const causes = Object.entries(x.refusedByCause).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${count(v)}`).join(", ");
    out.push(`  from t=${x.startT.toFixed(1)}s, ${back}; ${count(x.dropped)} dropped, lowest ${count(x.minOpen)} open; ` +
      `${count(x.refusedDials)} dials refused${causes ? ` (${causes})` : ""}`);
  }
}

/** A section of counts by cause, each with its explanation and first example; nothing when empty. */
function causes(out: string[], title: string, figures: ErrorFigure[]): void {
  if (figures.length === 0) return;
  out.push("");
  out.push(title);
  for (const e of figures) {
    out.push(`  ${count(e.count).padStart(8)}  ${e.cause}: ${e.explanation}`);
    if (e.example) out.push(`            e.g. ${e.example}`);
  }
}

/** A compression ratio (payload bytes per wire byte), or n/a when nothing moved. */
function ratio(payload: number, wire: number): string {
  return wire > 0 ? `${(payload / wire).toFixed(2)}x` : "n/a";
}

/**
 * The kernel's TCP counters beside the failures: shown when connections failed or dropped, or when a
 * counter that matters moved. The rise of each counter that moved, per phase, with what it counts; the
 * likely cause of the notable ones, once per cause; and the fix of each doctor check they point at, once
 * per check. Nothing otherwise.
 */
export function kernelSection(k: KernelReport, failures: boolean): string[] {
  if (!failures && k.notable.length === 0) return [];
  const out = ["", `Kernel TCP counters: ${k.scope}; system-wide, so other programs' TCP on it counts too`];
  const moved = COUNTERS.filter((c) => KERNEL_PHASES.some((p) => (k.phases[p][c.name] ?? 0) > 0));
  if (moved.length > 0) {
    const rows = moved.map((c) => [c.name, ...KERNEL_PHASES.map((p) => count(k.phases[p][c.name] ?? 0)), c.meaning]);
    out.push(indent(renderTable(["", ...KERNEL_PHASES, ""], rows, { align: ["left", "right", "right", "right", "left"] })));
  } else if (k.unreadable.length === 0) {
    out.push("  none moved on this machine: the failures were decided elsewhere (the server's machine, the network) or by the peer on purpose");
  }
  for (const u of k.unreadable) out.push(`  could not read ${u}: its counters are missing`);
  const fixed = new Set<string>();
  for (const group of byCause(k.notable)) {
    const { likelyCause, check, fix, avoid } = group[0]!;
    out.push(`  likely cause of ${group.map((n) => n.counter).join(", ")}: ${likelyCause}`);
    if (check === null) continue;
    const first = !fixed.has(check.id);
    fixed.add(check.id);
    out.push(`  fix: the doctor's check ${check.id} (${check.title}: ${check.value})${first ? "" : ", above"}`);
    if (!first) continue;
    for (const line of fix) out.push(`    ${line}`);
    for (const line of avoid) out.push(`    avoid: ${line}`);
  }
  return out;
}

/** Whether any connection failed to open or was dropped once open: then the kernel section always shows. */
export function failedOrDropped(r: LoadReport): boolean {
  return r.connections.failed > 0 || r.connections.dropped > 0;
}

/** Notable counters grouped by their likely cause (a cause always comes with the same check), in order. */
export function byCause(notable: NotableCounter[]): NotableCounter[][] {
  const groups = new Map<string, NotableCounter[]>();
  for (const n of notable) groups.set(n.likelyCause, [...(groups.get(n.likelyCause) ?? []), n]);
  return [...groups.values()];
}

function indent(s: string): string {
  return s.split("\n").map((l) => "  " + l).join("\n");
}
