// Reads every kernel, cgroup and process limit that decides how many connections fit, each with the file
// it came from. Synchronous and cheap (a few dozen small reads) so `serve` and `load` can call it at start.
// `root` points the reads at a fixture tree in tests; sources are reported as the logical path (`/proc/...`).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** One figure and where it came from. `value` is null when the file is absent or unreadable, never a throw. */
export interface Reading<T> {
  value: T | null;
  source: string;
  /** Why the value is null (file absent, unparsable). */
  missing?: string;
}

export interface PortRange {
  low: number;
  high: number;
}

export interface FileNr {
  allocated: number;
  free: number;
  max: number;
}

/** /proc/sys/net/ipv4/tcp_mem: three thresholds in pages. */
export interface TcpMem {
  low: number;
  pressure: number;
  high: number;
}

/** The TCP line of /proc/net/sockstat; `memPages` is what counts against tcp_mem. */
export interface SockStat {
  inuse: number;
  orphan: number;
  timeWait: number;
  alloc: number;
  memPages: number;
}

/** A cgroup limit (Infinity = unlimited) with the usage at the level where it was set. */
export interface CgroupLimit {
  limit: number;
  current: number | null;
}

export interface Limits {
  root: string;
  /**
   * RLIMIT_NOFILE of this process. Bun raises soft to hard at start, so every worker gets the hard limit.
   * Flat numbers because every caller sizes processes from it; when unreadable, 1024 (the usual login
   * default) is assumed and `missing` says so.
   */
  nofile: { soft: number; hard: number; source: string; missing?: string };
  /** RLIMIT_NPROC: counts every thread of the user, and is ignored for root (CAP_SYS_RESOURCE / CAP_SYS_ADMIN). */
  nproc: Reading<{ soft: number; hard: number }>;
  uid: Reading<number>;
  /** Raising a hard rlimit needs CAP_SYS_RESOURCE; containers usually drop it even for root. */
  capSysResource: Reading<boolean>;
  nrOpen: Reading<number>;
  fileMax: Reading<number>;
  fileNr: Reading<FileNr>;
  portRange: Reading<PortRange>;
  /** ip_local_reserved_ports, e.g. "8080,9000-9100": ports an unbound connect() never picks. */
  reservedPorts: Reading<PortRange[]>;
  finTimeout: Reading<number>;
  twReuse: Reading<number>;
  /** Removed in Linux 4.12; present only on old kernels, where it must be 0. */
  twRecycle: Reading<number>;
  somaxconn: Reading<number>;
  synBacklog: Reading<number>;
  /** 1 lets a closing SO_REUSEPORT listener hand its queued connections to the others (Linux 5.14+). */
  migrateReq: Reading<number>;
  /** Per-CPU queue of received packets; loopback traffic passes through it. */
  netdevMaxBacklog: Reading<number>;
  /** Packets dropped since boot because that queue was full (second column of softnet_stat, summed). */
  softnetDrops: Reading<number>;
  conntrackMax: Reading<number>;
  conntrackCount: Reading<number>;
  tcpMem: Reading<TcpMem>;
  sockstat: Reading<SockStat>;
  /** Bytes per page for tcp_mem; not in /proc, so taken as 4096 (x86-64 and most arm64 kernels). */
  pageSize: Reading<number>;
  memTotal: Reading<number>;
  memAvailable: Reading<number>;
  cgroupVersion: Reading<1 | 2>;
  memoryMax: Reading<CgroupLimit>;
  pidsMax: Reading<CgroupLimit>;
  cores: Reading<number>;
  /** CPU quota of the cgroup in cores (Infinity when none). */
  cpuQuota: Reading<number>;
  kernel: Reading<string>;
  runtime: { bun: string; node: string; platform: string; arch: string };
}

/** Kernel "unlimited" spellings: rlimit `unlimited`, cgroup v2 `max`, cgroup v1 PAGE_COUNTER_MAX (~2^63). */
function num(raw: string): number {
  const t = raw.trim();
  if (t === "unlimited" || t === "max") return Infinity;
  const n = Number(t);
  if (!Number.isFinite(n)) return NaN;
  return n >= 2 ** 62 ? Infinity : n;
}

