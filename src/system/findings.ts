// One finding per limit: its status for the requested plan, the figure and where it came from, why it
// matters, and (when it binds or nearly does) the fix from fixes.ts. The arithmetic lives in model.ts.
import { count, bytes } from "../format.ts";
import {
  WARN_SHARE,
  allLoopback,
  bytesPerConnection,
  clientBytesFor,
  portsPerPair,
  sides,
  type Capacity,
  type Model,
  type PlanInput,
} from "./model.ts";
import {
  WIDE_PORT_RANGE,
  backlogAdvice,
  conntrackAdvice,
  fileMaxAdvice,
  finTimeoutAvoid,
  memoryAdvice,
  migrateReqAdvice,
  netdevBacklogAdvice,
  nofileAdvice,
  nprocAdvice,
  pidsAdvice,
  portsAdvice,
  reservedPortsAdvice,
  twRecycleAdvice,
  twReuseAdvice,
  tcpMemAdvice,
  type Advice,
  type Sysctl,
} from "./fixes.ts";
import { formatTarget, suggestTargets } from "./targets.ts";
import type { Reading } from "./limits.ts";

export interface Finding {
  id: string;
  status: "ok" | "warn" | "fail";
  title: string;
  value: string;
  source: string;
  detail: string;
  fix?: string[];
  avoid?: string[];
  /** The runtime settings behind `fix`, for `--apply`. */
  sysctls?: Sysctl[];
}

type Status = Finding["status"];

/** fail past the limit, warn past WARN_SHARE of it. */
function share(need: number, have: number): Status {
  if (need > have) return "fail";
  return need > have * WARN_SHARE ? "warn" : "ok";
}

/**
 * Attaches the advice when the check warns or fails. `folklore` advice (what tcp_tw_* do and do not do)
 * is worth reading before any test, so its "avoid" lines come along even when the check is ok.
 */
function finding(f: Omit<Finding, "fix" | "sysctls">, advice?: Advice, folklore = false): Finding {
  if (!advice) return f;
  const out: Finding = { ...f };
  const bad = f.status !== "ok";
  if (bad) {
    out.fix = advice.fix;
    if (advice.sysctls.length > 0) out.sysctls = advice.sysctls;
  }
  const avoid = [...(f.avoid ?? []), ...(bad || folklore ? advice.avoid : [])];
  if (avoid.length > 0) out.avoid = avoid;
  return out;
}

function absent<T>(r: Reading<T>): string {
  return `unknown (${r.missing ?? "absent"})`;
}

function nofile(input: PlanInput, m: Model, cap: Capacity): Finding {
  const l = m.limits;
  const n = l.nofile;
  const p = cap.processes;
  const procs = input.role === "both" ? `${count(p.server)} server + ${count(p.client)} load processes` : `${count(p.total)} process${p.total === 1 ? "" : "es"}`;
  const canRaiseHard = l.capSysResource.value === true;
  const raise = canRaiseHard ? "; hard can be raised to fs.nr_open (CAP_SYS_RESOURCE)" : "; hard is fixed here (no CAP_SYS_RESOURCE)";
  // Too many processes matter only through what they cost; the caps that price them decide the status.
  const priced = cap[input.role].caps.some((c) => ["memory", "pids", "nproc"].includes(c.id) && c.max < input.connections);
  const status: Status = m.perProcess === 0 ? "fail" : n.missing !== undefined || (priced && p.total > 1) ? "warn" : "ok";
  const target = Math.min(Math.max(input.connections + 100, 65536), 1 << 20);
  return finding(
    {
      id: "nofile",
      status,
      title: "open files per process",
      value: n.missing !== undefined ? `unknown (${n.missing})` : `soft ${count(n.soft)}, hard ${count(n.hard)}${raise}`,
      source: l.nofile.source,
      detail: `Bun raises its soft limit to the hard one at start, so each worker holds ${count(m.perProcess)} sockets (${count(m.nofile)} minus 100 for its own files); ${count(input.connections)} connections take ${procs}. The process model spreads them by itself; the limit costs memory and threads per process, not connections.`,
    },
    nofileAdvice({ target, nrOpen: l.nrOpen.value, canRaiseHard }),
  );
}

