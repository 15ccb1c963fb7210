// Messages between the supervisor and its server workers (Bun IPC, structured clone).
import type { ClusterStats, WorkerStats } from "./stats.ts";

export type WorkerToSupervisor =
  | { t: "ready"; port: number }
  | { t: "stats"; stats: WorkerStats }
  /** The worker reached its cap (full) or fell below its low watermark (room). */
  | { t: "capacity"; full: boolean }
  | { t: "broadcast"; data: string | Uint8Array }
  | { t: "query"; id: number }
  | { t: "drained"; stats: WorkerStats };

export type SupervisorToWorker =
  | { t: "listen"; on: boolean }
  | { t: "broadcast"; data: string | Uint8Array }
  | { t: "cluster"; id: number; stats: ClusterStats }
  | { t: "drain"; timeoutMs: number };
