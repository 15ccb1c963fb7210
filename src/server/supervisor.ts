// The supervisor: sizes and starts server workers, restarts the ones that die, decides which workers
// listen (a full worker leaves the port group so the kernel stops handing it connections), pushes the
// cluster's count to every worker, answers the workers' cluster queries with summed stats, and drains
// everything on shutdown.
import type { Subprocess } from "bun";
import { isIP } from "node:net";
import { availableParallelism, freemem } from "node:os";
import { join } from "node:path";
import { CLOSE_ABNORMAL } from "../protocol/close-codes.ts";
import { ExpectedFailure } from "../flags.ts";
import { COSTS, socketsPerProcess } from "../system/capacity.ts";
import type { ServerConfig, WorkerSettings } from "./config.ts";
import type { SupervisorToWorker, WorkerToSupervisor } from "./ipc.ts";
import { addServerCounters, countInto, emptyServerCounters, sumWorkers, type ClusterStats, type ConnCount, type ServerCounters, type WorkerStats } from "./stats.ts";
import { withHandshakes } from "./handshakes.ts";

const WORKER_ENTRY = join(import.meta.dir, "worker.ts");
/** Open files a worker keeps for itself and for upgrades it refuses with 503 while full. */
const FD_RESERVE = 200;
const HASH_SLACK = 1.08;
const RESTART_BACKOFF_MS = [100, 500, 1000, 2000, 5000];
/** Closing a listening socket can refuse a connection caught in its queue, so leave and rejoin sparingly. */
const ARRANGE_DEBOUNCE_MS = 20;
/** Longest an endpoint waits for every worker's fresh figures. */
const REFRESH_MS = 200;
/**
 * How long count changes gather before the new /conns figure goes to every worker: one message per worker
 * per period however many connections came and went, so the push stays O(workers) at a million.
 */
const PUSH_MS = 50;

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
  /** Its latest open and closed counts (from a count message or a report, whichever came last). */
  count: { open: number; closed: number } | undefined;
  /** Why it could not listen, as told to the user, when it said so before exiting. */
  cannotListen: string | undefined;
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

/**
 * The running pool. Each concern is one method: spawning a worker (spawn), the restart policy (onExit,
 * restartDelay), the listen decision (arrangeListeners, arrangeNow, grow), cluster queries (freshStats),
 * and the drain (stop).
 */
class Supervisor {
  private readonly slots: WorkerSlot[] = [];
  /** What dead incarnations counted, plus the connections they took with them (closed, code 1006). */
  private readonly retired: ServerCounters = emptyServerCounters();
  private stopping = false;
  /** --port, or the port the first worker bound when --port is 0: the rest join its port group. */
  port: number;
  private readyCount = 0;
  /** Set when the first worker exits before listening: nothing else can start either. */
  private startError: Error | undefined;
  private resolveFirst = (): void => {};
  /** Resolves when the first worker listens, or fails to. */
  private readonly firstReady: Promise<void>;
  private refresh: { promise: Promise<ClusterStats>; done: () => void } | undefined;
  private arrangeTimer: Timer | undefined;
  /** The /conns figure every ready worker was last sent. */
  private pushed: ConnCount = { conns: 0, closed: 0 };
  private pushTimer: Timer | undefined;

  constructor(
    private readonly config: ServerConfig,
    readonly sizing: Sizing,
    private readonly log: (line: string) => void,
  ) {
    this.port = config.port;
    this.firstReady = new Promise<void>((r) => (this.resolveFirst = r));
  }

  /** The first worker binds (port 0 picks a free port); the rest join the same port. */
  async start(): Promise<void> {
    this.spawn(0);
    await this.firstReady;
    if (this.startError) throw this.startError;
    for (let i = 1; i < this.sizing.initial; i++) this.spawn(i);
    while (this.readyCount < this.sizing.initial && !this.startError) await Bun.sleep(5);
  }

  stats(): ClusterStats {
    const workers = this.slots.filter((s) => s.stats).map((s) => ({ ...s.stats!, restarts: s.restarts }));
    return sumWorkers(this.config.mode, workers, this.retired);
  }

  pids(): number[] {
    return this.slots.map((s) => s.proc.pid);
  }

  /** What /conns answers: the workers' latest counts, plus what dead incarnations counted. */
  count(): ConnCount {
    let conns = 0;
    let closed = this.retired.closed;
    for (const s of this.slots) {
      if (!s.count) continue;
      conns += s.count.open;
      closed += s.count.closed;
    }
    return { conns, closed };
  }

  /** Drains every worker (close 1001) and resolves with the final stats. */
  async stop(): Promise<ClusterStats> {
    this.stopping = true;
    const timeoutMs = this.config.drainTimeout * 1000;
    clearTimeout(this.pushTimer);
    for (const s of this.slots) this.post(s, { t: "drain", timeoutMs });
    // A worker that cannot finish its drain in time is killed; its connections count as closed.
    const deadline = setTimeout(() => {
      for (const s of this.slots) s.proc.kill("SIGKILL");
    }, timeoutMs + 3000);
    await Promise.all(this.slots.map((s) => s.proc.exited));
    clearTimeout(deadline);
    return this.stats();
  }