function nrOpen(m: Model): Finding {
  const r = m.limits.nrOpen;
  return finding({
    id: "nr_open",
    status: "ok",
    title: "fs.nr_open",
    value: r.value === null ? absent(r) : count(r.value),
    source: r.source,
    detail: "The ceiling for any process's hard open-files limit; raise it before asking for a larger nofile.",
  });
}

function fileMax(input: PlanInput, m: Model): Finding {
  const l = m.limits;
  const nr = l.fileNr.value;
  const max = nr?.max ?? l.fileMax.value;
  const need = input.connections * sides(input.role);
  if (max === null) return finding({ id: "file-max", status: "warn", title: "open files, system-wide", value: absent(l.fileMax), source: l.fileMax.source, detail: "Could not read fs.file-max or fs.file-nr." });
  const free = max - (nr?.allocated ?? 0);
  return finding(
    {
      id: "file-max",
      status: share(need, free),
      title: "open files, system-wide",
      value: `${nr ? `${count(nr.allocated)} open of ` : ""}${count(max)}`,
      source: nr ? `${l.fileNr.source}, ${l.fileMax.source}` : l.fileMax.source,
      detail: `Every socket is an open file: the plan needs ${count(need)} (${input.role === "both" ? "both ends on this box" : "one per connection"}), ${count(free)} are free.`,
    },
    fileMaxAdvice(need + (nr?.allocated ?? 0), max),
  );
}

function ports(input: PlanInput, m: Model): Finding {
  const l = m.limits;
  const r = l.portRange.value;
  const per = portsPerPair(l);
  const range = r ? `${r.low}-${r.high}` : "32768-60999 (assumed kernel default)";
  const reserved = (l.reservedPorts.value ?? []).length > 0 ? `, ${count((r ? r.high - r.low + 1 : 28232) - per)} reserved` : "";
  const value = `${range}: ${count(per)} per destination${reserved}`;
  if (input.role === "server") {
    return finding({ id: "ports", status: "ok", title: "ephemeral ports", value, source: l.portRange.source, detail: "Not used by a server: accepted connections share the listening port." });
  }
  const pairs = m.targets.length;
  const need = per > 0 ? Math.ceil(input.connections / per) : Infinity;
  const widePer = WIDE_PORT_RANGE.high - WIDE_PORT_RANGE.low + 1;
  const wideNeed = Math.ceil(input.connections / widePer);
  // Suggest enough pairs to leave a fifth of the ports spare (TIME_WAIT after reconnects holds some).
  const roomy = (perPair: number) => (perPair > 0 ? Math.ceil(input.connections / (perPair * WARN_SHARE)) : Infinity);
  const tw = l.sockstat.value?.timeWait ?? 0;
  const targets = m.targetsAssumed ? `1 destination assumed (${formatTarget(m.targets[0]!)}; give --targets)` : `${count(pairs)} destination pair${pairs === 1 ? "" : "s"}`;
  return finding(
    {
      id: "ports",
      status: share(input.connections, per * pairs),
      title: "ephemeral ports",
      value: `${value}, ${targets}`,
      source: l.portRange.source,
      detail:
        `connect() without bind takes a local port from this range and reuses it across different destination (address, port) pairs, so one source address reaches ${count(per)} x pairs = ${count(per * pairs)}. ` +
        `${count(input.connections)} connections need ${count(need)} pairs (${count(wideNeed)} with the range widened to ${WIDE_PORT_RANGE.low}-${WIDE_PORT_RANGE.high}).` +
        (tw > 0 ? ` ${count(tw)} sockets in TIME_WAIT hold their ports for 60 s.` : "") +
        ` connect() searches the range for a free port, so dialling slows as a pair fills (measured here: 50,000 connections ramped at 2,500/s with pairs 60% full, 15,500/s at 20%); extra loopback addresses cost nothing.`,
    },
    portsAdvice({
      needPairs: Number.isFinite(need) ? need : wideNeed,
      havePairs: pairs,
      suggest: suggestTargets(Number.isFinite(roomy(per)) ? roomy(per) : roomy(widePer), m.targets[0]),
      wideNeedPairs: roomy(widePer),
      wideSuggest: suggestTargets(roomy(widePer), m.targets[0]),
      range,
      serverPort: m.targets[0]?.port ?? 8080,
    }),
  );
}

