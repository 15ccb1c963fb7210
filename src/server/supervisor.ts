// The supervisor: sizes and starts server workers, restarts the ones that die, decides which workers
// listen (a full worker leaves the port group so the kernel stops handing it connections), answers the
// workers' cluster queries with summed stats, and drains everything on shutdown.
import type { Subprocess } from "bun";
import { availableParallelism, freemem } from "node:os";
import { join } from "node:path";
import { CLOSE_ABNORMAL } from "../protocol/close-codes.ts";
import { COSTS, socketsPerProcess } from "../system/capacity.ts";
import type { ServerConfig, WorkerSettings } from "./config.ts";
import type { SupervisorToWorker, WorkerToSupervisor } from "./ipc.ts";
import { addServerCounters, countInto, emptyServerCounters, sumWorkers, type ClusterStats, type ServerCounters, type WorkerStats } from "./stats.ts";

const WORKER_ENTRY = join(import.meta.dir, "worker.ts");
/** Open files a worker keeps for itself and for upgrades it refuses with 503 while full. */
const FD_RESERVE = 200;
const HASH_SLACK = 1.08;
const RESTART_BACKOFF_MS = [100, 500, 1000, 2000, 5000];
/** Closing a listening socket can refuse a connection caught in its queue, so leave and rejoin sparingly. */
const ARRANGE_DEBOUNCE_MS = 20;
/** Longest an endpoint waits for every worker's fresh figures. */
const REFRESH_MS = 200;

interface WorkerSlot {
  index: number;
  proc: Subprocess<"ignore", "inherit", "inherit">;
  stats: WorkerStats | undefined;
  /** Confirmed by the worker. */
  listening: boolean;
  /** Asked of the worker. */
  wantListen: boolean;
  lastResort: boolean;
  full: boolean;
  restarts: number;
  ready: boolean;
  /** Has reported since the last refresh request. */
  reported: boolean;
}

export interface Sizing {
  /** Workers started now. */
  initial: number;
  /** Most workers the pool may grow to (auto), or the fixed count. */
  max: number;
  /** WebSocket connections one worker takes before it leaves the port group. */
  perWorker: number;
  /** Most connections one worker may hold: the open-files limit less a reserve. */
  hardCap: number;
  /** Cluster-wide cap. */
  maxConns: number;
}

