// A server worker process: Bun.serve on the shared port (reusePort) with the configured mode, its own
// counters, and the capacity dance that keeps it from ever hitting the open-files limit.
import type { Server } from "bun";
import type { WorkerSettings } from "./config.ts";
import { serveEndpoint } from "./endpoints.ts";
import { checkUpgrade, refusalResponse } from "./handshake.ts";
import type { SupervisorToWorker, WorkerToSupervisor } from "./ipc.ts";
import { byteLength, messageHandler, pushSender, type Conn } from "./modes.ts";
import { countInto, emptyCounters, type ClusterStats, type WorkerStats } from "./stats.ts";
import { Registry, Sweep, type Slot } from "./sweep.ts";
import { SelfSampler } from "../system/self.ts";

/** How often the worker reports its figures, and the resolution of the clock that stamps when a peer was last heard. */
const TICK_MS = 250;
const DRAIN_BATCH = 2000;
const TOPIC = "all";

const settings = JSON.parse(process.env.WSMILLION_WORKER ?? "null") as WorkerSettings | null;
if (!settings) throw new Error("worker.ts is started by the server supervisor (wsmillion serve), not directly");
const { config, index, cap, hardCap } = settings;
// Rejoin the port group a little below the cap, so a worker at its cap does not flap in and out.
const rejoinBelow = cap - Math.max(1, Math.min(200, Math.floor(cap * 0.02)));

function send(msg: WorkerToSupervisor): void {
  process.send?.(msg);
}

/**
 * A coarse clock for per-message bookkeeping: reading the time on every message would cost more than it
 * tells. It ticks with the report (below): one wakeup, not two.
 */
let clock = performance.now();

const counters = emptyCounters();
const registry = new Registry<Conn>();
/** Connections whose last send was queued (backpressure); the drain handler removes them. */
const slow = new Set<Conn>();
const sampler = new SelfSampler();
const started = performance.now();
let upgrading = 0;
let full = false;
let lastResort = false;
let draining = false;
const servers: Server<Slot>[] = [];
let listener: Server<Slot> | undefined;

/** Accounts for a ws.send result: bytes written (> 0), queued (-1: it will go, but the connection is slow) or dropped (0). */
function sent(ws: Conn, result: number, bytes: number): void {
  if (result === 0) {
    if (ws.readyState === 1) counters.dropped++;
    return;
  }
  counters.messagesOut++;
  counters.bytesOut += bytes;
  if (result === -1) slow.add(ws);
}

function publishLocal(data: string | Uint8Array): void {
  const bytes = byteLength(data);
  for (const s of servers) s.publish(TOPIC, data);
  counters.messagesOut += registry.size;
  counters.bytesOut += bytes * registry.size;
}

const onMessage = messageHandler({
  config,
  counters,
  sent,
  broadcast(data) {
    publishLocal(data);
    send({ t: "broadcast", data: typeof data === "string" ? data : new Uint8Array(data) });
  },
});

function checkCapacity(): void {
  const load = registry.size + upgrading;
  if (!full && load >= cap) {
    full = true;
    send({ t: "capacity", full });
  } else if (full && load < rejoinBelow) {
    full = false;
    // Joining the port group is always safe, so do it now; leaving waits for the supervisor.
    listen(true);
    send({ t: "capacity", full });
    send({ t: "listening", on: listener !== undefined });
  }
}

const websocket = {
  maxPayloadLength: config.maxPayload,
  backpressureLimit: config.maxBuffered,
  closeOnBackpressureLimit: config.backpressure === "close",
  // Liveness is ours (the liveness sweep): Bun's idle timer is reset by our own pings, so it would never fire.
  idleTimeout: 0,
  sendPings: false,
  perMessageDeflate: config.deflate,
  publishToSelf: true,
  open(ws: Conn) {
    upgrading--;
    counters.accepted++;
    registry.add(ws);
    if (config.mode === "broadcast") ws.subscribe(TOPIC);
    checkCapacity();
  },
  // With pings on, an answered ping is proof of life enough, and stamping every message was two thirds of
  // our per-message JavaScript (measured); without pings, messages are all there is to go by.
  message:
    config.pingInterval > 0
      ? onMessage
      : (ws: Conn, message: string | Buffer) => {
          ws.data.seen = clock;
          onMessage(ws, message);
        },
  pong(ws: Conn) {
    ws.data.seen = clock;
  },
  drain(ws: Conn) {
    slow.delete(ws);
  },
  close(ws: Conn, code: number) {
    registry.remove(ws);
    slow.delete(ws);
    counters.closed++;
    countInto(counters.closedByCode, code);
    checkCapacity();
  },
};

const clusterQueries = new Map<number, (s: ClusterStats) => void>();
let queryId = 0;
function cluster(): Promise<ClusterStats> {
  return new Promise((resolve) => {
    const id = ++queryId;
    clusterQueries.set(id, resolve);
    send({ t: "query", id });
  });
}

