// A server worker process: Bun.serve on the shared port (reusePort) with the configured mode, its own
// counters, and the capacity dance that keeps it from ever hitting the open-files limit.
// Shaped like the load worker: a ServerWorker holds the state, main() wires it to the supervisor's IPC.
import type { Server, WebSocketHandler } from "bun";
import { readlinkSync } from "node:fs";
import type { ServerConfig, WorkerSettings } from "./config.ts";
import { serveEndpoint } from "./endpoints.ts";
import { checkUpgrade, refusalResponse } from "./upgrade-checks.ts";
import type { SupervisorToWorker, WorkerToSupervisor } from "./ipc.ts";
import { byteLength, messageHandler, pushSender, type Conn, type MessageHandler } from "./modes.ts";
import { countInto, emptyServerCounters, type ClusterStats, type ConnCount, type WorkerStats } from "./stats.ts";
import { PeriodicVisits, Registry, type Slot } from "./visits.ts";
import { HandshakeGuard, findListener } from "./handshake-guard.ts";
import { UpgradeTimes } from "./handshakes.ts";
import { openSockets, type Sockets } from "./sockets.ts";
import { SelfSampler, nofileSoft } from "../system/self.ts";
import { CLOSE_GOING_AWAY } from "../protocol/close-codes.ts";

/** How often the worker reports its figures, and the resolution of the clock that stamps when a peer was last heard. */
const TICK_MS = 250;
const DRAIN_BATCH = 2000;
/** How long open/close changes gather before this worker tells the supervisor its new count: a message per period, not per connection. */
const COUNT_MS = 50;
const TOPIC = "all";
/**
 * Bun listens with a backlog of 512 whatever is asked; the worker listens again with this, which the kernel
 * caps at net.core.somaxconn. Measured (docs/RELIABILITY.md): at 512, a ramp overflows a busy worker's
 * queue, and each dropped SYN or ACK costs its client a retransmit, 1 s, then 3 s, then 7 s.
 */
const LISTEN_BACKLOG = 0x7fffffff;

export class ServerWorker {
  private readonly config: ServerConfig;
  private readonly index: number;
  /** Connections this worker takes before it leaves the port group. */
  private readonly cap: number;
  /** Connections it may hold at all; past it, 503 whatever happens. */
  private readonly hardCap: number;
  /** Rejoin the port group a little below the cap, so a worker at its cap does not flap in and out. */
  private readonly rejoinBelow: number;
  /**
   * A coarse clock for per-message bookkeeping: reading the time on every message would cost more than it
   * tells. It ticks with the report (tick()): one wakeup, not two.
   */
  private clock = performance.now();
  private readonly counters = emptyServerCounters();
  private readonly registry = new Registry<Conn>();
  /** Connections whose last send was queued (backpressure); the drain handler removes them. */
  private readonly slow = new Set<Conn>();
  private readonly sampler = new SelfSampler();
  private readonly started = performance.now();
  private upgrading = 0;
  private full = false;
  private lastResort = false;
  private drainStarted = false;
  /** Every server object still holding connections (for publish), the listening one among them. */
  private readonly servers: Server<Slot>[] = [];
  private listener: Server<Slot> | undefined;
  /** The port group's port: --port, or the one the kernel picked for the first worker when --port is 0. */
  private port: number;
  private readonly clusterQueries = new Map<number, (s: ClusterStats) => void>();
  /** The cluster's /conns figure as the supervisor last pushed it. */
  private clusterCount: ConnCount;
  private countTimer: Timer | undefined;
  private queryId = 0;
  private readonly onMessage: MessageHandler;
  private readonly websocket: WebSocketHandler<Slot>;
  private readonly liveness: PeriodicVisits<Conn> | undefined;
  private readonly pushes: PeriodicVisits<Conn> | undefined;
  /** The socket calls Bun lacks, or why there are none here. */
  private readonly sockets: Sockets | string = openSockets();
  private readonly guard: HandshakeGuard | undefined;
  private readonly fdLimit = nofileSoft() || 1 << 20;
  private readonly upgradeTimes = new UpgradeTimes();
  /** Inode of the listening socket, for /proc/net/tcp (0: not listening or not found). */
  private listenInode = 0;