/** A server port inside the ephemeral range can be taken by an outgoing connection before the server binds it. */
function serverPorts(input: PlanInput, m: Model): Finding | null {
  if (input.role === "client" || m.targetsAssumed) return null;
  const l = m.limits;
  const r = l.portRange.value;
  if (!r) return null;
  const reserved = l.reservedPorts.value ?? [];
  const clash = [...new Set(m.targets.map((t) => t.port))].filter((p) => p >= r.low && p <= r.high && !reserved.some((x) => p >= x.low && p <= x.high));
  return finding(
    {
      id: "server-ports",
      status: clash.length > 0 ? "warn" : "ok",
      title: "server ports vs ephemeral range",
      value: clash.length > 0 ? `${clash.slice(0, 8).join(",")}${clash.length > 8 ? ",..." : ""} inside ${r.low}-${r.high}` : "outside the range or reserved",
      source: `${l.portRange.source}, ${l.reservedPorts.source}`,
      detail: "Outgoing connections pick local ports from the ephemeral range; a listening port inside it can be taken before the server binds (EADDRINUSE).",
    },
    reservedPortsAdvice(clash),
  );
}

function twReuse(input: PlanInput, m: Model): Finding {
  const r = m.limits.twReuse;
  const v = r.value;
  const loop = allLoopback(m.targets);
  const meaning = v === 0 ? "off" : v === 1 ? "on for all outgoing connections" : v === 2 ? "loopback only (kernel default)" : "";
  const status: Status = input.role === "server" || v === null ? "ok" : v === 0 || (v === 2 && !loop) ? "warn" : "ok";
  return finding(
    {
      id: "tcp_tw_reuse",
      status,
      title: "net.ipv4.tcp_tw_reuse",
      value: v === null ? absent(r) : `${v}: ${meaning}`,
      source: r.source,
      detail:
        input.role === "server"
          ? "Matters on the connecting side only."
          : `Lets a new outgoing connection take a port still in TIME_WAIT, so reconnect storms do not starve the range; ${loop ? "all targets are loopback" : "some targets are not loopback"}. It adds no ports.`,
    },
    twReuseAdvice(),
    true,
  );
}

function twRecycle(m: Model): Finding {
  const r = m.limits.twRecycle;
  const on = r.value !== null && r.value > 0;
  return finding(
    {
      id: "tcp_tw_recycle",
      status: on ? "fail" : "ok",
      title: "net.ipv4.tcp_tw_recycle",
      value: r.value === null ? "absent (removed in Linux 4.12)" : String(r.value),
      source: r.source,
      detail: on ? "Set: it drops SYNs from clients behind NAT whose timestamps look older. Never set it." : "Never set it; guides that do fail on current kernels.",
    },
    twRecycleAdvice(),
    true,
  );
}

function finTimeout(m: Model): Finding {
  const r = m.limits.finTimeout;
  return {
    id: "tcp_fin_timeout",
    status: "ok",
    title: "net.ipv4.tcp_fin_timeout",
    value: r.value === null ? absent(r) : `${r.value} s`,
    source: r.source,
    detail: "Bounds FIN_WAIT_2 only; TIME_WAIT stays 60 s whatever this says.",
    avoid: finTimeoutAvoid(),
  };
}