function fetch(req: Request, server: Server<Slot>): Response | Promise<Response> | undefined {
  const url = new URL(req.url);
  if (url.pathname !== config.path) {
    if (req.headers.get("upgrade") !== null) {
      countInto(counters.rejected, "404 path");
      return new Response(`no WebSocket endpoint at ${url.pathname}; connect to ${config.path}\n`, { status: 404 });
    }
    return serveEndpoint(req, url, cluster, index);
  }
  const refusal = checkUpgrade(req, url, config);
  if (refusal) {
    countInto(counters.rejected, refusal.reason);
    return refusalResponse(refusal);
  }
  // Connections keep arriving while a full worker's request to leave the port group is in flight; take
  // them while other workers have room (up to the hard cap), refuse them once every worker is full.
  if (draining || registry.size + upgrading >= (lastResort ? cap : hardCap)) {
    countInto(counters.rejected, "503 full");
    return new Response("server full: every worker is at its connection cap; retry later or raise --max-conns\n", {
      status: 503,
      headers: { "Retry-After": "1" },
    });
  }
  const headers = config.subprotocol ? { "Sec-WebSocket-Protocol": config.subprotocol } : undefined;
  if (server.upgrade(req, { data: { idx: -1, seen: clock }, headers })) {
    upgrading++;
    return undefined;
  }
  countInto(counters.rejected, "400 upgrade");
  return new Response("malformed WebSocket upgrade request\n", { status: 400 });
}

/** The port group's port: --port, or the one the kernel picked for the first worker when --port is 0. */
let port = config.port;

function listen(on: boolean): void {
  if (on && !listener && !draining) {
    listener = Bun.serve<Slot>({
      hostname: config.host,
      port,
      reusePort: true,
      // Bun's HTTP idle timeout is what drops a half-sent upgrade request.
      idleTimeout: Math.min(255, Math.ceil(config.handshakeTimeout)),
      fetch,
      websocket,
    });
    servers.push(listener);
    // Rejoining must land in the same group, not on a fresh port of its own.
    port = listener.port ?? port;
  } else if (!on && listener) {
    // Stop accepting; connections already open stay with this server object, which we keep for publish.
    listener.stop(false);
    listener = undefined;
  }
  // Forget server objects that no longer listen nor hold connections.
  for (let i = servers.length - 1; i >= 0; i--) {
    const s = servers[i]!;
    if (s !== listener && s.pendingWebSockets === 0) servers.splice(i, 1);
  }
}

function snapshot(): WorkerStats {
  let bufferedBytes = 0;
  for (const ws of slow) bufferedBytes += ws.getBufferedAmount();
  return {
    ...counters,
    closedByCode: { ...counters.closedByCode },
    rejected: { ...counters.rejected },
    ...sampler.sample(),
    open: registry.size,
    bufferedBytes,
    listening: listener !== undefined,
    worker: index,
    pid: process.pid,
    restarts: 0,
    uptimeSeconds: (performance.now() - started) / 1000,
  };
}

async function drain(timeoutMs: number): Promise<void> {
  if (draining) return;
  draining = true;
  listen(false);
  liveness?.stop();
  pushSweep?.stop();
  const deadline = performance.now() + timeoutMs;
  // Close in batches, yielding between them, so a full worker neither stalls nor floods its sockets.
  const closing = registry.items.slice();
  for (let i = 0; i < closing.length && performance.now() < deadline; i += DRAIN_BATCH) {
    for (const ws of closing.slice(i, i + DRAIN_BATCH)) ws.close(1001, "server shutting down");
    await Bun.sleep(1);
  }
  while (registry.size > 0 && performance.now() < deadline) await Bun.sleep(10);
  for (const ws of [...registry.items]) ws.terminate();
  send({ t: "drained", stats: snapshot() });
  process.exit(0);
}

process.on("message", (msg: SupervisorToWorker) => {
  switch (msg.t) {
    case "listen":
      lastResort = msg.lastResort;
      // A leave request can cross this worker's own news that it has room again; room wins.
      listen(msg.on || !full);
      send({ t: "listening", on: listener !== undefined });
      break;
    case "broadcast":
      publishLocal(msg.data);
      break;
    case "cluster":
      clusterQueries.get(msg.id)?.(msg.stats);
      clusterQueries.delete(msg.id);
      break;
    case "drain":
      void drain(msg.timeoutMs);
      break;
    case "report":
      send({ t: "stats", stats: snapshot() });
      break;
  }
});
// Ctrl-C reaches the whole process group; the supervisor decides how workers stop.
process.on("SIGINT", () => {});
process.on("disconnect", () => void drain(config.drainTimeout * 1000));

/**
 * Once per --ping-interval (or a quarter of --idle-timeout when pings are off) each connection is pinged, or,
 * when nothing was heard from it for --idle-timeout, sent close 1001; if it has not gone by the next visit,
 * its TCP connection is dropped.
 */
function livenessSweep(): Sweep<Conn> | undefined {
  const idleMs = config.idleTimeout * 1000;
  const pinging = config.pingInterval > 0;
  if (!pinging && idleMs === 0) return undefined;
  const periodMs = pinging ? config.pingInterval * 1000 : idleMs / 4;
  // Pings need no finer spread than a hundredth of their period, and every wakeup of a worker costs: at a
  // million connections there are ~50 of them, mostly idle.
  const tickMs = Math.max(20, Math.min(1000, periodMs / 100));
  return new Sweep(registry, periodMs, (ws, now) => {
    const seen = ws.data.seen;
    if (seen < 0) {
      ws.terminate();
    } else if (idleMs > 0 && now - seen > idleMs) {
      counters.timedOut++;
      ws.data.seen = -1;
      ws.close(1001, "idle timeout");
    } else if (pinging) {
      ws.ping();
    }
  }, tickMs);
}
const liveness = livenessSweep();
const pushSweep = config.mode === "push" ? new Sweep(registry, config.sendtick, pushSender({ config, counters, sent, broadcast: publishLocal })) : undefined;
liveness?.start();
pushSweep?.start();

listen(true);
send({ t: "ready", port });
setInterval(() => {
  clock = performance.now();
  send({ t: "stats", stats: snapshot() });
}, TICK_MS);