  constructor(settings: WorkerSettings, private readonly send: (msg: WorkerToSupervisor) => void) {
    const { config, index, cap, hardCap } = settings;
    this.config = config;
    this.index = index;
    this.cap = cap;
    this.hardCap = hardCap;
    this.rejoinBelow = cap - Math.max(1, Math.min(200, Math.floor(cap * 0.02)));
    this.port = config.port;
    this.clusterCount = settings.count;
    this.onMessage = messageHandler({
      config,
      counters: this.counters,
      sent: this.sent,
      broadcast: (data) => {
        this.publishLocal(data);
        this.send({ t: "broadcast", data: typeof data === "string" ? data : new Uint8Array(data) });
      },
    });
    this.websocket = this.websocketHandler();
    this.liveness = this.livenessVisits();
    this.pushes =
      config.mode === "push"
        ? new PeriodicVisits(this.registry, config.sendtick, pushSender({ config, counters: this.counters, sent: this.sent, broadcast: (data) => this.publishLocal(data) }))
        : undefined;
    if (typeof this.sockets === "string") {
      if (index === 0) console.error(`warning: --handshake-timeout is not enforced (${this.sockets}); Bun drops a connection with no complete request 8 to 12 s after accepting it`);
    } else {
      this.guard = new HandshakeGuard(this.sockets, { timeoutMs: config.handshakeTimeout * 1000, tickMs: TICK_MS, fdLimit: this.fdLimit });
    }
  }

  /** Starts the visits, joins the port group, says so, and reports every TICK_MS from then on. */
  start(): void {
    this.liveness?.start();
    this.pushes?.start();
    this.listen(true);
    this.send({ t: "ready", port: this.port });
    setInterval(() => this.tick(), TICK_MS);
  }

  get draining(): boolean {
    return this.drainStarted;
  }

  /** The supervisor's listen decision. A leave request can cross this worker's own news that it has room again; room wins. */
  listenRequest(on: boolean, lastResort: boolean): void {
    this.lastResort = lastResort;
    this.listen(on || !this.full);
    this.send({ t: "listening", on: this.listener !== undefined });
  }

  /** Delivers a broadcast to this worker's connections (its own, or one relayed from another worker). */
  publishLocal(data: string | Uint8Array): void {
    const bytes = byteLength(data);
    for (const s of this.servers) s.publish(TOPIC, data);
    this.counters.messagesOut += this.registry.size;
    this.counters.bytesOut += bytes * this.registry.size;
  }

  /** The supervisor's answer to one of our cluster queries. */
  clusterAnswer(id: number, stats: ClusterStats): void {
    this.clusterQueries.get(id)?.(stats);
    this.clusterQueries.delete(id);
  }

  /** The supervisor's push: the cluster's count changed. */
  countPushed(count: ConnCount): void {
    this.clusterCount = count;
  }

  /** `asked`: an endpoint is waiting for these figures (so someone is watching the upgrade times). */
  report(asked = false): void {
    this.send({ t: "stats", stats: this.snapshot(asked) });
  }

  /** Stops listening and closes every connection with 1001, in batches; what is left at the deadline is dropped. */
  async drain(timeoutMs: number): Promise<void> {
    this.drainStarted = true;
    this.listen(false);
    this.liveness?.stop();
    this.pushes?.stop();
    const deadline = performance.now() + timeoutMs;
    // Close in batches, yielding between them, so a full worker neither stalls nor floods its sockets.
    const closing = this.registry.items.slice();
    for (let i = 0; i < closing.length && performance.now() < deadline; i += DRAIN_BATCH) {
      for (const ws of closing.slice(i, i + DRAIN_BATCH)) ws.close(CLOSE_GOING_AWAY, "server shutting down");
      await Bun.sleep(1);
    }
    while (this.registry.size > 0 && performance.now() < deadline) await Bun.sleep(10);
    for (const ws of [...this.registry.items]) ws.terminate();
  }

