// Messages between the supervisor and its server workers (Bun IPC, structured clone).
import type { ClusterStats, WorkerStats } from "./stats.ts";

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
  | { t: "drained"; stats: WorkerStats };

export type SupervisorToWorker =
  /** `lastResort`: listening only because every worker is full, so upgrades past the cap get 503. */
  | { t: "listen"; on: boolean; lastResort: boolean }
  | { t: "broadcast"; data: string | Uint8Array }
  | { t: "cluster"; id: number; stats: ClusterStats }
  /** Report stats now: an endpoint is waiting for exact figures. */
  | { t: "report" }
  | { t: "drain"; timeoutMs: number };
