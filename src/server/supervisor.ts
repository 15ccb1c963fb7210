// The supervisor: sizes and starts server workers, restarts the ones that die, decides which workers
// listen (a full worker leaves the port group so the kernel stops handing it connections), answers the
// workers' cluster queries with summed stats, and drains everything on shutdown.
import type { Subprocess } from "bun";
import { availableParallelism, freemem } from "node:os";
import { join } from "node:path";
import { COSTS, socketsPerProcess } from "../system/capacity.ts";
import type { ServerConfig, WorkerSettings } from "./config.ts";
import type { SupervisorToWorker, WorkerToSupervisor } from "./ipc.ts";
import { addCounters, countInto, emptyCounters, summarize, type ClusterStats, type Counters, type WorkerStats } from "./stats.ts";

const WORKER_ENTRY = join(import.meta.dir, "worker.ts");
/** Open files a worker keeps for itself and for upgrades it refuses with 503 while full. */
const FD_RESERVE = 200;
const RESTART_BACKOFF_MS = [100, 500, 1000, 2000, 5000];

interface WorkerSlot {
  index: number;
  proc: Subprocess<"ignore", "inherit", "inherit">;
  stats: WorkerStats | undefined;
  listening: boolean;
  full: boolean;
  restarts: number;
  ready: boolean;
  stopping: boolean;
}

export interface Sizing {
  /** Workers started now. */
  initial: number;
  /** Most workers the pool may grow to (auto), or the fixed count. */
  max: number;
  /** WebSocket connections one worker holds before it leaves the port group. */
  perWorker: number;
  /** Cluster-wide cap. */
  maxConns: number;
}

/** Workers and caps from the open-files limit, the cores and --max-conns. */
export function sizeWorkers(config: ServerConfig, nofileSoft: number, cores = availableParallelism()): Sizing {
  const fdCap = Math.max(1, socketsPerProcess(nofileSoft) - FD_RESERVE);
  if (config.workers !== "auto") {
    const perWorker = config.maxConns ? Math.min(fdCap, Math.ceil(config.maxConns / config.workers)) : fdCap;
    return { initial: config.workers, max: config.workers, perWorker, maxConns: config.maxConns ?? perWorker * config.workers };
  }
  if (config.maxConns) {
    const needed = Math.ceil(config.maxConns / fdCap);
    const initial = Math.max(Math.min(cores, needed), needed);
    return { initial, max: initial, perWorker: Math.min(fdCap, Math.ceil(config.maxConns / initial)), maxConns: config.maxConns };
  }
  // No cap asked for: start one worker per core and grow the pool whenever every worker is full, up to
  // what memory allows at the measured cost per connection (server user space plus kernel).
  const max = Math.max(cores, Math.floor(freemem() / (fdCap * (COSTS.serverBytes + COSTS.kernelBytes) + COSTS.processBytes)));
  return { initial: cores, max, perWorker: fdCap, maxConns: max * fdCap };
}

export interface RunningServer {
  port: number;
  sizing: Sizing;
  stats(): ClusterStats;
  /** Drains every worker (close 1001) and resolves with the final stats. */
  stop(): Promise<ClusterStats>;
  pids(): number[];
}

export interface SupervisorOptions {
  nofileSoft: number;
  /** Called for lines worth telling the user (restarts, growth); default: stderr. */
  log?: (line: string) => void;
}