  snapshot(asked = true): WorkerStats {
    let bufferedBytes = 0;
    for (const ws of this.slow) bufferedBytes += ws.getBufferedAmount();
    const upgrade = this.upgradeTimes.snapshot(asked);
    return {
      ...this.counters,
      closedByCode: { ...this.counters.closedByCode },
      rejected: { ...this.counters.rejected },
      ...this.sampler.sample(),
      open: this.registry.size,
      bufferedBytes,
      listening: this.listener !== undefined,
      worker: this.index,
      pid: process.pid,
      restarts: 0,
      uptimeSeconds: (performance.now() - this.started) / 1000,
      upgrade: upgrade.figures,
      upgradeHist: upgrade.encoded,
      listenInode: this.listenInode,
      acceptQueue: null,
    };
  }

  private tick(): void {
    this.clock = performance.now();
    if (this.guard) {
      this.guard.tick(this.clock, this.registry.size + this.upgrading);
      this.counters.handshakeTimeouts = this.guard.closed;
    }
    this.report();
  }

  /** Accounts for a ws.send result: bytes written (> 0), queued (-1: it will go, but the connection is slow) or dropped (0). */
  private readonly sent = (ws: Conn, result: number, bytes: number): void => {
    if (result === 0) {
      if (ws.readyState === 1) this.counters.dropped++;
      return;
    }
    this.counters.messagesOut++;
    this.counters.bytesOut += bytes;
    if (result === -1) this.slow.add(ws);
  };

  private checkCapacity(): void {
    this.countSoon();
    const load = this.registry.size + this.upgrading;
    if (!this.full && load >= this.cap) {
      this.full = true;
      this.send({ t: "capacity", full: true });
    } else if (this.full && load < this.rejoinBelow) {
      this.full = false;
      // Joining the port group is always safe, so do it now; leaving waits for the supervisor.
      this.listen(true);
      this.send({ t: "capacity", full: false });
      this.send({ t: "listening", on: this.listener !== undefined });
    }
  }

  /** Tells the supervisor this worker's count once the changes of the next COUNT_MS are in; nothing while idle. */
  private countSoon(): void {
    this.countTimer ??= setTimeout(() => {
      this.countTimer = undefined;
      this.send({ t: "count", open: this.registry.size, closed: this.counters.closed });
    }, COUNT_MS);
  }

  private websocketHandler(): WebSocketHandler<Slot> {
    const config = this.config;
    const onMessage = this.onMessage;
    return {
      maxPayloadLength: config.maxPayload,
      backpressureLimit: config.maxBuffered,
      closeOnBackpressureLimit: config.backpressure === "close",
      // Liveness is ours (the liveness visits): Bun's idle timer is reset by our own pings, so it would never fire.
      idleTimeout: 0,
      sendPings: false,
      perMessageDeflate: config.deflate,
      publishToSelf: true,
      open: (ws) => {
        // `seen` still holds when fetch was called.
        this.upgradeTimes.record(performance.now() - ws.data.seen);
        this.upgrading--;
        this.counters.accepted++;
        this.registry.add(ws);
        if (config.mode === "broadcast") ws.subscribe(TOPIC);
        this.checkCapacity();
      },
      // With pings on, an answered ping is proof of life enough, and stamping every message was two thirds of
      // our per-message JavaScript (measured); without pings, messages are all there is to go by.
      message:
        config.pingInterval > 0
          ? onMessage
          : (ws, message) => {
              ws.data.seen = this.clock;
              onMessage(ws, message);
            },
      pong: (ws) => {
        ws.data.seen = this.clock;
      },
      drain: (ws) => {
        this.slow.delete(ws);
      },
      close: (ws, code) => {
        this.registry.remove(ws);
        this.slow.delete(ws);
        this.counters.closed++;
        countInto(this.counters.closedByCode, code);
        this.checkCapacity();
      },
    };
  }

