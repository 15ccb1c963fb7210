// report.html: one self-contained page (uPlot inlined, data embedded) with per-round bars, the per-second
// time series across the whole sweep, the findings and the table. Opens from disk with no network.
import type { SweepReport, SweepSample } from "../sweep/schema.ts";
import { buildPage, jsonForScript } from "../web-pages.ts";
import { ROUND_HEADERS, machineLine, roundRow, settingsLine } from "./sweep-md.ts";

/** Column per series, aligned on `t`; null where a series has no value (breaks the line). */
interface Series {
  t: (number | null)[];
  open: (number | null)[];
  serverConns: (number | null)[];
  msgsOut: (number | null)[];
  msgsIn: (number | null)[];
  srvIn: (number | null)[];
  srvOut: (number | null)[];
  srvCpu: (number | null)[];
  genCpu: (number | null)[];
  busy: (number | null)[];
  load1: (number | null)[];
  srvRss: (number | null)[];
  genRss: (number | null)[];
  rttP50: (number | null)[];
  rttP99: (number | null)[];
  lateP99: (number | null)[];
}

/** What the page draws: the report without histograms and per-worker detail, so the file stays small. */
export interface PageData {
  title: string;
  subtitle: string;
  machine: string;
  settings: string;
  command: string;
  cores: number;
  findings: string[];
  headers: string[];
  rows: string[][];
  rounds: {
    label: string;
    held: boolean;
    offered: number;
    achieved: number;
    serverCpu: number | null;
    genCpu: number;
    serverRss: number | null;
    kibPerConn: number | null;
    rttP50: number | null;
    rttP99: number | null;
    lateP99: number | null;
  }[];
  series: Series;
  bands: { start: number; end: number; label: string; held: boolean }[];
}

const positive = (v: number | undefined | null): number | null => (v !== undefined && v !== null && v > 0 ? v : null);

function emptySeries(): Series {
  return { t: [], open: [], serverConns: [], msgsOut: [], msgsIn: [], srvIn: [], srvOut: [], srvCpu: [], genCpu: [], busy: [], load1: [], srvRss: [], genRss: [], rttP50: [], rttP99: [], lateP99: [] };
}

function push(s: Series, x: SweepSample | null, t: number): void {
  const c = x?.client ?? null;
  const v = x?.server ?? null;
  // The generator's last sample of a round catches up on counts from earlier seconds over a short
  // interval; its rates would draw a spike that never happened.
  const rates = c !== null && x!.phase !== "closing" && x!.phase !== "done";
  s.t.push(t);
  s.open.push(c ? c.open : null);
  s.serverConns.push(v ? v.conns : null);
  s.msgsOut.push(rates ? c.msgsOutPerSec : null);
  s.msgsIn.push(rates ? c.msgsInPerSec : null);
  s.srvIn.push(v ? v.msgsInPerSec : null);
  s.srvOut.push(v ? v.msgsOutPerSec : null);
  s.srvCpu.push(v ? v.cpuCores : null);
  s.genCpu.push(c ? c.cpuCores : null);
  s.busy.push(x ? x.machine.busyCores : null);
  s.load1.push(x ? x.machine.load1 : null);
  s.srvRss.push(v ? v.rssBytes : null);
  s.genRss.push(c ? c.rssBytes : null);
  // Latency charts are logarithmic: a second without round trips is a gap, not a zero.
  s.rttP50.push(positive(c?.rttP50Ms));
  s.rttP99.push(positive(c?.rttP99Ms));
  s.lateP99.push(positive(c?.latenessP99Ms));
}

export function pageData(report: SweepReport): PageData {
  const series = emptySeries();
  const bands: PageData["bands"] = [];
  for (const r of report.rounds) {
    const active = r.samples.filter((s) => s.phase !== "cooldown");
    if (active.length > 0) bands.push({ start: Math.max(0, active[0]!.t - 1), end: active.at(-1)!.t, label: `R${r.index}`, held: r.held });
    let lastT = -Infinity;
    for (const s of r.samples) {
      // uPlot needs x ascending; the per-second samples are, but guard against a clock step.
      if (s.t <= lastT) continue;
      push(series, s, s.t);
      lastT = s.t;
    }
    // A gap between rounds (the next server starting) breaks the lines instead of joining two rounds.
    if (Number.isFinite(lastT)) push(series, null, lastT + 0.001);
  }
  const n = report.rounds.length;
  return {
    title: `wsmillion sweep: ${n} round${n === 1 ? "" : "s"}`,
    subtitle: `${report.startedAt.replace("T", " ").replace(/\.\d+Z$/, " UTC")}, ${Math.round((Date.parse(report.endedAt) - Date.parse(report.startedAt)) / 1000)} s` +
      (report.settings.preset ? `; preset ${report.settings.preset.name} at scale ${report.settings.preset.scale} (${report.settings.preset.rule})` : "") +
      (report.interrupted ? "; interrupted" : ""),
    machine: machineLine(report),
    settings: settingsLine(report),
    command: report.command,
    cores: report.machine.cores,
    findings: report.findings,
    headers: [...ROUND_HEADERS],
    rows: report.rounds.map(roundRow),
    rounds: report.rounds.map((r) => ({
      label: `R${r.index}${r.held ? "" : " ✗"}`,
      held: r.held,
      offered: r.offeredPerSec,
      achieved: r.traffic.achievedPerSec,
      serverCpu: r.server ? r.server.cpuCores : null,
      genCpu: r.client.cpuCores,
      serverRss: r.server ? r.server.peakRssBytes : null,
      kibPerConn: r.server && r.server.rssPerConnectionBytes > 0 ? r.server.rssPerConnectionBytes / 1024 : null,
      rttP50: positive(r.latency.rtt.p50Ms),
      rttP99: positive(r.latency.rtt.p99Ms),
      lateP99: positive(r.latency.lateness.p99Ms),
    })),
    series,
    bands,
  };
}

export function renderHtml(report: SweepReport): string {
  return buildPage("report.html", { data: jsonForScript(pageData(report)) });
}