/** Workers and caps from the open-files limit, the cores and --max-conns. */
export function sizeWorkers(config: ServerConfig, nofileSoft: number, cores = availableParallelism()): Sizing {
  const fdCap = Math.max(1, socketsPerProcess(nofileSoft) - FD_RESERVE);
  if (config.workers !== "auto") {
    const perWorker = config.maxConns ? Math.min(fdCap, Math.ceil(config.maxConns / config.workers)) : fdCap;
    return { initial: config.workers, max: config.workers, perWorker, hardCap: fdCap, maxConns: config.maxConns ?? perWorker * config.workers };
  }
  if (config.maxConns) {
    // The kernel hashes connections over the port group at random, so some workers fill before others.
    // Shares HASH_SLACK above the average keep leaving the port group (which can refuse a connection
    // caught mid-queue) a rare event; the price is a cluster cap that much above --max-conns.
    const initial = Math.max(Math.ceil((config.maxConns * HASH_SLACK) / fdCap), Math.min(cores, config.maxConns));
    const perWorker = Math.min(fdCap, Math.ceil((config.maxConns * HASH_SLACK) / initial));
    return { initial, max: initial, perWorker, hardCap: fdCap, maxConns: perWorker * initial };
  }
  // No cap asked for: start one worker per core and grow the pool whenever every worker is full, up to
  // what memory allows at the measured cost per connection (server user space plus kernel).
  const max = Math.max(cores, Math.floor(freemem() / (fdCap * (COSTS.serverBytes + COSTS.kernelBytes) + COSTS.processBytes)));
  return { initial: cores, max, perWorker: fdCap, hardCap: fdCap, maxConns: max * fdCap };
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
  const retired: ServerCounters = emptyServerCounters();
  let stopping = false;
  let boundPort = config.port;

  const post = (slot: WorkerSlot, msg: SupervisorToWorker) => {
    if (slot.proc.exitCode === null && !slot.proc.killed) slot.proc.send(msg);
  };

  function workerStats(): WorkerStats[] {
    return slots.filter((s) => s.stats).map((s) => ({ ...s.stats!, restarts: s.restarts }));
  }
  const clusterStats = () => sumWorkers(config.mode, workerStats(), retired);

  /**
   * Endpoints promise exact figures (`/conns` must match a client's count), so a query asks every worker
   * to report now and answers when all have, or after REFRESH_MS. Queries that arrive meanwhile share it.
   */
  let refresh: { promise: Promise<ClusterStats>; done: () => void } | undefined;
  function freshStats(): Promise<ClusterStats> {
    if (refresh) return refresh.promise;
    let done!: () => void;
    const promise = new Promise<void>((r) => (done = r)).then(() => {
      clearTimeout(timer);
      refresh = undefined;
      return clusterStats();
    });
    const timer = setTimeout(() => done(), REFRESH_MS);
    refresh = { promise, done };
    for (const s of slots) {
      s.reported = false;
      post(s, { t: "report" });
    }
    return promise;
  }

  /**
   * Workers with room always listen; a full worker leaves the port group once a worker with room is
   * confirmed listening (never before, or clients would meet a closed port); when every worker is full,
   * they all listen as the last resort and answer 503.
   */
  let arrangeTimer: Timer | undefined;
  /** Coalesces bursts of capacity changes (e.g. many clients leaving at once) so workers do not flap. */
  function arrangeListeners(): void {
    arrangeTimer ??= setTimeout(() => {
      arrangeTimer = undefined;
      arrangeNow();
    }, ARRANGE_DEBOUNCE_MS);
  }

  function arrangeNow(): void {
    const ready = slots.filter((s) => s.ready);
    const lastResort = ready.every((s) => s.full);
    const roomyListening = ready.some((s) => !s.full && s.listening);
    for (const s of ready) {
      const want = !s.full || lastResort || (s.wantListen && !roomyListening);
      if (want !== s.wantListen || lastResort !== s.lastResort) {
        s.wantListen = want;
        s.lastResort = lastResort;
        post(s, { t: "listen", on: want, lastResort });
      }
    }
    if (lastResort && slots.length < sizing.max && !stopping && ready.length === slots.length) {
      log(`all ${slots.length} workers are full; starting worker ${slots.length}`);
      spawnWorker(slots.length);
    }
  }

  let readyCount = 0;
  let resolveFirst: (() => void) | undefined;
  const firstReady = new Promise<void>((r) => (resolveFirst = r));
  let startError: string | undefined;

  function spawnWorker(index: number, restarts = 0): WorkerSlot {
    const settings: WorkerSettings = { config: { ...config, port: boundPort }, index, cap: sizing.perWorker, hardCap: sizing.hardCap };
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
    const slot: WorkerSlot = { index, proc, stats: undefined, listening: true, wantListen: true, lastResort: false, full: false, restarts, ready: false, reported: false };
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
        slot.reported = true;
        if (refresh && slots.every((s) => s.reported || !s.ready)) refresh.done();
        break;
      case "capacity":
        slot.full = msg.full;
        // A worker with room rejoins the port group by itself.
        if (!msg.full) slot.wantListen = true;
        arrangeListeners();
        break;
      case "listening":
        slot.listening = msg.on;
        arrangeListeners();
        break;
      case "broadcast":
        for (const other of slots) if (other !== slot) post(other, { t: "broadcast", data: msg.data });
        break;
      case "query":
        void freshStats().then((stats) => post(slot, { t: "cluster", id: msg.id, stats }));
        break;
    }
  }

  function onExit(slot: WorkerSlot, code: number | null, signal: NodeJS.Signals | number | null): void {
    if (slots[slot.index] !== slot) return;
    const lost = slot.stats?.open ?? 0;
    if (slot.stats) {
      addServerCounters(retired, slot.stats);
      if (slot.stats.open > 0) {
        retired.closed += slot.stats.open;
        countInto(retired.closedByCode, CLOSE_ABNORMAL, slot.stats.open);
      }
      slot.stats = undefined;
    }
    if (!slot.ready && readyCount === 0) {
      startError = `worker ${slot.index} exited before listening (code ${code ?? signal}); is port ${config.port} on ${config.host} free?`;
      resolveFirst?.();
      return;
    }
    if (stopping) return;
    const delay = RESTART_BACKOFF_MS[Math.min(slot.restarts, RESTART_BACKOFF_MS.length - 1)]!;
    log(`worker ${slot.index} (pid ${slot.proc.pid}) died (${signal ? `signal ${signal}` : `exit ${code}`}) with ${lost} connections; restarting in ${delay} ms`);
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
      // A worker that cannot finish its drain in time is killed; its connections count as closed.
      const deadline = setTimeout(() => {
        for (const s of slots) s.proc.kill("SIGKILL");
      }, timeoutMs + 3000);
      await Promise.all(slots.map((s) => s.proc.exited));
      clearTimeout(deadline);
      return clusterStats();
    },
  };
}