function backlog(input: PlanInput, m: Model): Finding {
  const l = m.limits;
  const s = l.somaxconn.value;
  const b = l.synBacklog.value;
  const low = (v: number | null) => v !== null && v < 1024;
  const status: Status = input.role !== "client" && (low(s) || low(b)) ? "warn" : "ok";
  return finding(
    {
      id: "backlog",
      status,
      title: "accept and SYN backlog",
      value: `somaxconn ${s ?? "unknown"}, tcp_max_syn_backlog ${b ?? "unknown"}`,
      source: `${l.somaxconn.source}, ${l.synBacklog.source}`,
      detail: input.role === "client" ? "Matters on the listening side only." : "Queues for connections the server has not accepted yet; they bound how fast a ramp can go, not how many connections stay open.",
    },
    backlogAdvice(),
  );
}

function migrateReq(input: PlanInput, m: Model, cap: Capacity): Finding | null {
  if (input.role === "client") return null;
  const r = m.limits.migrateReq;
  const workers = cap.processes.server;
  // One listener never leaves its own port group; several do, each time one fills up.
  const status: Status = r.value === 0 && workers > 1 ? "warn" : "ok";
  return finding(
    {
      id: "migrate_req",
      status,
      title: "net.ipv4.tcp_migrate_req",
      value: r.value === null ? `${absent(r)} (kernels before 5.14)` : String(r.value),
      source: r.source,
      detail:
        `${count(workers)} server process${workers === 1 ? "" : "es"} share the port. A worker at its cap stops listening, and without migration ` +
        "the connections already queued on its listener are reset (clients see ECONNRESET).",
    },
    status === "warn" ? migrateReqAdvice() : undefined,
  );
}

/**
 * Measured here: at 1000 a million-connection run lost handshake packets in this queue and 17 dials to
 * resets; at 65536 none, in three runs.
 */
export const LOOPBACK_BACKLOG = 65536;

function netdevBacklog(input: PlanInput, m: Model): Finding {
  const l = m.limits;
  const v = l.netdevMaxBacklog.value;
  const drops = l.softnetDrops.value;
  // With both ends on this box every packet crosses loopback, and each side's burst lands in this queue.
  const status: Status = input.role === "both" && v !== null && v < LOOPBACK_BACKLOG / 4 ? "warn" : "ok";
  return finding(
    {
      id: "netdev_backlog",
      status,
      title: "net.core.netdev_max_backlog",
      value: `${v === null ? absent(l.netdevMaxBacklog) : count(v)} packets; ${drops === null ? "drops unknown" : `${count(drops)} dropped since boot`}`,
      source: `${l.netdevMaxBacklog.source}, ${l.softnetDrops.source}`,
      detail:
        input.role === "both"
          ? "Both ends on this machine: every packet crosses loopback through this per-CPU queue. When a ramp overflows it, a dropped SYN is retransmitted after 1 s and some of those connections end in a reset (ECONNRESET)."
          : "Matters most with both ends on one machine (loopback), where every packet passes through it.",
    },
    status === "warn" ? netdevBacklogAdvice(LOOPBACK_BACKLOG) : undefined,
  );
}

function conntrack(input: PlanInput, m: Model): Finding {
  const l = m.limits;
  const max = l.conntrackMax.value;
  if (max === null) {
    return finding({ id: "conntrack", status: "ok", title: "connection tracking", value: "module not loaded: no table to fill", source: l.conntrackMax.source, detail: "nf_conntrack is not loaded, so no table caps connections." });
  }
  const used = l.conntrackCount.value ?? 0;
  const free = max - used;
  const port = m.targets[0]?.port ?? null;
  // Count 0 with the module loaded means no rule asks for tracking (measured: loopback connections are
  // not counted then); a plan that would not fit is still worth a warning in case a firewall starts.
  let status = share(input.connections, free);
  if (used === 0 && status === "fail") status = "warn";
  if (used > max * 0.9) status = "fail";
  return finding(
    {
      id: "conntrack",
      status,
      title: "connection tracking",
      value: `${count(used)} of ${count(max)} entries`,
      source: `${l.conntrackMax.source}, ${l.conntrackCount.source}`,
      detail:
        `One entry per tracked connection; a full table drops new connections ("nf_conntrack: table full"). The plan needs ${count(input.connections)}, ${count(free)} are free.` +
        (used === 0 ? " The count is 0, so nothing seems to be tracked now (entries appear only when a firewall rule uses connection state)." : ""),
    },
    conntrackAdvice({ need: used + input.connections, current: max, port }),
  );
}

