// Other processes, read from /proc: CPU (in cores) and resident memory of a set of processes or a process
// tree, the whole machine's busy cores, and the load average. An outside view that needs nothing from the
// processes themselves, so it measures a server the same way whether it is ours or not. This process's
// own figures come from self.ts.
import { readdirSync, readFileSync } from "node:fs";

/**
 * USER_HZ, the unit of utime/stime in /proc/<pid>/stat. The kernel fixes it at 100 for userspace on every
 * architecture Linux ships (CONFIG_HZ differs, USER_HZ does not), so there is nothing to ask at run time.
 */
export const CLOCK_TICKS = 100;

export interface LoadAverage {
  load1: number;
  load5: number;
  load15: number;
  /** Runnable tasks now (the first half of the fourth field). */
  running: number;
}

export interface ProcTimes {
  pid: number;
  ppid: number;
  /** user + system CPU since the process started, in seconds. */
  cpuSeconds: number;
  threads: number;
}

export interface ProcessFigure {
  pid: number;
  /** CPU over the last interval, in cores (1.0 = one core busy the whole time). */
  cpuCores: number;
  cpuSeconds: number;
  rssBytes: number;
  threads: number;
}

export interface TreeSample {
  /** Sum over the processes alive at this sample. */
  cpuCores: number;
  rssBytes: number;
  processes: ProcessFigure[];
  /** Busy cores of the whole machine over the same interval (all processes, user + system + irq). */
  machineBusyCores: number;
  load: LoadAverage;
}

function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

export function parseLoadavg(text: string): LoadAverage {
  const f = text.trim().split(/\s+/);
  return { load1: Number(f[0]), load5: Number(f[1]), load15: Number(f[2]), running: Number((f[3] ?? "0/0").split("/")[0]) };
}

export function readLoadavg(root = "/proc"): LoadAverage | null {
  const t = read(`${root}/loadavg`);
  return t === null ? null : parseLoadavg(t);
}

/** The figures of /proc/<pid>/stat we use; CPU times in clock ticks. */
interface StatTicks {
  pid: number;
  ppid: number;
  utime: number;
  stime: number;
  threads: number;
}

/**
 * Parses /proc/<pid>/stat. The command name (field 2) sits in parentheses and may itself hold spaces and
 * parentheses, so the fields are counted from the last ')'.
 */
function statTicks(text: string): StatTicks | null {
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  const pid = Number(text.slice(0, text.indexOf(" ")));
  // After ") ": field 3 (state) is index 0, so field n is index n - 3.
  const f = text.slice(close + 2).split(" ");
  const utime = Number(f[14 - 3]);
  const stime = Number(f[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return { pid, ppid: Number(f[4 - 3]), utime, stime, threads: Number(f[20 - 3]) };
}

/** pid, ppid, CPU seconds (user + system) and threads from /proc/<pid>/stat. */
export function parseStat(text: string): ProcTimes | null {
  const t = statTicks(text);
  return t && { pid: t.pid, ppid: t.ppid, cpuSeconds: (t.utime + t.stime) / CLOCK_TICKS, threads: t.threads };
}

/** User and system CPU seconds of a process, apart (null when it is gone). */
export function readCpuSplit(pid: number, procRoot = "/proc"): { userSeconds: number; systemSeconds: number } | null {
  const st = read(`${procRoot}/${pid}/stat`);
  const t = st === null ? null : statTicks(st);
  return t && { userSeconds: t.utime / CLOCK_TICKS, systemSeconds: t.stime / CLOCK_TICKS };
}

/** VmRSS from /proc/<pid>/status, in bytes (0 for a zombie, which has no memory left). */
export function parseRss(status: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Resident memory of a process in bytes (null when it is gone). */
export function readRss(pid: number, procRoot = "/proc"): number | null {
  const status = read(`${procRoot}/${pid}/status`);
  return status === null ? null : parseRss(status);
}

/** Busy and total jiffies of the machine from the first line of /proc/stat. */
export function parseCpuLine(text: string): { busy: number; total: number } | null {
  const line = text.slice(0, text.indexOf("\n"));
  if (!line.startsWith("cpu ")) return null;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already inside user.
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** Every descendant of `root` (children, their children...), found through the ppid of each process. */
export function descendants(root: number, procRoot = "/proc"): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync(procRoot);
  } catch {
    return [];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const st = read(`${procRoot}/${name}/stat`);
    const p = st === null ? null : parseStat(st);
    if (!p) continue;
    const list = children.get(p.ppid);
    if (list) list.push(p.pid);
    else children.set(p.ppid, [p.pid]);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/**
 * Samples other processes from /proc: a set chosen afresh each time (so restarted workers are followed). The first call
 * primes the CPU counters and reports 0 cores; a process first seen later counts from its first sample.
 */
export class ProcessTreeSampler {
  private lastCpu = new Map<number, number>();
  private lastAt = 0;
  private lastMachine: { busy: number; total: number } | null = null;
  private readonly cores: number;

  constructor(
    private readonly pids: () => number[],
    private readonly procRoot = "/proc",
    cores?: number,
  ) {
    this.cores = cores ?? Math.max(1, (read(`${procRoot}/stat`) ?? "").split("\n").filter((l) => /^cpu\d+ /.test(l)).length);
  }

  sample(): TreeSample {
    const now = performance.now();
    const dt = this.lastAt > 0 ? (now - this.lastAt) / 1000 : 0;
    const seen = new Map<number, number>();
    const processes: ProcessFigure[] = [];
    for (const pid of this.pids()) {
      const st = read(`${this.procRoot}/${pid}/stat`);
      const times = st === null ? null : parseStat(st);
      if (!times) continue;
      const before = this.lastCpu.get(pid);
      seen.set(pid, times.cpuSeconds);
      const rssBytes = readRss(pid, this.procRoot) ?? 0;
      const cpuCores = dt > 0 && before !== undefined ? Math.max(0, (times.cpuSeconds - before) / dt) : 0;
      processes.push({ pid, cpuCores, cpuSeconds: times.cpuSeconds, rssBytes, threads: times.threads });
    }
    this.lastCpu = seen;

    let machineBusyCores = 0;
    const statText = read(`${this.procRoot}/stat`);
    const machine = statText === null ? null : parseCpuLine(statText);
    if (machine && this.lastMachine && machine.total > this.lastMachine.total) {
      machineBusyCores = ((machine.busy - this.lastMachine.busy) / (machine.total - this.lastMachine.total)) * this.cores;
    }
    this.lastMachine = machine;
    this.lastAt = now;
    return {
      cpuCores: processes.reduce((a, p) => a + p.cpuCores, 0),
      rssBytes: processes.reduce((a, p) => a + p.rssBytes, 0),
      processes,
      machineBusyCores,
      load: readLoadavg(this.procRoot) ?? { load1: 0, load5: 0, load15: 0, running: 0 },
    };
  }
}
