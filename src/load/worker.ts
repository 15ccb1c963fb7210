// The load worker: holds one shard of the plan's connections in this process, dials them under the
// concurrency and rate caps with handshake timeouts, drives sends with one sweep, reconnects with jittered
// exponential backoff, and reports figures once a second. Run as a child process (IPC with the
// coordinator) or in-process through the LoadWorker class.
import { RequestTemplate } from "../protocol/handshake.ts";
import { MaskSource } from "../protocol/mask.ts";
import { RSV1, maxFrameBytes, writeMaskedFrame } from "../protocol/frame.ts";
import type { DeflateOffer } from "../protocol/deflate.ts";
import { OP_BINARY } from "../protocol/constants.ts";
import { STAMP_BYTES, nowMs } from "../protocol/stamp.ts";
import { formatTarget } from "../system/targets.ts";
import { cpuMicros, nofileSoft, openFds, rssBytes } from "../system/self.ts";
import {
  CLOSE_TIMEOUT_MS, Conn, MEASURE_PUSH, MEASURE_RTT, ST_CLOSED, ST_CLOSING, ST_CONNECTING, ST_FLUSHING, ST_IDLE, ST_OPEN, ST_TLS, ST_UPGRADING,
  abortDial, closeConn, dial, endFlushed, isDialing, terminateConn, tlsOptionsFor, writeBytes, type ConnHost,
} from "./connection.ts";
import { Payload } from "./payload.ts";
import { Metrics } from "./metrics.ts";
import { SendScheduler } from "./scheduler.ts";
import { localPortOf, sourceIndexOf, targetIndexOf } from "./addresses.ts";
import type { CoordinatorToWorker, WorkerToCoordinator } from "./ipc.ts";
import type { SpanCounts, WorkerOutage, WorkerSpans } from "./outages.ts";
import type { WorkerShard } from "./plan.ts";

const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/**
 * Handshake timeouts, reconnects, rate pacing and the lag probe share one timer. Every wakeup of an idle
 * process costs ~50 µs here, and a million connections take ~100 processes: at 10 ms, idle workers alone
 * used a fifth of the box.
 */
const CONTROL_TICK_MS = 100;
/** The rate cap's bucket holds one control tick's worth of dials (pumps between ticks follow dial events). */
const RATE_BURST_S = CONTROL_TICK_MS / 1000;
/** The most one socket's batch of due frames may take in one write (see sendOn). */
const MAX_BATCH_BYTES = 4 << 20;

export class LoadWorker implements ConnHost {
  readonly metrics = new Metrics();
  readonly masks = new MaskSource();
  readonly templates: RequestTemplate[];
  readonly subprotocols: readonly string[];
  readonly tls: Bun.TLSOptions | null;
  readonly deflate: DeflateOffer | null;
  readonly maxMessage: number;
  readonly measure: number;
  readonly conns: Conn[];

  private phase: "idle" | "ramp" | "run" | "hold" | "closing" | "done" = "idle";
  private next = 0; // next slot for its first dial
  private inFlight = 0;
  private settled = 0;
  private tokens = 0;
  private tokensAt = 0;
  // Handshake deadlines, FIFO (every dial gets the same timeout): conn and its dial start time.
  private tqConn: Conn[] = [];
  private tqT0: number[] = [];
  private tqHead = 0;
  // Connections flushing before their close frame, in start order (every one gets the same limit).
  private flushing: Conn[] = [];
  private flushingT0: number[] = [];
  // Reconnect heap keyed by due time.
  private rqDue: number[] = [];
  private rqSlot: number[] = [];
  private control: ReturnType<typeof setInterval> | null = null;
  private report: ReturnType<typeof setInterval> | null = null;
  private pumpQueued = false;
  private readonly pumpNow = (): void => { this.pumpQueued = false; this.pump(); };
  private readonly scheduler: SendScheduler | null;
  /** Closed loop (--in-flight): the next message goes when an echo returns, while traffic runs. */
  onEcho: ((c: Conn) => void) | null = null;
  private readonly echoNext = (c: Conn): void => {
    if (c.state === ST_OPEN) this.writeFrames(c, 1, null);
  };
  private readonly payloadSource: Payload;
  private readonly payload: Uint8Array;
  /** Writes the send timestamp and sequence (protocol/stamp.ts layout) into the shared payload. */
  private readonly stamp: DataView | null;
  private readonly frame: Uint8Array;
  /** Several frames for one write (a tick's batch for one socket), grown on demand up to batchFit frames. */
  private batch = new Uint8Array(0);
  private readonly batchFit: number;
  private rampStart = 0;
  private rampMs = 0;
  private runStart = 0;
  private runMs = 0;
  private baseRss = 0;
  private peakRss = 0;
  private rampRss = 0;
  private rampOpen = 0;
  private lagMax = 0;
  private lagExpected = 0;
  private closeResolve: (() => void) | null = null;
  private nofile = 0;
  private baseFds = 0;
  // Spans below this worker's share (outages.ts), timed at the loss and at the open that restores it.
  private fullMs: number | null = null;
  private readonly outages: WorkerOutage[] = [];
  private outage: { startMs: number; minOpen: number } | null = null;
  /** The tallies when the worker last had its share open: a span's counts are what grew since. */
  private atFull: SpanCounts = { drops: {}, refused: {}, sendsDown: 0 };
  /** When the last open connection went (wall-clock ms); null while any is open, or before any opened. */
  private emptyAtMs: number | null = null;