class Reader {
  constructor(readonly root: string) {}

  path(logical: string): string {
    return this.root === "/" ? logical : join(this.root, logical);
  }

  text(logical: string): string | null {
    try {
      return readFileSync(this.path(logical), "utf8");
    } catch {
      return null;
    }
  }

  exists(logical: string): boolean {
    return existsSync(this.path(logical));
  }

  /** Reads a file and parses it; absent or unparsable files become a null reading with the reason. */
  read<T>(logical: string, parse: (text: string) => T | null): Reading<T> {
    const text = this.text(logical);
    if (text === null) return { value: null, source: logical, missing: "absent" };
    const value = parse(text);
    return value === null ? { value: null, source: logical, missing: `unparsable: ${JSON.stringify(text.trim().slice(0, 60))}` } : { value, source: logical };
  }

  number(logical: string): Reading<number> {
    return this.read(logical, (t) => {
      const n = num(t);
      return Number.isNaN(n) ? null : n;
    });
  }
}

function fields(text: string): number[] {
  return text.trim().split(/\s+/).map(num);
}

function allFinite(ns: number[], count: number): boolean {
  return ns.length >= count && ns.slice(0, count).every((n) => !Number.isNaN(n));
}

function rlimit(r: Reader, name: string): Reading<{ soft: number; hard: number }> {
  return r.read("/proc/self/limits", (t) => {
    const m = new RegExp(`^${name}\\s+(\\S+)\\s+(\\S+)`, "m").exec(t);
    if (!m) return null;
    const soft = num(m[1]!);
    const hard = num(m[2]!);
    return Number.isNaN(soft) || Number.isNaN(hard) ? null : { soft, hard };
  });
}

function nofileOf(r: Reading<{ soft: number; hard: number }>): Limits["nofile"] {
  if (r.value === null) return { soft: 1024, hard: 1024, source: r.source, missing: `${r.missing ?? "absent"}; assumed 1024` };
  return { ...r.value, source: r.source };
}

/** "8080,9000-9100" -> ranges. An empty file means no reserved ports. */
export function parsePortList(text: string): PortRange[] | null {
  const t = text.trim();
  if (t === "") return [];
  const out: PortRange[] = [];
  for (const part of t.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return null;
    out.push({ low: Number(m[1]), high: Number(m[2] ?? m[1]) });
  }
  return out;
}

function meminfo(r: Reader, key: string): Reading<number> {
  return r.read("/proc/meminfo", (t) => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, "m").exec(t);
    return m ? Number(m[1]) * 1024 : null;
  });
}

/** "0-1,4,6-7" (sysfs cpu list) -> 5. */
function countCpuList(text: string): number | null {
  let n = 0;
  for (const part of text.trim().split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return null;
    n += Number(m[2] ?? m[1]) - Number(m[1]) + 1;
  }
  return n > 0 ? n : null;
}

function trimSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, "") : p;
}

interface CgroupMount {
  version: 1 | 2;
  /** Logical directory of this process's cgroup for the controller. */
  dir: string;
  /** The mount point; the walk up toward it stops there. */
  mount: string;
}

/**
 * Where this process's cgroup lives for a controller. cgroup v1 mounts each controller at
 * /sys/fs/cgroup/<controller>; v2 has one tree at /sys/fs/cgroup (or /sys/fs/cgroup/unified on hybrid
 * systems, which then hold no memory or pids controller). Inside a cgroup namespace the path in
 * /proc/self/cgroup may not exist under the mount, so fall back to the mount itself.
 */
