// The capacity of this machine for a plan: each limit's ceiling on connections per role (the caps), which
// binds first, whether the requested plan fits, and the full check that adds one finding per limit. The
// model and its arithmetic live in model.ts and the findings in findings.ts; this is the entry point the
// commands use, so it re-exports the parts of both they need.
import { count, bytes } from "../format.ts";
import { readLimits, type Limits } from "./limits.ts";
import { suggestTargets } from "./targets.ts";
import { findingsFor, type Finding } from "./findings.ts";
import { sysctlCommand } from "./fixes.ts";
import {
  COSTS,
  DEFAULT_PORT_RANGE,
  buildModel,
  bytesPerConnection,
  memoryFit,
  portsPerPair,
  processCount,
  sides,
  type Cap,
  type Capacity,
  type Costs,
  type Model,
  type PlanInput,
  type Role,
  type RoleCapacity,
} from "./model.ts";

export { parseTargets, formatTarget, loopbackTargets, suggestTargets, type Target } from "./targets.ts";
export {
  COSTS,
  ROLES,
  memoryFit,
  pairsFor,
  portsPerPair,
  processesFor,
  socketsPerProcess,
  workerNofile,
  type Capacity,
  type Costs,
  type PlanInput,
  type Role,
} from "./model.ts";
export type { Finding } from "./findings.ts";

/** What every cap of one role shares: sockets per connection, the note on the processes the plan takes. */
interface CapContext {
  m: Model;
  role: Role;
  sides: number;
  procNote: string;
}

function nofileCap(c: CapContext): Cap | null {
  const { m } = c;
  if (m.perProcess !== 0) return null;
  return { id: "nofile", label: `open files ${m.nofile} per process`, max: 0, source: m.limits.nofile.source, hint: "raise the open-files limit (ulimit -n, LimitNOFILE=)" };
}

function memoryCap(c: CapContext): Cap | null {
  const { m } = c;
  if (!m.memory) return null;
  const perConn = bytesPerConnection(c.role, m.costs, m.clientFeatures);
  return {
    id: "memory",
    label: `memory ${bytes(m.memory.bytes)} at ${bytes(perConn)} per connection + ${bytes(m.costs.processBytes)} per process`,
    max: memoryFit(m.memory.bytes, perConn, m.costs.processBytes, m.perProcess, c.sides),
    source: m.memory.source,
    hint: `${c.procNote}; free memory or raise the open-files limit for fewer processes`,
  };
}

function fileMaxCap(c: CapContext): Cap | null {
  const l = c.m.limits;
  const fileNr = l.fileNr.value;
  const fileMax = fileNr?.max ?? l.fileMax.value;
  if (fileMax === null || fileMax === undefined) return null;
  const free = fileMax - (fileNr?.allocated ?? 0);
  return {
    id: "file-max",
    label: `fs.file-max ${count(fileMax)} (${count(free)} free)`,
    max: Math.max(0, Math.floor(free / c.sides)),
    source: fileNr ? l.fileNr.source : l.fileMax.source,
    hint: "raise fs.file-max (wsmillion doctor shows the sysctl)",
  };
}

function pidsCap(c: CapContext): Cap | null {
  const { m } = c;
  const pids = m.limits.pidsMax.value;
  if (!pids || !Number.isFinite(pids.limit)) return null;
  const procs = Math.floor(Math.max(0, pids.limit - (pids.current ?? 0)) / m.costs.threadsPerProcess);
  return {
    id: "pids",
    label: `cgroup pids.max ${count(pids.limit)} (${count(procs)} processes of ~${m.costs.threadsPerProcess} threads)`,
    max: Math.floor(procs / c.sides) * m.perProcess,
    source: m.limits.pidsMax.source,
    hint: `${c.procNote}; raise pids.max (TasksMax=, --pids-limit) or the open-files limit`,
  };
}

function nprocCap(c: CapContext): Cap | null {
  const { m } = c;
  const l = m.limits;
  const np = l.nproc.value;
  const privileged = l.uid.value === 0 || l.capSysResource.value === true;
  if (!np || !Number.isFinite(np.soft) || privileged) return null;
  const procs = Math.floor(np.soft / m.costs.threadsPerProcess);
  return {
    id: "nproc",
    label: `RLIMIT_NPROC ${count(np.soft)} (${count(procs)} processes of ~${m.costs.threadsPerProcess} threads)`,
    max: Math.floor(procs / c.sides) * m.perProcess,
    source: l.nproc.source,
    hint: `${c.procNote}; raise ulimit -u (LimitNPROC=)`,
  };
}

function portsCap(c: CapContext): Cap | null {
  const { m } = c;
  if (c.role === "server") return null;
  const l = m.limits;
  const per = portsPerPair(l);
  const r = l.portRange.value ?? DEFAULT_PORT_RANGE;
  const pairs = m.targets.length;
  const need = per > 0 ? Math.ceil(m.connections / per) : 1;
  return {
    id: "ports",
    label: `ephemeral ports ${r.low}-${r.high} (${count(per)} per destination) with ${pairs} target${pairs === 1 ? "" : "s"}`,
    max: per * pairs,
    source: l.portRange.source,
    hint: `use --targets ${suggestTargets(Math.max(need, pairs), m.targets[0])} or widen net.ipv4.ip_local_port_range`,
  };
}

