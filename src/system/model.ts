// The capacity model's inputs and arithmetic: measured costs per connection, the plan, the process model
// (sockets per process, processes per plan), ephemeral ports per destination, and the Model the caps
// (capacity.ts) and the findings (findings.ts) both derive from. The supervisor and the load coordinator
// use the same process arithmetic, so it has one definition here.
import type { Limits } from "./limits.ts";
import { isLoopback, type Target } from "./targets.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Per-connection costs in bytes. Every figure is a measurement on this project's benchmarks (see each field). */
export interface Costs {
  /** RSS per idle server connection, Bun.serve with 19,000 idle connections (DESIGN.md). */
  serverBytes: number;
  /** RSS per idle client connection, raw Bun TCP socket (Bun.connect) with our codec. */
  clientBytes: number;
  /**
   * What wss adds per idle client connection, nearly all of it Bun's TLS session: 8.4-8.6 KiB (wss 10.2-10.5
   * KiB against plain 1.8-1.9 KiB at 10,000 connections in one process; a bare Bun.connect({ tls }) socket
   * holds 8.7 KiB; bench/load-tls.ts, four runs).
   */
  clientTlsBytes: number;
  /**
   * What permessage-deflate adds per client connection once traffic filled the context-takeover windows
   * (the server's 32 KiB and our 4 KiB send history): 38.4 KiB more than the same traffic without takeover
   * at 1,000 connections (bench/load-tls.ts). An idle connection that agreed holds ~0.2 KiB.
   */
  clientDeflateBytes: number;
  /** Kernel memory per socket (socket, tcp_sock, file, inode, epoll entry): 4-6 KB measured by the Slab delta, per end. */
  kernelBytes: number;
  /** RSS of a Bun process before any connection. */
  processBytes: number;
  /** Threads (tasks) per busy Bun process, which count against pids.max and RLIMIT_NPROC: 5-6 measured on 2 cores. */
  threadsPerProcess: number;
  /**
   * All in per connection with server and client on one box, measured as the MemAvailable drop. Shown for
   * reference; the model uses the component sum, because MemAvailable counts half of the socket slab as
   * reclaimable, which it is not while the sockets are open.
   */
  bothBytes: number;
  /**
   * CPU per echoed message with both ends on one box and many sockets each sending one frame at a time (the
   * demo's shape): client 23.1-24.8 µs (bench/load-echo-cpu.ts, single) + server 13.6-14.2 µs
   * (bench/serve-echo-cpu.ts, single), mostly kernel time on loopback.
   */
  echoCpuMicros: number;
}

export const COSTS: Readonly<Costs> = Object.freeze({
  serverBytes: 1.5 * KiB,
  clientBytes: 1.5 * KiB,
  clientTlsBytes: 8.5 * KiB,
  clientDeflateBytes: 38.5 * KiB,
  kernelBytes: 5 * KiB,
  processBytes: 26 * MiB,
  threadsPerProcess: 6,
  bothBytes: Math.round(8.2 * KiB),
  echoCpuMicros: 37,
});

/** Echoes per second this many cores drive with both ends on the box, at full CPU. */
export function echoCapacity(cores: number, costs: Costs = COSTS): number {
  return (Math.max(1, cores) * 1e6) / costs.echoCpuMicros;
}

/** Descriptors each process keeps for itself (stdio, epoll, timers, IPC, the runtime's own files). */
export const FD_HEADROOM = 100;

/** The kernel's default ip_local_port_range, used only when the file cannot be read. */
export const DEFAULT_PORT_RANGE = { low: 32768, high: 60999 };

/** A check starts warning when the plan uses this share of a limit. */
export const WARN_SHARE = 0.8;

export type Role = "server" | "client" | "both";
export const ROLES: readonly Role[] = ["server", "client", "both"];

export interface PlanInput {
  role: Role;
  connections: number;
  targets?: Target[];
  /** The client side dials wss://. */
  tls?: boolean;
  /** The client side offers permessage-deflate with context takeover in either direction (windows kept). */
  deflate?: boolean;
}

/** One limit's ceiling on connections for a role. */
export interface Cap {
  id: string;
  label: string;
  max: number;
  source: string;
  /** What to do when it binds, short enough for a one-line startup warning. */
  hint: string;
}

export interface RoleCapacity {
  role: Role;
  /** Connections this machine holds in this role (Infinity when no known limit applies). */
  max: number;
  /** Id of the cap that binds first, or "none". */
  binding: string;
  bytesPerConnection: number;
  /** Every known cap, tightest first. */
  caps: Cap[];
}

export interface Capacity {
  server: RoleCapacity;
  client: RoleCapacity;
  both: RoleCapacity;
  role: Role;
  requested: number;
  fits: boolean;
  /** The cap that binds first for the requested role. */
  bindingLimit: string;
  /** Open files each worker gets: Bun raises its soft limit to the hard limit at start. */
  nofile: number;
  socketsPerProcess: number;
  processes: { server: number; client: number; total: number };
  targets: Target[];
  targetsAssumed: boolean;
  costs: Costs;
}

export function socketsPerProcess(nofileSoft: number): number {
  return Math.max(0, Math.floor(nofileSoft) - FD_HEADROOM);
}

export function processesFor(connections: number, nofileSoft: number): number {
  if (connections <= 0) return 0;
  const per = socketsPerProcess(nofileSoft);
  return per > 0 ? Math.ceil(connections / per) : Infinity;
}

/**
 * Local ports one source address has per destination (address, port) pair: the size of
 * ip_local_port_range minus ip_local_reserved_ports inside it. An unbound connect() may reuse a local
 * port for a different destination, so the ceiling is pairs x this.
 */