  constructor(readonly shard: WorkerShard, private readonly emit: (msg: WorkerToCoordinator) => void) {
    // With --servername the Host header names the server as its certificate does, not the address dialled.
    const serverName = shard.tls?.serverName ?? null;
    this.templates = shard.targets.map((t) => new RequestTemplate({
      host: formatTarget(serverName !== null ? { host: serverName, port: t.port } : t), path: shard.path, subprotocols: shard.subprotocols, headers: shard.headers, deflate: shard.deflate,
    }));
    this.subprotocols = shard.subprotocols;
    this.tls = shard.tls !== null ? tlsOptionsFor(shard.tls) : null;
    this.deflate = shard.deflate;
    this.maxMessage = shard.maxMessage;
    this.measure = shard.mode === "receive" || shard.mode === "idle" ? MEASURE_PUSH : MEASURE_RTT;
    this.conns = new Array<Conn>(shard.slots);
    for (let k = 0; k < shard.slots; k++) {
      this.conns[k] = new Conn(this, k, targetIndexOf(this.globalSlot(k), shard.targets.length));
    }
    this.payloadSource = new Payload(shard.payload, shard.size);
    this.payload = this.payloadSource.bytes;
    this.frame = new Uint8Array(maxFrameBytes(shard.size));
    this.stamp = shard.size >= STAMP_BYTES ? new DataView(this.payload.buffer, 0, STAMP_BYTES) : null;
    this.batchFit = Math.max(1, Math.floor(MAX_BATCH_BYTES / this.frame.byteLength));
    this.scheduler = shard.intervalMs > 0 && shard.inFlight === 0
      ? new SendScheduler(shard.slots, shard.intervalMs, shard.index, shard.workers, shard.totalConnections, (k, due, count) => this.sendOn(k, due, count))
      : null;
  }

  globalSlot(k: number): number {
    return this.shard.index + k * this.shard.workers;
  }

  /** Measures the baseline and starts dialing. */
  start(): void {
    this.nofile = nofileSoft();
    this.baseFds = openFds();
    Bun.gc(true);
    this.baseRss = rssBytes();
    this.peakRss = this.baseRss;
    this.emit({ t: "ready", pid: process.pid, baseRssBytes: this.baseRss, atMs: nowMs(), cpuUs: cpuMicros() });
    this.phase = "ramp";
    this.rampStart = performance.now();
    this.tokensAt = this.rampStart;
    this.tokens = this.shard.rate > 0 ? Math.min(this.shard.rate, Math.max(1, this.shard.rate * RATE_BURST_S)) : 0;
    this.lagExpected = performance.now() + CONTROL_TICK_MS;
    this.control = setInterval(() => this.controlTick(), CONTROL_TICK_MS);
    this.report = setInterval(() => this.sendFigures(), 1000);
    if (this.shard.slots === 0) this.finishRamp();
    else this.pump();
  }