function tcpMem(input: PlanInput, m: Model): Finding {
  const l = m.limits;
  const t = l.tcpMem.value;
  const page = l.pageSize.value ?? 4096;
  if (t === null) return finding({ id: "tcp_mem", status: "warn", title: "TCP buffer memory", value: absent(l.tcpMem), source: l.tcpMem.source, detail: "Could not read tcp_mem." });
  const used = l.sockstat.value?.memPages ?? 0;
  const sockets = input.connections * sides(input.role);
  // Idle sockets hold no buffers; a socket with any byte queued is charged whole pages. So the plan is
  // safe idle, and a message queued on every socket at once needs at least one page per socket.
  const burst = used + sockets;
  const status: Status = used >= t.high ? "fail" : used >= t.pressure || burst > t.high ? "warn" : "ok";
  const memTotalPages = Math.floor((l.memTotal.value ?? 0) / page);
  return finding(
    {
      id: "tcp_mem",
      status,
      title: "TCP buffer memory",
      value: `${count(used)} pages in use (${bytes(used * page)}); pressure ${count(t.pressure)}, max ${count(t.high)} pages (${bytes(t.high * page)})`,
      source: `${l.tcpMem.source}, ${l.sockstat.source}`,
      detail:
        `Idle connections hold no buffers. With a message queued on every one of ${count(sockets)} sockets at once, each is charged at least a page: ${count(burst)} pages against max ${count(t.high)}. ` +
        "Above pressure the kernel trims buffers; at max it drops data ('TCP: out of memory -- consider tuning tcp_mem').",
    },
    tcpMemAdvice({ needPages: burst, current: t, memTotalPages }),
  );
}

function memory(input: PlanInput, m: Model, cap: Capacity): Finding {
  const l = m.limits;
  const c = m.costs;
  const per = bytesPerConnection(input.role, c, m.clientFeatures);
  const client = clientBytesFor(c, m.clientFeatures);
  const procs = cap.processes.total;
  const need = input.connections * per + (Number.isFinite(procs) ? procs : 0) * c.processBytes;
  const cg = l.memoryMax.value;
  const cgText = cg === null ? "no memory cgroup" : Number.isFinite(cg.limit) ? `cgroup limit ${bytes(cg.limit)}, ${bytes(cg.current ?? 0)} used` : "cgroup: no limit";
  if (m.memory === null) {
    return finding({ id: "memory", status: "warn", title: "memory", value: `unknown (${l.memAvailable.missing ?? "absent"})`, source: l.memAvailable.source, detail: "Could not read /proc/meminfo." });
  }
  const parts =
    input.role === "both"
      ? `(${bytes(c.serverBytes)} server + ${bytes(client)} client + 2 x ${bytes(c.kernelBytes)} kernel)`
      : `(${bytes(input.role === "server" ? c.serverBytes : client)} user + ${bytes(c.kernelBytes)} kernel)`;
  return finding(
    {
      id: "memory",
      status: share(need, m.memory.bytes),
      title: "memory",
      value: `${bytes(m.memory.bytes)} available; ${cgText}`,
      source: `${l.memAvailable.source}, ${l.memoryMax.source}`,
      detail: `${count(input.connections)} x ${bytes(per)} ${parts} + ${count(procs)} processes x ${bytes(c.processBytes)} = ${bytes(need)}.`,
    },
    memoryAdvice({ cgroup: cg !== null && Number.isFinite(cg.limit), processes: procs }),
  );
}