export function portsPerPair(limits: Pick<Limits, "portRange" | "reservedPorts">): number {
  const r = limits.portRange.value ?? DEFAULT_PORT_RANGE;
  let reserved = 0;
  for (const p of limits.reservedPorts.value ?? []) reserved += Math.max(0, Math.min(p.high, r.high) - Math.max(p.low, r.low) + 1);
  return Math.max(0, r.high - r.low + 1 - reserved);
}

/**
 * Use at most this share of a destination pair's ephemeral ports for a fast ramp. connect() searches the
 * range for a free port, and the search grows with the fill: measured here, 50,000 connections ramped at
 * 2,500/s over 3 pairs (60% full) and at 15,500/s over 9 pairs (20% full). Loopback addresses cost nothing.
 */
export const FAST_PORT_SHARE = 0.2;

/** Destination (address, port) pairs that keep each pair's ephemeral range at most `share` full. */
export function pairsFor(connections: number, limits: Pick<Limits, "portRange" | "reservedPorts">, share = FAST_PORT_SHARE): number {
  return Math.max(1, Math.ceil(connections / (portsPerPair(limits) * share)));
}

/** Per-process open-files limit a worker will run with (hard, since Bun raises soft to hard). */
export function workerNofile(limits: Limits): number {
  const n = limits.nofile;
  const hard = Math.min(n.hard, limits.nrOpen.value ?? Infinity);
  return Number.isFinite(hard) ? hard : n.soft;
}

export const DEFAULT_TARGET: Target = { host: "127.0.0.1", port: 8080 };

/** Everything the caps and findings share, derived once from the limits. */
export interface Model {
  role: Role;
  connections: number;
  limits: Limits;
  costs: Costs;
  nofile: number;
  perProcess: number;
  /** Memory left for us: the smaller of MemAvailable and the cgroup's limit minus its usage. */
  memory: { bytes: number; source: string } | null;
  targets: Target[];
  targetsAssumed: boolean;
  /** The client side's TLS and deflate, which change its cost per connection. */
  clientFeatures: Pick<PlanInput, "tls" | "deflate">;
}

export function sides(role: Role): number {
  return role === "both" ? 2 : 1;
}

/** User-space bytes per client connection: the plain cost, plus TLS and deflate when the plan uses them. */
export function clientBytesFor(costs: Costs, plan: Pick<PlanInput, "tls" | "deflate"> = {}): number {
  return costs.clientBytes + (plan.tls ? costs.clientTlsBytes : 0) + (plan.deflate ? costs.clientDeflateBytes : 0);
}

export function bytesPerConnection(role: Role, costs: Costs, plan: Pick<PlanInput, "tls" | "deflate"> = {}): number {
  const client = clientBytesFor(costs, plan);
  const user = role === "server" ? costs.serverBytes : role === "client" ? client : costs.serverBytes + client;
  return user + sides(role) * costs.kernelBytes;
}

/** Processes per side: a box running both holds each connection twice, once in a server worker and once in a load worker. */
export function processCount(role: Role, connections: number, nofile: number): { server: number; client: number; total: number } {
  const server = role === "client" ? 0 : processesFor(connections, nofile);
  const client = role === "server" ? 0 : processesFor(connections, nofile);
  return { server, client, total: server + client };
}

function memoryLeft(limits: Limits): Model["memory"] {
  const avail = limits.memAvailable.value;
  const cg = limits.memoryMax.value;
  const cgLeft = cg && Number.isFinite(cg.limit) ? Math.max(0, cg.limit - (cg.current ?? 0)) : Infinity;
  if (avail === null && !Number.isFinite(cgLeft)) return null;
  if (avail === null || cgLeft < avail) return { bytes: cgLeft, source: limits.memoryMax.source };
  return { bytes: avail, source: `${limits.memAvailable.source} (MemAvailable)` };
}

export function buildModel(input: PlanInput, limits: Limits, costs: Costs): Model {
  const nofile = workerNofile(limits);
  const given = input.targets !== undefined && input.targets.length > 0;
  return {
    role: input.role,
    connections: input.connections,
    limits,
    costs,
    nofile,
    perProcess: socketsPerProcess(nofile),
    memory: memoryLeft(limits),
    targets: given ? input.targets! : [DEFAULT_TARGET],
    targetsAssumed: !given,
    clientFeatures: { tls: input.tls, deflate: input.deflate },
  };
}

/**
 * The most connections whose memory fits a budget: each costs `perConn`, and every `perProcess` of them
 * (per side) start a process costing `perProc`. Exact, not averaged, so a plan at the returned figure
 * passes the memory check: the answer lies within the last two process counts below the averaged bound.
 */
export function memoryFit(budget: number, perConn: number, perProc: number, perProcess: number, sideCount: number): number {
  if (!Number.isFinite(budget)) return Infinity;
  if (perProcess <= 0) return 0;
  const averaged = Math.floor(budget / (perConn + (sideCount * perProc) / perProcess));
  if (!Number.isFinite(averaged)) return Infinity; // zero costs (overridden): memory sets no bound
  const p = Math.ceil(averaged / perProcess);
  let best = 0;
  for (const procs of [p - 1, p]) {
    if (procs < 0) continue;
    const n = Math.min(procs * perProcess, Math.floor((budget - sideCount * procs * perProc) / perConn));
    if (n > (procs - 1) * perProcess) best = Math.max(best, n);
  }
  return Math.max(0, best);
}

/** True for loopback-only plans, where tcp_tw_reuse=2 (the kernel default) already reuses TIME_WAIT ports. */
export function allLoopback(targets: Target[]): boolean {
  return targets.every((t) => isLoopback(t.host));
}