  /** Starts traffic at wall-clock t0 (ms). */
  run(t0Wall: number): void {
    if (this.phase === "ramp") this.finishRamp();
    this.phase = "run";
    const t0 = t0Wall - performance.timeOrigin;
    this.runStart = Math.max(t0, performance.now());
    if (this.shard.inFlight > 0) setTimeout(() => this.startClosedLoop(), Math.max(0, t0 - performance.now()));
    else this.scheduler?.start(t0);
  }

  /** Closed loop: every open connection gets its --in-flight messages at once; echoes send the rest. */
  private startClosedLoop(): void {
    if (this.phase !== "run") return;
    this.onEcho = this.echoNext;
    for (const c of this.conns) if (c.state === ST_OPEN) this.writeFrames(c, this.shard.inFlight, null);
  }

  /** Stops sending; connections stay open. */
  hold(): void {
    this.scheduler?.stop();
    this.onEcho = null;
    if (this.phase === "run") {
      this.runMs = performance.now() - this.runStart;
      this.emit({ t: "held", counters: { ...this.metrics.counters }, cpuUs: cpuMicros(), runMs: this.runMs });
    }
    this.phase = "hold";
  }

  /** Closes every connection with a close handshake; resolves when all are gone or after timeoutMs. */
  async close(timeoutMs: number): Promise<void> {
    if (this.phase === "run") this.hold();
    if (this.outage !== null) this.endOutage(null);
    this.phase = "closing";
    this.rqDue.length = 0;
    this.rqSlot.length = 0;
    for (const c of this.conns) closeConn(c);
    const done = new Promise<void>((resolve) => { this.closeResolve = resolve; });
    this.checkClosed();
    const timer = setTimeout(() => {
      for (const c of this.conns) if (c.state === ST_CLOSING || c.state === ST_OPEN || c.state === ST_FLUSHING) terminateConn(c);
      setTimeout(() => this.closeResolve?.(), 200);
    }, timeoutMs);
    await done;
    clearTimeout(timer);
    this.phase = "done";
    if (this.control) clearInterval(this.control);
    if (this.report) clearInterval(this.report);
  }

  finalMessage(): WorkerToCoordinator {
    const cpu = process.cpuUsage();
    return {
      t: "final",
      snapshot: this.metrics.snapshot(),
      proc: { rssBytes: rssBytes(), cpuUserUs: cpu.user, cpuSystemUs: cpu.system, lagMaxMs: this.lagMax },
      baseRssBytes: this.baseRss,
      peakRssBytes: this.peakRss,
      rampRssBytes: this.rampRss,
      rampOpen: this.rampOpen,
      planned: this.scheduler?.planned ?? 0,
      runMs: this.runMs,
      spans: this.spans(),
    };
  }

  // ConnHost

  refineCause(cause: string): string {
    // Bun reports a connect that failed for lack of a file descriptor as ECONNREFUSED; tell them apart by
    // counting our descriptors against the limit.
    if (cause === "ECONNREFUSED" && this.nofile > 0) {
      const inUse = this.baseFds + this.metrics.counters.open + this.inFlight - 1;
      if (inUse >= this.nofile - 3) return "EMFILE";
    }
    return cause;
  }

  connOpened(c: Conn): void {
    this.inFlight--;
    if (!c.settled) { c.settled = true; this.settled++; }
    this.trackOpen();
    this.afterDial();
  }

  connFlushing(c: Conn): void {
    this.flushing.push(c);
    this.flushingT0.push(c.flushSince);
    // The connection stopped counting as open when its close began, not when TCP ends.
    this.trackOpen();
  }

