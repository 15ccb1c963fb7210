// The load plan: the one home of its shape, its defaults, the load-worker count and its split into shards.
// Every run (load, demo, sweep) builds its plan with `completePlan` and runs it through `shardPlan`.
// Slots are interleaved across workers (global slot g = worker + k*workers) so every worker's sends and
// destinations are spread evenly; a shard is self-contained, so it can go to a local worker process or,
// later, to another machine's.
import type { DeflateOffer } from "../protocol/deflate.ts";
import { processesFor } from "../system/capacity.ts";
import { formatTarget, type Target } from "../system/targets.ts";
import type { PayloadSpec } from "./payload.ts";

export type LoadMode = "echo" | "send" | "receive" | "idle";

/** wss: how every connection's TLS handshake checks the server. */
export interface TlsPlan {
  /** Accept any certificate (self-signed test servers). */
  insecure: boolean;
  /** PEM file of the CA(s) to trust instead of the system's, or null. */
  caFile: string | null;
  /** SNI and the name the certificate must carry (dialling an address by IP), or null: the target's host. */
  serverName: string | null;
}
export const LOAD_MODES: readonly LoadMode[] = ["echo", "send", "receive", "idle"];

export interface LoadPlan {
  /** Destination (address, port) pairs; connections are spread over them round robin. */
  targets: Target[];
  path: string;
  connections: number;
  /** Dials in flight at once, fleet-wide. */
  concurrency: number;
  /** Dials per second cap, fleet-wide (0 = no cap). */
  rate: number;
  /** Seconds of traffic once the connections are up. */
  durationS: number;
  /** Seconds to keep connections open after the traffic, before closing. */
  holdS: number;
  /** Each connection sends every intervalMs (0 = no sends; fractions allowed, 0.1 = 10,000 msg/s). Open loop. */
  intervalMs: number;
  /**
   * Closed loop (echo only): each connection keeps this many messages outstanding and sends the next as an
   * echo returns, the classic saturation test (0 = open loop on intervalMs).
   */
  inFlight: number;
  /** Payload bytes per message. */
  size: number;
  /** What the payload holds after its timestamp (see load/payload.ts). */
  payload: PayloadSpec;
  /** wss:// (null: plain ws://). */
  tls: TlsPlan | null;
  /** permessage-deflate to offer (null: none). */
  deflate: DeflateOffer | null;
  mode: LoadMode;
  headers: [string, string][];
  subprotocols: string[];
  handshakeTimeoutMs: number;
  /** Reopen dropped or failed connections with jittered exponential backoff. */
  reconnect: boolean;
  /** Load worker processes. */
  workers: number;
  /** Source addresses to bind (empty: no bind, the kernel picks). */
  sources: string[];
  /** First explicit local port when binding sources (0: the kernel searches). */
  sourcePortBase: number;
  /** Largest incoming message accepted. */
  maxMessage: number;
  /** http://host:port/conns of the server, fetched when reachable (null: skip). */
  statusUrl: string | null;
}

export const DEFAULT_PATH = "/ws";

/** The defaults of every plan; flags and callers override them field by field. */
export const LOAD_DEFAULTS = {
  path: DEFAULT_PATH,
  concurrency: 500,
  rate: 0,
  durationS: 10,
  holdS: 0,
  intervalMs: 1000,
  inFlight: 0,
  size: 100,
  payload: "fill",
  mode: "echo",
  handshakeTimeoutMs: 10_000,
  reconnect: false,
  maxMessage: 16 << 20,
} as const satisfies Partial<LoadPlan>;

/** What a caller must say; everything else has a default. */
export type PlanInput = Partial<LoadPlan> & Pick<LoadPlan, "targets" | "connections">;

/** Load worker processes for a number of connections: enough to stay under the open-files limit. */
export function loadWorkersFor(connections: number, nofile: number): number {
  return Math.max(1, Math.min(connections, processesFor(connections, nofile)));
}

export const isSending = (mode: LoadMode): boolean => mode === "echo" || mode === "send";

/** A complete plan from what the caller said, with the defaults for the rest. */
export function completePlan(input: PlanInput, nofile: number): LoadPlan {
  const d = LOAD_DEFAULTS;
  const connections = input.connections;
  const mode = input.mode ?? d.mode;
  return {
    targets: input.targets,
    path: input.path ?? d.path,
    connections,
    concurrency: Math.min(input.concurrency ?? d.concurrency, connections),
    rate: input.rate ?? d.rate,
    durationS: input.durationS ?? d.durationS,
    holdS: input.holdS ?? d.holdS,
    intervalMs: isSending(mode) ? (input.intervalMs ?? d.intervalMs) : 0,
    inFlight: mode === "echo" ? (input.inFlight ?? d.inFlight) : 0,
    size: input.size ?? d.size,
    payload: input.payload ?? d.payload,
    tls: input.tls ?? null,
    deflate: input.deflate ?? null,
    mode,
    headers: input.headers ?? [],
    subprotocols: input.subprotocols ?? [],
    handshakeTimeoutMs: input.handshakeTimeoutMs ?? d.handshakeTimeoutMs,
    reconnect: input.reconnect ?? d.reconnect,
    workers: input.workers ?? loadWorkersFor(connections, nofile),
    sources: input.sources ?? [],
    sourcePortBase: input.sourcePortBase ?? 0,
    maxMessage: input.maxMessage ?? d.maxMessage,
    statusUrl: input.statusUrl !== undefined ? input.statusUrl : `${input.tls ? "https" : "http"}://${formatTarget(input.targets[0]!)}/conns`,
  };
}

/** Plan fields that belong to the whole run, not to one worker's share of it. */
type RunWide = "connections" | "workers" | "durationS" | "holdS" | "statusUrl";

/** What one load worker runs: the plan's per-connection settings and this worker's share of the fleet-wide caps. */
export interface WorkerShard extends Omit<LoadPlan, RunWide> {
  index: number;
  workers: number;
  /** Connections this worker holds. */
  slots: number;
  totalConnections: number;
}

/** Connections of worker w when N are interleaved over W workers. */
export function slotsOf(w: number, workers: number, connections: number): number {
  return w < connections ? Math.floor((connections - 1 - w) / workers) + 1 : 0;
}

/** Shares a fleet-wide figure (concurrency, rate) in proportion to slots, at least 1 each. */
function share(total: number, slots: number, connections: number): number {
  if (total <= 0) return 0;
  return Math.max(1, Math.round((total * slots) / Math.max(1, connections)));
}

export function shardPlan(plan: LoadPlan): WorkerShard[] {
  const { connections, workers: wanted, durationS: _d, holdS: _h, statusUrl: _s, ...perConnection } = plan;
  const workers = Math.max(1, Math.min(wanted, Math.max(1, connections)));
  return Array.from({ length: workers }, (_, index) => {
    const slots = slotsOf(index, workers, connections);
    return {
      ...perConnection,
      index,
      workers,
      slots,
      totalConnections: connections,
      concurrency: share(plan.concurrency, slots, connections),
      rate: share(plan.rate, slots, connections),
    };
  });
}

/** Messages per second the plan offers fleet-wide (0 in closed loop: the server's pace sets the rate). */
export function offeredRate(plan: Pick<LoadPlan, "connections" | "intervalMs" | "mode" | "inFlight">): number {
  if (plan.inFlight > 0 || plan.intervalMs <= 0 || !isSending(plan.mode)) return 0;
  return (plan.connections * 1000) / plan.intervalMs;
}