  /** Endpoints answer cluster-wide: ask the supervisor for the summed snapshot (`handshakes`: see ipc.ts). */
  private readonly cluster = (handshakes = false): Promise<ClusterStats> =>
    new Promise((resolve) => {
      const id = ++this.queryId;
      this.clusterQueries.set(id, resolve);
      this.send({ t: "query", id, handshakes });
    });

  private readonly fetch = (req: Request, server: Server<Slot>): Response | Promise<Response> | undefined => {
    const called = performance.now();
    const config = this.config;
    const url = new URL(req.url);
    if (url.pathname !== config.path) {
      if (req.headers.get("upgrade") !== null) {
        countInto(this.counters.rejected, "404 path");
        return new Response(`no WebSocket endpoint at ${url.pathname}; connect to ${config.path}\n`, { status: 404 });
      }
      return this.endpoint(req, url, server);
    }
    const refusal = checkUpgrade(req, url, config);
    if (refusal) {
      countInto(this.counters.rejected, refusal.reason);
      return refusalResponse(refusal);
    }
    // Connections keep arriving while a full worker's request to leave the port group is in flight; take
    // them while other workers have room (up to the hard cap), refuse them once every worker is full.
    if (this.drainStarted || this.registry.size + this.upgrading >= (this.lastResort ? this.cap : this.hardCap)) {
      countInto(this.counters.rejected, "503 full");
      return new Response("server full: every worker is at its connection cap; retry later or raise --max-conns\n", {
        status: 503,
        headers: { "Retry-After": "1" },
      });
    }
    const headers = config.subprotocol ? { "Sec-WebSocket-Protocol": config.subprotocol } : undefined;
    if (server.upgrade(req, { data: { idx: -1, seen: called }, headers })) {
      this.upgrading++;
      return undefined;
    }
    countInto(this.counters.rejected, "400 upgrade");
    return new Response("malformed WebSocket upgrade request\n", { status: 400 });
  };

  /**
   * An endpoint request; /stats and /metrics also carry the accept queues and the merged upgrade times. While
   * the answer is being put together, the request is complete but unanswered: the guard is told.
   */
  private endpoint(req: Request, url: URL, server: Server<Slot>): Promise<Response> {
    const handshakes = url.pathname === "/stats" || url.pathname === "/metrics";
    const answer = serveEndpoint(req, url, () => this.cluster(handshakes), this.index, () => this.clusterCount);
    const guard = this.guard;
    const peer = guard ? server.requestIP(req)?.port : undefined;
    if (!guard || peer === undefined) return answer;
    guard.answeringFor(peer, true);
    return answer.finally(() => guard.answeringFor(peer, false));
  }

  private listen(on: boolean): void {
    if (on && !this.listener && !this.drainStarted) {
      this.listener = Bun.serve<Slot>({
        hostname: this.config.host,
        port: this.port,
        reusePort: true,
        // Applies once a request was answered (an endpoint's keep-alive connection). Before its first request
        // a socket is the guard's: Bun's own timer there is a fixed 8 to 12 s whatever this says.
        idleTimeout: Math.min(255, Math.ceil(this.config.handshakeTimeout)),
        fetch: this.fetch,
        websocket: this.websocket,
      });
      this.servers.push(this.listener);
      // Rejoining must land in the same group, not on a fresh port of its own.
      this.port = this.listener.port ?? this.port;
      this.adoptListener();
    } else if (!on && this.listener) {
      // Stop accepting; connections already open stay with this server object, which we keep for publish.
      this.listener.stop(false);
      this.listener = undefined;
      this.listenInode = 0;
    }
    // Forget server objects that no longer listen nor hold connections.
    for (let i = this.servers.length - 1; i >= 0; i--) {
      const s = this.servers[i]!;
      if (s !== this.listener && s.pendingWebSockets === 0) this.servers.splice(i, 1);
    }
  }