function cgroupMount(r: Reader, controller: string, lines: string[]): CgroupMount | null {
  for (const line of lines) {
    const [, controllers, path] = line.split(":", 3) as [string, string, string];
    if (path === undefined || controllers === "") continue;
    if (!controllers.split(",").includes(controller)) continue;
    const mount = r.exists(`/sys/fs/cgroup/${controllers}`) ? `/sys/fs/cgroup/${controllers}` : `/sys/fs/cgroup/${controller}`;
    if (!r.exists(mount)) continue;
    const dir = trimSlash(join(mount, path));
    return { version: 1, dir: r.exists(dir) ? dir : mount, mount };
  }
  const v2 = lines.find((l) => l.startsWith("0::"));
  if (v2 === undefined) return null;
  for (const mount of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]) {
    const controllers = r.text(`${mount}/cgroup.controllers`);
    if (controllers === null) continue;
    const dir = trimSlash(join(mount, v2.slice(3)));
    const here = r.exists(dir) ? dir : mount;
    // The root cgroup lists every controller; a child may not have it enabled, but its files tell.
    if (controllers.split(/\s+/).includes(controller) || r.exists(`${here}/${controller}.max`)) return { version: 2, dir: here, mount };
  }
  return null;
}

/**
 * The tightest limit from the process's cgroup up to the mount: a limit on an ancestor caps the
 * ancestor's total, so what is left is limit - usage at that level, and the smallest leftover binds.
 */
function cgroupLimit(r: Reader, m: CgroupMount | null, limitFile: string, currentFile: string, what: string): Reading<CgroupLimit> {
  if (m === null) return { value: null, source: `/sys/fs/cgroup (${what})`, missing: `no ${what} cgroup controller for this process` };
  let best: { value: CgroupLimit; source: string } | null = null;
  for (let dir = m.dir; ; dir = join(dir, "..")) {
    const limit = r.text(`${dir}/${limitFile}`);
    if (limit !== null && Number.isFinite(num(limit))) {
      const cur = r.text(`${dir}/${currentFile}`);
      const value = { limit: num(limit), current: cur === null ? null : num(cur) };
      const left = value.limit - (value.current ?? 0);
      if (best === null || left < best.value.limit - (best.value.current ?? 0)) best = { value, source: `${dir}/${limitFile}` };
    }
    if (dir === m.mount || dir.length <= m.mount.length) break;
  }
  if (best !== null) return best;
  const leaf = `${m.dir}/${limitFile}`;
  // The root cgroup carries no limit files at all: nothing above the machine's own limits applies.
  if (!r.exists(leaf) && m.dir === m.mount) return { value: { limit: Infinity, current: null }, source: `${m.dir} (root cgroup: no ${limitFile})` };
  if (!r.exists(leaf)) return { value: null, source: leaf, missing: "absent" };
  const cur = r.text(`${m.dir}/${currentFile}`);
  return { value: { limit: Infinity, current: cur === null ? null : num(cur) }, source: leaf };
}

function cpuQuota(r: Reader, m: CgroupMount | null): Reading<number> {
  if (m === null) return { value: null, source: "/sys/fs/cgroup (cpu)", missing: "no cpu cgroup controller for this process" };
  if (m.version === 2) {
    return r.read(`${m.dir}/cpu.max`, (t) => {
      const [quota, period] = t.trim().split(/\s+/);
      if (quota === "max") return Infinity;
      const q = Number(quota);
      const p = Number(period ?? 100000);
      return Number.isFinite(q) && p > 0 ? q / p : null;
    });
  }
  const quota = r.number(`${m.dir}/cpu.cfs_quota_us`);
  const period = r.number(`${m.dir}/cpu.cfs_period_us`);
  if (quota.value === null || period.value === null) return quota;
  return { value: quota.value < 0 ? Infinity : quota.value / period.value, source: quota.source };
}

