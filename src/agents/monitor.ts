// What `wsmillion agent --monitor` samples on the target's machine once a second: CPU by mode (in cores),
// the load average, memory, TCP sockets in use, and the watched process tree (a pid, or a process found by
// name, with all its descendants, found afresh each second so a restarted server is followed). It reads
// /proc only, so it measures any server the same way, ours or not.
import { readdirSync, readFileSync } from "node:fs";
import { ProcessTreeSampler, descendants, readLoadavg, type LoadAverage } from "../system/proc.ts";
import { readMeminfo } from "../system/meminfo.ts";

export interface MonitorTarget {
  pid?: number;
  process?: string;
}

/** Busy cores by mode over the last interval (idle is the rest). */
export interface CpuModes {
  user: number;
  nice: number;
  system: number;
  iowait: number;
  irq: number;
  softirq: number;
  steal: number;
  idle: number;
}

export interface MonitorSample {
  cpu: CpuModes;
  load: LoadAverage;
  memUsedBytes: number;
  memTotalBytes: number;
  slabBytes: number;
  /** /proc/net/sockstat's TCP line: sockets in use, in TIME_WAIT, orphaned, and TCP memory in pages. */
  tcp: { inuse: number; timeWait: number; orphan: number; memPages: number } | null;
  /** The watched process tree now; null when none is watched or it is not running. */
  tree: { root: number; processes: number; cpuCores: number; rssBytes: number } | null;
}

const MODES = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"] as const;

function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** The `cpu` line of /proc/stat as jiffies per mode. */
export function parseCpuModes(stat: string): Record<(typeof MODES)[number], number> | null {
  const line = stat.slice(0, stat.indexOf("\n"));
  if (!line.startsWith("cpu ")) return null;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(MODES.map((m, i) => [m, f[i] ?? 0])) as Record<(typeof MODES)[number], number>;
}

export function parseSockstat(text: string): MonitorSample["tcp"] {
  const line = /^TCP:(.*)$/m.exec(text)?.[1];
  if (line === undefined) return null;
  const get = (k: string): number => Number(new RegExp(`\\b${k} (\\d+)`).exec(line)?.[1] ?? NaN);
  const s = { inuse: get("inuse"), timeWait: get("tw"), orphan: get("orphan"), memPages: get("mem") };
  return Object.values(s).some(Number.isNaN) ? null : s;
}

/** The oldest process named `name` (its comm, or a word of its command line) whose parent is not one too: the root of its tree. */
export function findProcess(name: string, procRoot = "/proc"): number | null {
  const found = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync(procRoot);
  } catch {
    return null;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const comm = read(`${procRoot}/${e}/comm`)?.trim();
    const argv = (read(`${procRoot}/${e}/cmdline`) ?? "").split("\0").filter(Boolean);
    if (comm !== name && !argv.some((a) => a === name || a.endsWith(`/${name}`))) continue;
    const stat = read(`${procRoot}/${e}/stat`);
    const ppid = stat ? Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) : 0;
    found.set(Number(e), ppid);
  }
  const roots = [...found].filter(([, ppid]) => !found.has(ppid)).map(([pid]) => pid).sort((a, b) => a - b);
  return roots[0] ?? null;
}

export class MachineMonitor {
  private last: Record<(typeof MODES)[number], number> | null = null;
  private readonly cores: number;
  private root: number | null = null;
  private readonly tree: ProcessTreeSampler;

  constructor(
    readonly target: MonitorTarget,
    private readonly procRoot = "/proc",
  ) {
    this.cores = Math.max(1, (read(`${procRoot}/stat`) ?? "").split("\n").filter((l) => /^cpu\d+ /.test(l)).length);
    this.tree = new ProcessTreeSampler(() => {
      const root = this.resolve();
      return root === null ? [] : [root, ...descendants(root, procRoot)];
    }, procRoot);
    this.sample(); // primes the CPU counters
  }

  /** What is watched, in words. */
  describe(): string {
    if (this.target.pid !== undefined) return `pid ${this.target.pid} and its descendants`;
    if (this.target.process !== undefined) return `process '${this.target.process}' and its descendants`;
    return "the machine only (no --pid or --process)";
  }