function conntrackCap(c: CapContext): Cap | null {
  const l = c.m.limits;
  const ctMax = l.conntrackMax.value;
  const ctCount = l.conntrackCount.value;
  // With the module loaded but no rule using it, the count stays 0 and nothing is tracked (measured:
  // 6,000 loopback connections, count 0), so the table caps only when it is visibly in use.
  if (ctMax === null || ctCount === null || ctCount <= 0) return null;
  return {
    id: "conntrack",
    label: `nf_conntrack_max ${count(ctMax)} (${count(ctCount)} in use)`,
    max: Math.max(0, ctMax - ctCount),
    source: l.conntrackMax.source,
    hint: "raise net.netfilter.nf_conntrack_max or exempt the test port (CT --notrack)",
  };
}

const CAPS = [nofileCap, memoryCap, fileMaxCap, pidsCap, nprocCap, portsCap, conntrackCap];

/** Every known cap for a role, tightest first. */
function capsFor(role: Role, m: Model): Cap[] {
  const procs = processCount(role, m.connections, m.nofile).total;
  const c: CapContext = {
    m,
    role,
    sides: sides(role),
    procNote: `${count(m.connections)} connections take ${count(procs)} processes of ${count(m.perProcess)} sockets (open files ${count(m.nofile)})`,
  };
  return CAPS.map((cap) => cap(c))
    .filter((cap): cap is Cap => cap !== null)
    .sort((a, b) => a.max - b.max);
}

function roleCapacity(role: Role, m: Model): RoleCapacity {
  const caps = capsFor(role, m);
  const first = caps[0];
  return { role, max: first?.max ?? Infinity, binding: first?.id ?? "none", bytesPerConnection: bytesPerConnection(role, m.costs, m.clientFeatures), caps };
}

/** Capacity per role and whether the plan fits, without the findings (cheap enough for any caller). */
export function capacityFor(input: PlanInput, limits: Limits, costs: Costs = COSTS): Capacity {
  const m = buildModel(input, limits, costs);
  const server = roleCapacity("server", m);
  const client = roleCapacity("client", m);
  const both = roleCapacity("both", m);
  const mine = { server, client, both }[input.role];
  return {
    server,
    client,
    both,
    role: input.role,
    requested: input.connections,
    fits: input.connections <= mine.max,
    bindingLimit: mine.binding,
    nofile: m.nofile,
    socketsPerProcess: m.perProcess,
    processes: processCount(input.role, input.connections, m.nofile),
    targets: m.targets,
    targetsAssumed: m.targetsAssumed,
    costs: { ...costs },
  };
}

/** The full check: capacity plus one finding per limit, with fixes for those that bind. */
export function checkPlan(input: PlanInput, limits: Limits, costs: Costs = COSTS): { findings: Finding[]; capacity: Capacity } {
  const capacity = capacityFor(input, limits, costs);
  const model = buildModel(input, limits, costs);
  return { findings: findingsFor(input, model, capacity), capacity };
}

/**
 * One line per limit that would cap the requested connections, for `serve` and `load` to print at
 * start (empty when everything fits). The open-files limit appears only through what the processes it
 * forces cost (memory, pids), since the process model spreads connections over workers by itself.
 */
export function startupWarnings(input: PlanInput, limits: Limits = readLimits(), costs: Costs = COSTS): string[] {
  const cap = capacityFor(input, limits, costs);
  const mine = cap[input.role];
  return mine.caps
    .filter((c) => c.max < input.connections)
    .map((c) => `limit: ${c.label} caps ${input.role} at ${count(c.max)} of ${count(input.connections)} connections; ${c.hint}`);
}

/** The doctor's checks of the kernel settings a listening server leans on while connections pour in. */
const SERVER_KERNEL_CHECKS = ["backlog", "migrate_req", "server-ports"];
/** The loopback queue matters when the clients run on this machine too. */
const LOOPBACK_KERNEL_CHECKS = ["netdev_backlog"];

/**
 * One line per kernel setting that a server sized for `connections` finds risky (the doctor's findings
 * that warn or fail), with the sysctl that fixes it. `port` 0 skips the listening-port check (the kernel
 * picked it); `clientsHere` adds the loopback checks.
 */
export function serverKernelWarnings(input: { connections: number; port: number; clientsHere: boolean }, limits: Limits = readLimits()): string[] {
  const targets = input.port > 0 ? [{ host: "127.0.0.1", port: input.port }] : undefined;
  const risky = (role: Role, ids: string[]): Finding[] =>
    checkPlan({ role, connections: input.connections, targets }, limits).findings.filter((f) => ids.includes(f.id) && f.status !== "ok" && (f.sysctls?.length ?? 0) > 0);
  const found = [...risky("server", SERVER_KERNEL_CHECKS), ...(input.clientsHere ? risky("both", LOOPBACK_KERNEL_CHECKS) : [])];
  return found.map((f) => {
    const why = f.fix?.[0]?.replace(/^#\s*/, "") ?? f.detail;
    const here = LOOPBACK_KERNEL_CHECKS.includes(f.id) ? " (with the clients on this machine)" : "";
    return `kernel: ${f.title} is ${f.value}${here}: ${why}; fix: ${f.sysctls!.map(sysctlCommand).join(" && ")}`;
  });
}
