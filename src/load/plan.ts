// Options -> LoadPlan (validated, resolved) -> one shard per load worker. Slots are interleaved across
// workers (global slot g = worker + k*workers) so every worker's sends and destinations are spread evenly.
import type { Target } from "../system/targets.ts";

export type LoadMode = "echo" | "send" | "receive" | "idle";
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
  /** Each connection sends every intervalMs (0 = no sends). */
  intervalMs: number;
  /** Payload bytes per message. */
  size: number;
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

/** What one load worker runs. */
export interface WorkerShard {
  index: number;
  workers: number;
  /** Connections this worker holds. */
  slots: number;
  totalConnections: number;
  targets: Target[];
  path: string;
  sources: string[];
  sourcePortBase: number;
  concurrency: number;
  rate: number;
  handshakeTimeoutMs: number;
  mode: LoadMode;
  intervalMs: number;
  size: number;
  headers: [string, string][];
  subprotocols: string[];
  reconnect: boolean;
  maxMessage: number;
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
  const workers = Math.max(1, Math.min(plan.workers, Math.max(1, plan.connections)));
  const out: WorkerShard[] = [];
  for (let w = 0; w < workers; w++) {
    const slots = slotsOf(w, workers, plan.connections);
    out.push({
      index: w,
      workers,
      slots,
      totalConnections: plan.connections,
      targets: plan.targets,
      path: plan.path,
      sources: plan.sources,
      sourcePortBase: plan.sourcePortBase,
      concurrency: share(plan.concurrency, slots, plan.connections),
      rate: share(plan.rate, slots, plan.connections),
      handshakeTimeoutMs: plan.handshakeTimeoutMs,
      mode: plan.mode,
      intervalMs: plan.mode === "echo" || plan.mode === "send" ? plan.intervalMs : 0,
      size: plan.size,
      headers: plan.headers,
      subprotocols: plan.subprotocols,
      reconnect: plan.reconnect,
      maxMessage: plan.maxMessage,
    });
  }
  return out;
}

/** Messages per second the plan offers fleet-wide. */
export function offeredRate(plan: Pick<LoadPlan, "connections" | "intervalMs" | "mode">): number {
  if (plan.intervalMs <= 0 || (plan.mode !== "echo" && plan.mode !== "send")) return 0;
  return (plan.connections * 1000) / plan.intervalMs;
}

/** What the load command's flags say, before resolution. */
export interface LoadOptions {
  url?: string;
  addr?: string;
  path?: string;
  targets?: string;
  connections: number;
  concurrency: number;
  rate: number;
  duration: number;
  hold: number;
  interval: number;
  size: number;
  mode: LoadMode;
  workers: number | "auto";
  header: string[];
  subprotocol: string[];
  handshakeTimeout: number;
  reconnect: boolean;
  source?: string;
  sourcePorts: "explicit" | "kernel";
  maxMessage: number;
  statusUrl?: string;
  /** false with --no-check: dial even when the plan check says it cannot work. */
  check: boolean;
}

export const DEFAULT_PATH = "/ws";