/** Reads every figure the capacity model needs. Never throws for missing files. */
export function readLimits(root = "/"): Limits {
  const r = new Reader(root);
  const cgroupLines = (r.text("/proc/self/cgroup") ?? "").split("\n").filter((l) => l.trim() !== "");
  const memory = cgroupMount(r, "memory", cgroupLines);
  const pids = cgroupMount(r, "pids", cgroupLines);
  const cpu = cgroupMount(r, "cpu", cgroupLines);
  const memLimit = memory?.version === 1 ? ["memory.limit_in_bytes", "memory.usage_in_bytes"] : ["memory.max", "memory.current"];
  const versions = process.versions as Record<string, string | undefined>;

  return {
    root,
    nofile: nofileOf(rlimit(r, "Max open files")),
    nproc: rlimit(r, "Max processes"),
    uid: r.read("/proc/self/status", (t) => {
      const m = /^Uid:\s+\d+\s+(\d+)/m.exec(t); // effective uid
      return m ? Number(m[1]) : null;
    }),
    capSysResource: r.read("/proc/self/status", (t) => {
      const m = /^CapEff:\s+([0-9a-f]+)/m.exec(t);
      return m ? (BigInt(`0x${m[1]}`) & (1n << 24n)) !== 0n : null; // CAP_SYS_RESOURCE = 24
    }),
    nrOpen: r.number("/proc/sys/fs/nr_open"),
    fileMax: r.number("/proc/sys/fs/file-max"),
    fileNr: r.read("/proc/sys/fs/file-nr", (t) => {
      const f = fields(t);
      return allFinite(f, 3) ? { allocated: f[0]!, free: f[1]!, max: f[2]! } : null;
    }),
    portRange: r.read("/proc/sys/net/ipv4/ip_local_port_range", (t) => {
      const f = fields(t);
      return allFinite(f, 2) && f[0]! <= f[1]! ? { low: f[0]!, high: f[1]! } : null;
    }),
    reservedPorts: r.read("/proc/sys/net/ipv4/ip_local_reserved_ports", parsePortList),
    finTimeout: r.number("/proc/sys/net/ipv4/tcp_fin_timeout"),
    twReuse: r.number("/proc/sys/net/ipv4/tcp_tw_reuse"),
    twRecycle: r.number("/proc/sys/net/ipv4/tcp_tw_recycle"),
    somaxconn: r.number("/proc/sys/net/core/somaxconn"),
    synBacklog: r.number("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
    migrateReq: r.number("/proc/sys/net/ipv4/tcp_migrate_req"),
    netdevMaxBacklog: r.number("/proc/sys/net/core/netdev_max_backlog"),
    softnetDrops: r.read("/proc/net/softnet_stat", (t) => {
      const drops = t.split("\n").filter((l) => l.trim()).map((l) => parseInt(l.trim().split(/\s+/)[1] ?? "", 16));
      return drops.length > 0 && drops.every(Number.isFinite) ? drops.reduce((a, b) => a + b, 0) : null;
    }),
    conntrackMax: r.number("/proc/sys/net/netfilter/nf_conntrack_max"),
    conntrackCount: r.number("/proc/sys/net/netfilter/nf_conntrack_count"),
    tcpMem: r.read("/proc/sys/net/ipv4/tcp_mem", (t) => {
      const f = fields(t);
      return allFinite(f, 3) ? { low: f[0]!, pressure: f[1]!, high: f[2]! } : null;
    }),
    sockstat: r.read("/proc/net/sockstat", (t) => {
      const line = /^TCP:(.*)$/m.exec(t)?.[1];
      if (line === undefined) return null;
      const get = (k: string) => Number(new RegExp(`\\b${k} (\\d+)`).exec(line)?.[1] ?? NaN);
      const s = { inuse: get("inuse"), orphan: get("orphan"), timeWait: get("tw"), alloc: get("alloc"), memPages: get("mem") };
      return Object.values(s).some(Number.isNaN) ? null : s;
    }),
    pageSize: { value: 4096, source: "assumed: 4 KiB pages (x86-64, most arm64 kernels)" },
    memTotal: meminfo(r, "MemTotal"),
    memAvailable: meminfo(r, "MemAvailable"),
    cgroupVersion: memory ? { value: memory.version, source: "/proc/self/cgroup" } : { value: null, source: "/proc/self/cgroup", missing: "no memory cgroup" },
    memoryMax: cgroupLimit(r, memory, memLimit[0]!, memLimit[1]!, "memory"),
    pidsMax: cgroupLimit(r, pids, "pids.max", "pids.current", "pids"),
    cores: r.read("/sys/devices/system/cpu/online", countCpuList),
    cpuQuota: cpuQuota(r, cpu),
    kernel: r.read("/proc/sys/kernel/osrelease", (t) => t.trim() || null),
    runtime: { bun: versions.bun ?? "(not Bun)", node: versions.node ?? "", platform: process.platform, arch: process.arch },
  };
}