  /** Finds the listener Bun just opened: lengthens its accept queue (LISTEN_BACKLOG) and notes its inode. */
  private adoptListener(): void {
    if (typeof this.sockets === "string") return;
    const fd = findListener(this.sockets, this.port, this.fdLimit);
    if (fd < 0) return;
    this.sockets.listen(fd, LISTEN_BACKLOG);
    try {
      this.listenInode = Number(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1] ?? 0);
    } catch {
      this.listenInode = 0;
    }
  }

  /**
   * Once per --ping-interval (or a quarter of --idle-timeout when pings are off) each connection is pinged, or,
   * when nothing was heard from it for --idle-timeout, sent close 1001; if it has not gone by the next visit,
   * its TCP connection is dropped.
   */
  private livenessVisits(): PeriodicVisits<Conn> | undefined {
    const idleMs = this.config.idleTimeout * 1000;
    const pinging = this.config.pingInterval > 0;
    if (!pinging && idleMs === 0) return undefined;
    const periodMs = pinging ? this.config.pingInterval * 1000 : idleMs / 4;
    // Pings need no finer spread than a hundredth of their period, and every wakeup of a worker costs: at a
    // million connections there are ~50 of them, mostly idle.
    const tickMs = Math.max(20, Math.min(1000, periodMs / 100));
    return new PeriodicVisits(this.registry, periodMs, (ws, now) => {
      const seen = ws.data.seen;
      if (seen < 0) {
        ws.terminate();
      } else if (idleMs > 0 && now - seen > idleMs) {
        this.counters.timedOut++;
        ws.data.seen = -1;
        ws.close(CLOSE_GOING_AWAY, "idle timeout");
      } else if (pinging) {
        ws.ping();
      }
    }, tickMs);
  }
}

/** Process entry: the supervisor hands us our settings in the environment and talks to us over IPC. */
function main(): void {
  const settings = JSON.parse(process.env.WSMILLION_WORKER ?? "null") as WorkerSettings | null;
  if (!settings) throw new Error("worker.ts is started by the server supervisor (wsmillion serve), not directly");
  const send = (msg: WorkerToSupervisor): void => {
    process.send?.(msg);
  };
  const worker = new ServerWorker(settings, send);
  const drainAndExit = (timeoutMs: number): void => {
    // A second request (the drain message and a lost supervisor) must not cut the first one short.
    if (worker.draining) return;
    void worker.drain(timeoutMs).then(() => {
      send({ t: "drained", stats: worker.snapshot() });
      process.exit(0);
    });
  };
  process.on("message", (msg: SupervisorToWorker) => {
    switch (msg.t) {
      case "listen":
        worker.listenRequest(msg.on, msg.lastResort);
        break;
      case "broadcast":
        worker.publishLocal(msg.data);
        break;
      case "cluster":
        worker.clusterAnswer(msg.id, msg.stats);
        break;
      case "drain":
        drainAndExit(msg.timeoutMs);
        break;
      case "report":
        worker.report(true);
        break;
      case "conns":
        worker.countPushed({ conns: msg.conns, closed: msg.closed });
        break;
    }
  });
  // Ctrl-C reaches the whole process group; the supervisor decides how workers stop.
  process.on("SIGINT", () => {});
  process.on("disconnect", () => drainAndExit(settings.config.drainTimeout * 1000));
  try {
    if (settings.claimPort) claimPort(settings.config.host, settings.config.port);
    worker.start();
  } catch (err) {
    // A bind the machine refuses (port taken, address not ours, port needs root) is the user's to fix: the
    // supervisor turns the cause into one line. Anything else is a bug and keeps its stack trace.
    const e = err as NodeJS.ErrnoException;
    if (e.syscall !== "listen" || typeof e.code !== "string") throw err;
    send({ t: "cannotListen", code: e.code, message: e.message });
    process.exit(2);
  }
}

/**
 * Throws if any other socket holds the port: a bind without reusePort fails even against a reusePort
 * server, which Bun.serve with reusePort would silently join, sharing that server's connections. Bun.serve,
 * not Bun.listen: Bun.listen's error for a host it cannot resolve has no errno code, so it would read as a bug.
 */
function claimPort(host: string, port: number): void {
  Bun.serve({ hostname: host, port, fetch: () => new Response(null, { status: 503 }) }).stop(true);
}

if (import.meta.main) main();