export async function startServer(config: ServerConfig, opts: SupervisorOptions): Promise<RunningServer> {
  const sizing = sizeWorkers(config, opts.nofileSoft);
  const log = opts.log ?? ((line: string) => console.error(line));
  const slots: WorkerSlot[] = [];
  /** What dead incarnations counted, plus the connections they took with them (closed, code 1006). */
  const retired: Counters = emptyCounters();
  let stopping = false;
  let boundPort = config.port;

  const post = (slot: WorkerSlot, msg: SupervisorToWorker) => {
    if (slot.proc.exitCode === null && !slot.proc.killed) slot.proc.send(msg);
  };

  function workerStats(): WorkerStats[] {
    return slots.filter((s) => s.stats).map((s) => ({ ...s.stats!, restarts: s.restarts, listening: s.listening }));
  }
  const clusterStats = () => summarize(config.mode, workerStats(), retired);

  /** Full workers leave the port group while any worker with room listens; workers with room always listen. */
  function arrangeListeners(): void {
    const ready = slots.filter((s) => s.ready && !s.stopping);
    const roomy = ready.filter((s) => !s.full);
    for (const s of ready) {
      const want = !s.full || roomy.length === 0;
      if (want !== s.listening) {
        s.listening = want;
        post(s, { t: "listen", on: want });
      }
    }
    if (roomy.length === 0 && slots.length < sizing.max && !stopping && ready.length === slots.length) {
      log(`all ${slots.length} workers are full; starting worker ${slots.length}`);
      spawnWorker(slots.length);
    }
  }

  let readyCount = 0;
  let resolveFirst: (() => void) | undefined;
  const firstReady = new Promise<void>((r) => (resolveFirst = r));
  let startError: string | undefined;

  function spawnWorker(index: number, restarts = 0): WorkerSlot {
    const settings: WorkerSettings = { config: { ...config, port: boundPort }, index, cap: sizing.perWorker };
    const proc = Bun.spawn([process.execPath, WORKER_ENTRY], {
      env: { ...process.env, WSMILLION_WORKER: JSON.stringify(settings) },
      stdio: ["ignore", "inherit", "inherit"],
      serialization: "advanced",
      ipc(msg: WorkerToSupervisor) {
        onMessage(slot, msg);
      },
      onExit(_p, code, signal) {
        onExit(slot, code, signal);
      },
    });
    const slot: WorkerSlot = { index, proc, stats: undefined, listening: true, full: false, restarts, ready: false, stopping: false };
    slots[index] = slot;
    return slot;
  }

  function onMessage(slot: WorkerSlot, msg: WorkerToSupervisor): void {
    switch (msg.t) {
      case "ready":
        slot.ready = true;
        if (boundPort === 0) boundPort = msg.port;
        readyCount++;
        if (readyCount === 1) resolveFirst?.();
        arrangeListeners();
        break;
      case "stats":
      case "drained":
        slot.stats = msg.stats;
        break;
      case "capacity":
        slot.full = msg.full;
        arrangeListeners();
        break;
      case "broadcast":
        for (const other of slots) if (other !== slot) post(other, { t: "broadcast", data: msg.data });
        break;
      case "query":
        post(slot, { t: "cluster", id: msg.id, stats: clusterStats() });
        break;
    }
  }

  function onExit(slot: WorkerSlot, code: number | null, signal: number | null): void {
    if (slots[slot.index] !== slot) return;
    if (slot.stats) {
      addCounters(retired, slot.stats);
      if (slot.stats.open > 0) {
        retired.closed += slot.stats.open;
        countInto(retired.closedByCode, 1006, slot.stats.open);
      }
      slot.stats = undefined;
    }
    if (!slot.ready && readyCount === 0) {
      startError = `worker ${slot.index} exited before listening (code ${code ?? signal}); is port ${config.port} on ${config.host} free?`;
      resolveFirst?.();
      return;
    }
    if (stopping || slot.stopping) return;
    const delay = RESTART_BACKOFF_MS[Math.min(slot.restarts, RESTART_BACKOFF_MS.length - 1)]!;
    log(`worker ${slot.index} (pid ${slot.proc.pid}) died (${signal ? `signal ${signal}` : `exit ${code}`}) with ${slot.stats?.open ?? 0} connections; restarting in ${delay} ms`);
    slot.ready = false;
    setTimeout(() => {
      if (!stopping) spawnWorker(slot.index, slot.restarts + 1);
    }, delay);
  }

  // The first worker binds (port 0 picks a free port); the rest join the same port.
  spawnWorker(0);
  await firstReady;
  if (startError) throw new Error(startError);
  for (let i = 1; i < sizing.initial; i++) spawnWorker(i);
  while (readyCount < sizing.initial && !startError) await Bun.sleep(5);

  return {
    port: boundPort,
    sizing,
    stats: clusterStats,
    pids: () => slots.map((s) => s.proc.pid),
    async stop(): Promise<ClusterStats> {
      stopping = true;
      const timeoutMs = config.drainTimeout * 1000;
      for (const s of slots) post(s, { t: "drain", timeoutMs });
      const exited = Promise.all(slots.map((s) => s.proc.exited));
      const late = await Promise.race([exited.then(() => false), Bun.sleep(timeoutMs + 3000).then(() => true)]);
      if (late) for (const s of slots) s.proc.kill("SIGKILL");
      await exited;
      return clusterStats();
    },
  };
}