  private post(slot: WorkerSlot, msg: SupervisorToWorker): void {
    if (slot.proc.exitCode === null && !slot.proc.killed) slot.proc.send(msg);
  }

  private spawn(index: number, restarts = 0): void {
    const settings: WorkerSettings = {
      config: { ...this.config, port: this.port },
      index,
      cap: this.sizing.perWorker,
      hardCap: this.sizing.hardCap,
      count: this.pushed,
      // Only the very first worker on a fixed port: later ones join the group it made.
      claimPort: this.port !== 0 && this.readyCount === 0 && this.slots.length === 0,
    };
    const proc = Bun.spawn([process.execPath, WORKER_ENTRY], {
      env: { ...process.env, WSMILLION_WORKER: JSON.stringify(settings) },
      stdio: ["ignore", "inherit", "inherit"],
      serialization: "advanced",
      ipc: (msg: WorkerToSupervisor) => this.onMessage(slot, msg),
      onExit: (_p, code, signal) => this.onExit(slot, code, signal),
    });
    const slot: WorkerSlot = {
      index,
      proc,
      stats: undefined,
      listening: true,
      wantListen: true,
      lastResort: false,
      full: false,
      restarts,
      ready: false,
      reported: false,
      count: undefined,
      cannotListen: undefined,
    };
    this.slots[index] = slot;
  }

  private onMessage(slot: WorkerSlot, msg: WorkerToSupervisor): void {
    switch (msg.t) {
      case "ready":
        slot.ready = true;
        if (this.port === 0) this.port = msg.port;
        this.readyCount++;
        if (this.readyCount === 1) this.resolveFirst();
        // It started with the figure of its spawn; pushes reach ready workers only, so bring it level now.
        this.post(slot, { t: "conns", ...this.pushed });
        this.arrangeListeners();
        break;
      case "stats":
      case "drained":
        slot.stats = msg.stats;
        slot.reported = true;
        this.updateCount(slot, msg.stats.open, msg.stats.closed);
        if (this.refresh && this.slots.every((s) => s.reported || !s.ready)) this.refresh.done();
        break;
      case "count":
        this.updateCount(slot, msg.open, msg.closed);
        break;
      case "cannotListen":
        slot.cannotListen = listenFailure(msg.code, msg.message, this.config.host, this.port);
        break;
      case "capacity":
        slot.full = msg.full;
        // A worker with room rejoins the port group by itself.
        if (!msg.full) slot.wantListen = true;
        this.arrangeListeners();
        break;
      case "listening":
        slot.listening = msg.on;
        this.arrangeListeners();
        break;
      case "broadcast":
        for (const other of this.slots) if (other !== slot) this.post(other, { t: "broadcast", data: msg.data });
        break;
      case "query":
        // The supervisor holds no connections, so the merging and the /proc reads cost no worker its accepting.
        void this.freshStats().then((stats) => this.post(slot, { t: "cluster", id: msg.id, stats: msg.handshakes ? withHandshakes(stats, this.port) : stats }));
        break;
    }
  }

  /**
   * Endpoints promise exact figures (`/conns` must match a client's count), so a query asks every worker
   * to report now and answers when all have, or after REFRESH_MS. Queries that arrive meanwhile share it.
   */
  private freshStats(): Promise<ClusterStats> {
    if (this.refresh) return this.refresh.promise;
    let done!: () => void;
    const promise = new Promise<void>((r) => (done = r)).then(() => {
      clearTimeout(timer);
      this.refresh = undefined;
      return this.stats();
    });
    const timer = setTimeout(() => done(), REFRESH_MS);
    this.refresh = { promise, done };
    for (const s of this.slots) {
      s.reported = false;
      this.post(s, { t: "report" });
    }
    return promise;
  }

  /** A worker's latest count; a change schedules a push. */
  private updateCount(slot: WorkerSlot, open: number, closed: number): void {
    if (slot.count?.open === open && slot.count.closed === closed) return;
    slot.count = { open, closed };
    this.countChanged();
  }

  /** At most one push per PUSH_MS, and none while nothing changes. */
  private countChanged(): void {
    if (this.stopping) return;
    this.pushTimer ??= setTimeout(() => {
      this.pushTimer = undefined;
      this.pushCount();
    }, PUSH_MS);
  }

  /** Sends the cluster's count to every ready worker, if it differs from what they have. */
  private pushCount(): void {
    const now = this.count();
    if (now.conns === this.pushed.conns && now.closed === this.pushed.closed) return;
    this.pushed = now;
    for (const s of this.slots) if (s.ready) this.post(s, { t: "conns", ...now });
  }