function pids(m: Model, cap: Capacity): Finding {
  const r = m.limits.pidsMax;
  const need = cap.processes.total * m.costs.threadsPerProcess;
  const v = r.value;
  if (v === null || !Number.isFinite(v.limit)) {
    return finding({ id: "pids", status: "ok", title: "tasks (cgroup pids.max)", value: v === null ? `no limit (${r.missing ?? "no pids cgroup"})` : "no limit", source: r.source, detail: `The plan runs ${count(cap.processes.total)} processes, about ${count(need)} threads.` });
  }
  const free = v.limit - (v.current ?? 0);
  return finding(
    {
      id: "pids",
      status: share(need, free),
      title: "tasks (cgroup pids.max)",
      value: `${count(v.current ?? 0)} of ${count(v.limit)}`,
      source: r.source,
      detail: `pids.max counts threads. ${count(cap.processes.total)} processes x ~${m.costs.threadsPerProcess} threads = ${count(need)}; ${count(free)} free.`,
    },
    pidsAdvice({ cgroupDir: r.source.replace(/\/[^/]*$/, "") }),
  );
}

function nproc(m: Model, cap: Capacity): Finding {
  const l = m.limits;
  const r = l.nproc;
  const privileged = l.uid.value === 0 || l.capSysResource.value === true;
  const need = cap.processes.total * m.costs.threadsPerProcess;
  if (r.value === null || privileged || !Number.isFinite(r.value.soft)) {
    const why = r.value === null ? absent(r) : privileged ? `${count(r.value.soft)}, not enforced for root` : "unlimited";
    return finding({ id: "nproc", status: "ok", title: "tasks per user (RLIMIT_NPROC)", value: why, source: r.source, detail: "Counts every thread of the user." });
  }
  return finding(
    {
      id: "nproc",
      status: share(need, r.value.soft),
      title: "tasks per user (RLIMIT_NPROC)",
      value: `soft ${count(r.value.soft)}, hard ${count(r.value.hard)}`,
      source: r.source,
      detail: `Counts every thread of this user, including ones already running; the plan adds ~${count(need)}.`,
    },
    nprocAdvice(Math.max(need * 2, 4096)),
  );
}

function cores(m: Model, cap: Capacity): Finding {
  const l = m.limits;
  const q = l.cpuQuota.value;
  const quota = q !== null && Number.isFinite(q) ? `, cgroup quota ${q.toFixed(1)} cores` : "";
  return {
    id: "cores",
    status: "ok",
    title: "cores",
    value: `${l.cores.value ?? "unknown"}${quota}`,
    source: l.cpuQuota.value !== null && Number.isFinite(q ?? Infinity) ? `${l.cores.source}, ${l.cpuQuota.source}` : l.cores.source,
    detail: `${count(cap.processes.total)} processes share them with the kernel's TCP work; cores bound message rates and ramp speed, not how many connections stay open.`,
  };
}

function runtime(m: Model): Finding {
  const l = m.limits;
  return {
    id: "runtime",
    status: "ok",
    title: "runtime",
    value: `Bun ${l.runtime.bun}, Linux ${l.kernel.value ?? "unknown"}, ${l.runtime.platform}/${l.runtime.arch}`,
    source: `process.versions, ${l.kernel.source}`,
    detail: `Node compatibility level ${l.runtime.node}.`,
  };
}

export function findingsFor(input: PlanInput, m: Model, cap: Capacity): Finding[] {
  const out: (Finding | null)[] = [
    nofile(input, m, cap),
    nrOpen(m),
    fileMax(input, m),
    ports(input, m),
    serverPorts(input, m),
    twReuse(input, m),
    twRecycle(m),
    finTimeout(m),
    backlog(input, m),
    migrateReq(input, m, cap),
    netdevBacklog(input, m),
    conntrack(input, m),
    tcpMem(input, m),
    memory(input, m, cap),
    pids(m, cap),
    nproc(m, cap),
    cores(m, cap),
    runtime(m),
  ];
  return out.filter((f): f is Finding => f !== null);
}