  connEnded(c: Conn, wasOpen: boolean): void {
    if (!wasOpen) {
      this.inFlight--;
      if (!c.settled) { c.settled = true; this.settled++; }
    }
    if (this.shard.reconnect && this.phase !== "closing" && this.phase !== "done" && this.phase !== "idle") {
      c.failures++;
      const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(20, c.failures - 1));
      this.pushReconnect(performance.now() + exp * (0.5 + Math.random()), c.slot);
    }
    this.trackOpen();
    if (this.phase === "closing") this.checkClosed();
    else this.afterDial();
  }

  private afterDial(): void {
    if (this.phase === "ramp" && this.settled === this.shard.slots) this.finishRamp();
    if (!this.pumpQueued) {
      this.pumpQueued = true;
      setImmediate(this.pumpNow);
    }
  }

  private checkClosed(): void {
    if (this.closeResolve === null) return;
    if (this.metrics.counters.open > 0 || this.inFlight > 0) return;
    // A close frame still queued behind unsent bytes would be lost with the process: wait for it (or for
    // expireFlushes to give up on it). The oldest are first, so a still-flushing one is found early.
    if (this.flushing.some((c) => c.state === ST_FLUSHING)) return;
    this.closeResolve();
  }

  // Outages

  /**
   * Called after every open and every loss: starts a span when the worker falls below its share (once it
   * has had it all), ends it when the share is back, and notes when the last connection went.
   */
  private trackOpen(): void {
    if (this.phase === "closing" || this.phase === "done" || this.phase === "idle") return;
    const m = this.metrics;
    const open = m.counters.open;
    if (open === this.shard.slots) {
      if (this.outage !== null) this.endOutage(nowMs());
      this.fullMs ??= nowMs();
      // Nothing is dialing while every slot is open, so no tally moves until the next loss.
      this.atFull = { drops: { ...m.drops }, refused: { ...m.errors }, sendsDown: m.counters.sendsDown };
    } else if (this.outage !== null) {
      if (open < this.outage.minOpen) this.outage.minOpen = open;
    } else if (this.fullMs !== null) {
      this.outage = { startMs: nowMs(), minOpen: open };
    }
    if (open > 0) this.emptyAtMs = null;
    else if (this.emptyAtMs === null && m.counters.opened > 0) {
      this.emptyAtMs = nowMs();
      // Without --reconnect nothing will reopen: tell the coordinator now rather than at the next report.
      if (!this.shard.reconnect && this.phase !== "ramp") this.sendFigures();
    }
  }

  /** Closes the current span: restored at `restoredMs`, or (null) cut short by the end of the run. */
  private endOutage(restoredMs: number | null): void {
    const o = this.outage!;
    const m = this.metrics;
    const base = this.atFull;
    this.outages.push({
      startMs: o.startMs, restoredMs, endMs: restoredMs ?? nowMs(), minOpen: o.minOpen,
      drops: grown(m.drops, base.drops), refused: grown(m.errors, base.refused), sendsDown: m.counters.sendsDown - base.sendsDown,
    });
    this.outage = null;
  }

  private spans(): WorkerSpans {
    return { slots: this.shard.slots, fullMs: this.fullMs, outages: this.outages };
  }

  private finishRamp(): void {
    if (this.phase !== "ramp") return;
    this.phase = "hold";
    this.rampMs = performance.now() - this.rampStart;
    Bun.gc(true);
    this.rampRss = rssBytes();
    this.rampOpen = this.metrics.counters.open;
    if (this.rampRss > this.peakRss) this.peakRss = this.rampRss;
    this.emit({ t: "ramped", counters: { ...this.metrics.counters }, rampMs: this.rampMs, rssBytes: this.rampRss, cpuUs: cpuMicros() });
  }

  // Dialing

  private canDial(now: number): boolean {
    if (this.inFlight >= this.shard.concurrency) return false;
    if (this.shard.rate <= 0) return true;
    const cap = Math.max(1, this.shard.rate * RATE_BURST_S);
    this.tokens = Math.min(cap, this.tokens + ((now - this.tokensAt) * this.shard.rate) / 1000);
    this.tokensAt = now;
    return this.tokens >= 1;
  }

  private pump(): void {
    if (this.phase === "closing" || this.phase === "done" || this.phase === "idle") return;
    const now = performance.now();
    while (this.canDial(now)) {
      let k: number;
      if (this.next < this.shard.slots) k = this.next++;
      else if (this.rqDue.length > 0 && this.rqDue[0]! <= now) {
        k = this.popReconnect();
        this.metrics.counters.reconnects++;
      } else break;
      const c = this.conns[k]!;
      if (c.state !== ST_IDLE && c.state !== ST_CLOSED) continue;
      if (this.shard.rate > 0) this.tokens -= 1;
      this.dialSlot(c);
    }
  }

  private dialSlot(c: Conn): void {
    const s = this.shard;
    const g = this.globalSlot(c.slot);
    const t = s.targets[c.tix]!;
    this.inFlight++;
    let src: string | undefined;
    let lport: number | undefined;
    if (s.sources.length > 0) {
      src = s.sources[sourceIndexOf(g, s.sources.length)];
      lport = localPortOf(g, s.sources.length, s.sourcePortBase);
    }
    c.pbuf = null;
    dial(c, t.host, t.port, src, lport);
    if (c.state === ST_CONNECTING) {
      this.tqConn.push(c);
      this.tqT0.push(c.t0);
    }
  }

  /** Drops connections whose peer did not take what preceded our close frame within CLOSE_TIMEOUT_MS. */
  private expireFlushes(now: number): void {
    if (this.flushing.length === 0) return;
    const limit = now - CLOSE_TIMEOUT_MS;
    let k = 0;
    while (k < this.flushing.length && this.flushingT0[k]! <= limit) {
      const c = this.flushing[k]!;
      if (c.state === ST_FLUSHING && c.flushSince === this.flushingT0[k]) endFlushed(c, true);
      k++;
    }
    if (k > 0) {
      this.flushing.splice(0, k);
      this.flushingT0.splice(0, k);
    }
  }

  private controlTick(): void {
    const now = performance.now();
    const lag = now - this.lagExpected;
    if (lag > this.lagMax) this.lagMax = lag;
    this.metrics.recordMs("loopLag", lag > 0 ? lag : 0);
    this.lagExpected = now + CONTROL_TICK_MS;
    // Handshake timeouts: the queue is in deadline order since every dial has the same timeout.
    const limit = now - this.shard.handshakeTimeoutMs;
    while (this.tqHead < this.tqConn.length && this.tqT0[this.tqHead]! <= limit) {
      const c = this.tqConn[this.tqHead]!;
      const t0 = this.tqT0[this.tqHead]!;
      this.tqHead++;
      if (c.t0 !== t0) continue;
      if (c.state === ST_CONNECTING) abortDial(c, "ETIMEDOUT");
      else if (c.state === ST_TLS) abortDial(c, "TLS_TIMEOUT");
      else if (c.state === ST_UPGRADING) abortDial(c, "HANDSHAKE_TIMEOUT");
    }
    // Drop settled entries from the head so the queue does not grow without bound.
    while (this.tqHead < this.tqConn.length) {
      const c = this.tqConn[this.tqHead]!;
      if (c.t0 === this.tqT0[this.tqHead] && isDialing(c.state)) break;
      this.tqHead++;
    }
    if (this.tqHead > 4096 && this.tqHead * 2 > this.tqConn.length) {
      this.tqConn = this.tqConn.slice(this.tqHead);
      this.tqT0 = this.tqT0.slice(this.tqHead);
      this.tqHead = 0;
    }
    this.expireFlushes(now);
    if (this.phase === "ramp" || this.rqDue.length > 0) this.pump();
  }

  private sendFigures(): void {
    const rss = rssBytes();
    if (rss > this.peakRss) this.peakRss = rss;
    const cpu = process.cpuUsage();
    this.emit({
      t: "figures",
      atMs: nowMs(),
      counters: { ...this.metrics.counters },
      errors: { ...this.metrics.errors },
      recentLatency: this.metrics.takeRecentLatency(),
      recentLateness: this.metrics.takeRecentLateness(),
      proc: { rssBytes: rss, cpuUserUs: cpu.user, cpuSystemUs: cpu.system, lagMaxMs: this.lagMax },
      planned: this.scheduler?.planned ?? 0,
      emptyAtMs: this.emptyAtMs,
    });
    this.lagMax = 0;
  }

  // Sending

  /** Open loop: `count` due frames on slot k in one write; the i-th was planned at firstDue + i*interval. */
  private sendOn(k: number, firstDue: number, count: number): void {
    const c = this.conns[k]!;
    if (c.state !== ST_OPEN) {
      this.metrics.counters.sendsDown += count;
      return;
    }
    if (c.pending !== null) {
      this.metrics.counters.sendsSkipped += count;
      return;
    }
    this.writeFrames(c, count, firstDue);
  }

  /**
   * Writes `count` stamped frames in one write. `firstDue` (open loop) is when the first was planned, for
   * lateness; null in closed loop, where a frame goes when an echo returns and queues behind what is pending
   * (at most --in-flight per connection, so nothing piles up). With permessage-deflate every message is
   * compressed on its own (each carries its own stamp) and the frames go into the batch buffer, grown when
   * a compressed frame would not fit (incompressible payloads grow a little).
   */
  private writeFrames(c: Conn, count: number, firstDue: number | null): void {
    const m = this.metrics;
    const now = performance.now();
    const frameLen = this.frame.byteLength;
    // A batch beyond what a socket buffer could take would only wait in our memory: skip the excess.
    const fit = this.batchFit;
    if (count > fit) {
      m.counters.sendsSkipped += count - fit;
      count = fit;
    }
    const pmd = c.pmd;
    let out = this.frame;
    if (count > 1 || pmd !== null) {
      if (this.batch.byteLength < count * frameLen) this.batch = new Uint8Array(Math.min(count * 2, fit) * frameLen);
      out = this.batch;
    }
    const v = this.stamp;
    const size = this.payload.byteLength;
    const interval = this.shard.intervalMs;
    let at = 0;
    for (let i = 0; i < count; i++) {
      if (v !== null) {
        v.setFloat64(0, performance.timeOrigin + now, true);
        v.setUint32(8, c.seq++ >>> 0, true);
      }
      if (pmd === null) at += writeMaskedFrame(out, at, OP_BINARY, this.payload, size, this.masks);
      else {
        if (this.payloadSource.varies) this.payloadSource.next();
        const z = pmd.compress(this.payload);
        const need = at + maxFrameBytes(z.byteLength);
        if (need > out.byteLength) {
          const grown = new Uint8Array(Math.max(need, out.byteLength * 2));
          grown.set(out.subarray(0, at));
          this.batch = out = grown;
        }
        at += writeMaskedFrame(out, at, OP_BINARY, z, z.byteLength, this.masks, true, RSV1);
      }
      if (firstDue !== null) m.recordLatenessMs(now - (firstDue + i * interval));
    }
    writeBytes(c, out, at);
    m.counters.msgsOut += count;
    m.counters.bytesOut += count * size;
  }

  // Reconnect heap (min-heap on due time)

  private pushReconnect(due: number, slot: number): void {
    const d = this.rqDue;
    const s = this.rqSlot;
    let i = d.length;
    d.push(due);
    s.push(slot);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (d[p]! <= due) break;
      d[i] = d[p]!; s[i] = s[p]!;
      i = p;
    }
    d[i] = due; s[i] = slot;
  }

  private popReconnect(): number {
    const d = this.rqDue;
    const s = this.rqSlot;
    const top = s[0]!;
    const lastD = d.pop()!;
    const lastS = s.pop()!;
    const n = d.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && d[r]! < d[l]! ? r : l;
        if (d[c]! >= lastD) break;
        d[i] = d[c]!; s[i] = s[c]!;
        i = c;
      }
      d[i] = lastD; s[i] = lastS;
    }
    return top;
  }
}

/** What a tally gained since `base`, keys that did not move left out. */
function grown(now: Record<string, number>, base: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(now)) if (v > (base[k] ?? 0)) out[k] = v - (base[k] ?? 0);
  return out;
}

/** Process entry: the coordinator talks to us over IPC. */
function main(): void {
  let worker: LoadWorker | null = null;
  const send = (msg: WorkerToCoordinator): void => { process.send?.(msg); };
  process.on("message", (raw: unknown) => {
    const msg = raw as CoordinatorToWorker;
    try {
      if (msg.t === "start") {
        worker = new LoadWorker(msg.shard, send);
        worker.start();
      } else if (msg.t === "run") worker?.run(msg.t0);
      else if (msg.t === "hold") worker?.hold();
      else if (msg.t === "close") {
        const w = worker;
        if (!w) return;
        void w.close(msg.timeoutMs).then(() => {
          send(w.finalMessage());
          setTimeout(() => process.exit(0), 50);
        });
      }
    } catch (err) {
      send({ t: "fatal", message: err instanceof Error ? err.stack ?? err.message : String(err) });
      setTimeout(() => process.exit(1), 50);
    }
  });
  process.on("disconnect", () => process.exit(0));
}



if (import.meta.main) main();