  /** Coalesces bursts of capacity changes (e.g. many clients leaving at once) so workers do not flap. */
  private arrangeListeners(): void {
    this.arrangeTimer ??= setTimeout(() => {
      this.arrangeTimer = undefined;
      this.arrangeNow();
    }, ARRANGE_DEBOUNCE_MS);
  }

  /**
   * Workers with room always listen; a full worker leaves the port group once a worker with room is
   * confirmed listening (never before, or clients would meet a closed port); when every worker is full,
   * they all listen as the last resort and answer 503.
   */
  private arrangeNow(): void {
    const ready = this.slots.filter((s) => s.ready);
    const lastResort = ready.every((s) => s.full);
    const roomyListening = ready.some((s) => !s.full && s.listening);
    for (const s of ready) {
      const want = !s.full || lastResort || (s.wantListen && !roomyListening);
      if (want !== s.wantListen || lastResort !== s.lastResort) {
        s.wantListen = want;
        s.lastResort = lastResort;
        this.post(s, { t: "listen", on: want, lastResort });
      }
    }
    if (lastResort && ready.length === this.slots.length) this.grow();
  }

  /** Every worker is full: start another, while the sizing allows one. */
  private grow(): void {
    if (this.slots.length >= this.sizing.max || this.stopping) return;
    this.log(`all ${this.slots.length} workers are full; starting worker ${this.slots.length}`);
    this.spawn(this.slots.length);
  }

  private onExit(slot: WorkerSlot, code: number | null, signal: NodeJS.Signals | number | null): void {
    if (this.slots[slot.index] !== slot) return;
    const lost = this.retire(slot);
    const how = signal ? `signal ${signal}` : `exit ${code}`;
    if (!slot.ready && this.readyCount === 0) {
      // A bind the machine refused is the user's to fix; any other early exit is a bug, and stays loud.
      this.startError = slot.cannotListen ? new ExpectedFailure(slot.cannotListen) : new Error(`worker ${slot.index} exited before listening (${how})`);
      this.resolveFirst();
      return;
    }
    if (this.stopping) return;
    const delay = restartDelay(slot.restarts);
    const why = slot.cannotListen ? `could not listen: ${slot.cannotListen}` : `died (${how}) with ${lost} connections`;
    this.log(`worker ${slot.index} (pid ${slot.proc.pid}) ${why}; restarting in ${delay} ms`);
    slot.ready = false;
    setTimeout(() => {
      if (!this.stopping) this.spawn(slot.index, slot.restarts + 1);
    }, delay);
  }

  /** Moves a dead worker's counters to the retired tally; its open connections count as closed (1006). Returns how many it held. */
  private retire(slot: WorkerSlot): number {
    const count = slot.count ?? { open: 0, closed: 0 };
    if (slot.stats) addServerCounters(this.retired, slot.stats);
    // Its count may be newer than its last report: closes since then are closed too (under no code: the
    // report that would have carried them never came), and what it held at the end is lost.
    this.retired.closed += count.closed - (slot.stats?.closed ?? 0) + count.open;
    if (count.open > 0) countInto(this.retired.closedByCode, CLOSE_ABNORMAL, count.open);
    slot.stats = undefined;
    slot.count = undefined;
    this.countChanged();
    return count.open;
  }
}

/** A refused bind as one line for the user: the cause, and what to do about it. */
export function listenFailure(code: string, message: string, host: string, port: number): string {
  switch (code) {
    case "EADDRINUSE":
      return `port ${port} on ${host} is in use (another server?); pick another with --port, or --port 0 for a free one`;
    case "EADDRNOTAVAIL":
      return `${host} is not an address of this machine (EADDRNOTAVAIL); give one it has (ip -br addr) with --host, or --host 0.0.0.0 for all of them`;
    case "EACCES":
      return `no permission to listen on port ${port} (EACCES): ports below 1024 need root or CAP_NET_BIND_SERVICE; pick another with --port, or --port 0 for a free one`;
    default:
      // Bun reports a name it cannot resolve with whatever errno was left over (EINVAL, ENOTSUP, varying): the name is the cause.
      if (isIP(host) === 0) return `--host ${host} is not an IP address, nor a name of this machine; give one such as 127.0.0.1, or 0.0.0.0 for all of them`;
      return `cannot listen on ${host} port ${port}: ${message} (${code})`;
  }
}

/** The restart policy: back off from 100 ms to 5 s as a worker keeps dying. */
function restartDelay(restarts: number): number {
  return RESTART_BACKOFF_MS[Math.min(restarts, RESTART_BACKOFF_MS.length - 1)]!;
}

export async function startServer(config: ServerConfig, opts: SupervisorOptions): Promise<RunningServer> {
  const supervisor = new Supervisor(config, sizeWorkers(config, opts.nofileSoft), opts.log ?? ((line: string) => console.error(line)));
  await supervisor.start();
  return {
    port: supervisor.port,
    sizing: supervisor.sizing,
    stats: () => supervisor.stats(),
    pids: () => supervisor.pids(),
    stop: () => supervisor.stop(),
  };
}