  private resolve(): number | null {
    const t = this.target;
    if (t.pid !== undefined) return read(`${this.procRoot}/${t.pid}/stat`) !== null ? t.pid : null;
    if (t.process === undefined) return null;
    if (this.root === null || read(`${this.procRoot}/${this.root}/stat`) === null) this.root = findProcess(t.process, this.procRoot);
    return this.root;
  }

  sample(): MonitorSample {
    const now = parseCpuModes(read(`${this.procRoot}/stat`) ?? "");
    const cpu: CpuModes = { user: 0, nice: 0, system: 0, iowait: 0, irq: 0, softirq: 0, steal: 0, idle: 0 };
    if (now && this.last) {
      const total = MODES.reduce((n, m) => n + now[m] - this.last![m], 0);
      if (total > 0) for (const m of MODES) cpu[m] = Math.round(((now[m] - this.last[m]) / total) * this.cores * 1000) / 1000;
    }
    if (now) this.last = now;
    const mem = readMeminfo(`${this.procRoot}/meminfo`);
    const t = this.tree.sample();
    const root = this.resolve();
    return {
      cpu,
      load: readLoadavg(this.procRoot) ?? { load1: 0, load5: 0, load15: 0, running: 0 },
      memUsedBytes: mem.usedBytes,
      memTotalBytes: mem.totalBytes,
      slabBytes: mem.slabBytes,
      tcp: parseSockstat(read(`${this.procRoot}/net/sockstat`) ?? ""),
      tree: root === null ? null : { root, processes: t.processes.length, cpuCores: Math.round(t.cpuCores * 1000) / 1000, rssBytes: t.rssBytes },
    };
  }
}

/** A monitor's samples in a run, on the coordinator's seconds. */
export interface MonitorReport {
  name: string;
  host: string;
  watching: string;
  /** One a second; `t` in seconds since the coordinator started, as the live samples. */
  samples: ({ t: number } & MonitorSample)[];
  /** Over the traffic phase (null when no sample fell in it). */
  traffic: MonitorSummary | null;
}

export interface MonitorSummary {
  seconds: number;
  busyCoresMean: number;
  busyCoresMax: number;
  userMean: number;
  systemMean: number;
  softirqMean: number;
  load1Max: number;
  memUsedMaxBytes: number;
  memTotalBytes: number;
  tcpInuseMax: number | null;
  /** The watched tree; null when nothing was watched or it was not running. */
  treeCpuMean: number | null;
  treeCpuMax: number | null;
  treeRssMaxBytes: number | null;
  treeProcessesMax: number | null;
}

const busy = (c: CpuModes): number => c.user + c.nice + c.system + c.iowait + c.irq + c.softirq + c.steal;
const r3 = (v: number): number => Math.round(v * 1000) / 1000;

/** Means and peaks of the samples taken between `from` and `to` (seconds). */
export function summarizeMonitor(samples: MonitorReport["samples"], from: number, to: number): MonitorSummary | null {
  const s = samples.filter((x) => x.t > from && x.t <= to);
  if (s.length === 0) return null;
  const mean = (f: (x: MonitorSample) => number): number => r3(s.reduce((n, x) => n + f(x), 0) / s.length);
  const trees = s.map((x) => x.tree).filter((t) => t !== null);
  const tcp = s.map((x) => x.tcp?.inuse).filter((v) => v !== undefined);
  return {
    seconds: s.length,
    busyCoresMean: mean((x) => busy(x.cpu)),
    busyCoresMax: r3(Math.max(...s.map((x) => busy(x.cpu)))),
    userMean: mean((x) => x.cpu.user + x.cpu.nice),
    systemMean: mean((x) => x.cpu.system),
    softirqMean: mean((x) => x.cpu.softirq),
    load1Max: Math.max(...s.map((x) => x.load.load1)),
    memUsedMaxBytes: Math.max(...s.map((x) => x.memUsedBytes)),
    memTotalBytes: s[0]!.memTotalBytes,
    tcpInuseMax: tcp.length ? Math.max(...tcp) : null,
    treeCpuMean: trees.length ? r3(trees.reduce((n, t) => n + t.cpuCores, 0) / trees.length) : null,
    treeCpuMax: trees.length ? r3(Math.max(...trees.map((t) => t.cpuCores))) : null,
    treeRssMaxBytes: trees.length ? Math.max(...trees.map((t) => t.rssBytes)) : null,
    treeProcessesMax: trees.length ? Math.max(...trees.map((t) => t.processes)) : null,
  };
}
