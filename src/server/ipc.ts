// Messages between the supervisor and its server workers (Bun IPC, structured clone).
import type { ClusterStats, ConnCount, WorkerStats } from "./stats.ts";

export type WorkerToSupervisor =
  | { t: "ready"; port: number }
  | { t: "stats"; stats: WorkerStats }
  /** The worker reached its cap (full) or fell below its low watermark (room). */
  | { t: "capacity"; full: boolean }
  /** Acknowledges a listen request once the worker really listens (or has stopped). */
  | { t: "listening"; on: boolean }
  | { t: "broadcast"; data: string | Uint8Array }
  /** `handshakes`: also the kernel's accept queues and the merged upgrade times (for /stats and /metrics). */
  | { t: "query"; id: number; handshakes: boolean }
  | { t: "drained"; stats: WorkerStats }
  /** Its open and closed counts changed: sent at most once per coalescing period, never while idle. */
  | { t: "count"; open: number; closed: number }
  /** Bun.serve (or the check that the port is free) failed: the errno code and message, then the worker exits. */
  | { t: "cannotListen"; code: string; message: string };

export type SupervisorToWorker =
  /** `lastResort`: listening only because every worker is full, so upgrades past the cap get 503. */
  | { t: "listen"; on: boolean; lastResort: boolean }
  | { t: "broadcast"; data: string | Uint8Array }
  | { t: "cluster"; id: number; stats: ClusterStats }
  /** Report stats now: an endpoint is waiting for exact figures. */
  | { t: "report" }
  | { t: "drain"; timeoutMs: number }
  /** The cluster's count changed: what /conns answers from, with no round trip. */
  | ({ t: "conns" } & ConnCount);
