// One client connection: a small state object per socket and ONE shared handler set for all sockets
// (no closures or timers per connection). Speaks our RFC 6455 codec over a raw Bun TCP socket, or over
// Bun's TLS for wss:// (TCP connect, TLS handshake and upgrade each timed and failed by cause), with
// permessage-deflate when the server agrees to our offer.
import type { Socket, SocketHandler } from "bun";
import { readFileSync } from "node:fs";
import { generateKey, parseResponse, type RequestTemplate } from "../protocol/handshake.ts";
import { MessageDeflate, type DeflateAgreement, type DeflateOffer } from "../protocol/deflate.ts";
import { initParser, parseFrames, type FrameSink, type ParserState } from "../protocol/parser.ts";
import { encodeClose, encodePong } from "../protocol/frame.ts";
import type { MaskSource } from "../protocol/mask.ts";
import { CLOSE_ABNORMAL, CLOSE_NORMAL } from "../protocol/close-codes.ts";
import { STAMP_BYTES, nowMs } from "../protocol/stamp.ts";
import { causeOf, ourCloseNote, tlsCauseOf, type Metrics } from "./metrics.ts";
import type { TlsPlan } from "./plan.ts";

export const ST_IDLE = 0;
export const ST_CONNECTING = 1;
export const ST_UPGRADING = 2;
export const ST_OPEN = 3;
export const ST_CLOSING = 4;
export const ST_CLOSED = 5;
/** Our close frame is queued behind bytes the socket has not taken yet; TCP ends once they are written. */
export const ST_FLUSHING = 6;
/** wss: TCP connected, TLS handshake in progress (the upgrade request goes once it completes). */
export const ST_TLS = 7;

/** A dial in progress: TCP connect, TLS handshake, or the upgrade. */
export function isDialing(state: number): boolean {
  return state === ST_CONNECTING || state === ST_TLS || state === ST_UPGRADING;
}

/**
 * How long a connection may take to write out what was pending before its close frame (the peer is not
 * reading): after this the worker drops it. The same limit the coordinator gives an end-of-test close.
 */
export const CLOSE_TIMEOUT_MS = 3000;

/** What a stamped incoming message measures: echo round trips, or server push latency. */
export const MEASURE_RTT = 0;
export const MEASURE_PUSH = 1;

/** What a connection needs from its worker (one instance shared by all of the worker's connections). */
export interface ConnHost {
  readonly metrics: Metrics;
  readonly masks: MaskSource;
  /** Upgrade request templates, one per target (the Host header differs). */
  readonly templates: readonly RequestTemplate[];
  readonly subprotocols: readonly string[];
  /** TLS for every dial (wss), or null for plain TCP. */
  readonly tls: Bun.TLSOptions | null;
  /** The permessage-deflate offer the templates carry, or null. */
  readonly deflate: DeflateOffer | null;
  readonly maxMessage: number;
  readonly measure: number;
  /** Lets the worker correct a cause the runtime misreports (Bun reports EMFILE on connect as ECONNREFUSED). */
  refineCause(cause: string): string;
  /** The upgrade completed. */
  connOpened(c: Conn): void;
  /** The connection is gone (failed dial, drop, or our own close). */
  connEnded(c: Conn, wasOpen: boolean): void;
  /** Closed loop: called for each message received while traffic runs, to send the next (null: open loop). */
  readonly onEcho: ((c: Conn) => void) | null;
  /** The connection is flushing before its close frame: drop it if still flushing after CLOSE_TIMEOUT_MS. */
  connFlushing(c: Conn): void;
}

export class Conn implements ParserState {
  state = ST_IDLE;
  sock: Socket<Conn> | null = null;
  /** Dial start and TCP-connected times (performance.now ms). */
  t0 = 0;
  /** When the connection started flushing before its close frame (performance.now ms). */
  flushSince = 0;
  /** TCP connected; then, with TLS, when the handshake completed: the upgrade is timed from here. */
  tConn = 0;
  /** Sec-WebSocket-Key while upgrading. */
  key: string | null = null;
  /** Partial upgrade response. */
  hbuf: Uint8Array | null = null;
  /** Bytes the socket did not take yet (backpressure), or null. */
  pending: Uint8Array | null = null;
  seq = 0;
  /** Dial attempts since the last successful open (reconnect backoff). */
  failures = 0;
  /** True once this slot's first dial settled (opened or failed). */
  settled = false;
  // Parser state (see protocol/parser.ts).
  pbuf: Uint8Array | null = null;
  fragOp = 0;
  fragParts: Uint8Array[] | null = null;
  fragLen = 0;
  pdone = false;
  fragComp = false;
  /** permessage-deflate on this connection (null: not offered or declined; nothing is kept then). */
  pmd: MessageDeflate | null = null;

  constructor(
    readonly host: ConnHost,
    /** Slot index within the worker. */
    readonly slot: number,
    /** Target index (Host header template). */
    readonly tix: number,
  ) {}
}

/**
 * Bun's TLS options for a plan's wss settings, built once per process and shared by every dial.
 * rejectUnauthorized is always set: measured with Bun 1.4, `tls: {}` dials plain TCP.
 */
export function tlsOptionsFor(t: TlsPlan): Bun.TLSOptions {
  const o: Bun.TLSOptions = { rejectUnauthorized: !t.insecure };
  if (t.caFile !== null) o.ca = readFileSync(t.caFile, "utf8");
  if (t.serverName !== null) o.serverName = t.serverName;
  return o;
}

interface ConnectOpts {
  hostname: string;
  port: number;
  socket: SocketHandler<Conn, "uint8array">;
  data: Conn;
  tls?: Bun.TLSOptions;
  localAddress?: string;
  localPort?: number;
}

/** Starts a dial. Failures (also synchronous ones) are reported through the host. */
export function dial(c: Conn, hostname: string, port: number, localAddress?: string, localPort?: number): void {
  c.state = ST_CONNECTING;
  c.t0 = performance.now();
  c.host.metrics.counters.attempted++;
  try {
    // localAddress/localPort are supported by Bun.connect but missing from its type definitions.
    const opts: ConnectOpts = { hostname, port, socket: handlers, data: c };
    if (c.host.tls !== null) opts.tls = c.host.tls;
    if (localAddress !== undefined) {
      opts.localAddress = localAddress;
      if (localPort !== undefined) opts.localPort = localPort;
    }
    void Bun.connect<Conn>(opts as unknown as Bun.TCPSocketConnectOptions<Conn>);
  } catch (err) {
    failDial(c, c.host.refineCause(causeOf(err)), err);
  }
}

function failDial(c: Conn, cause: string, detail: unknown): void {
  const m = c.host.metrics;
  m.fail(cause);
  m.note(cause, detail);
  const sock = c.sock;
  c.state = ST_CLOSED;
  c.sock = null;
  c.key = null;
  c.hbuf = null;
  c.pending = null;
  if (sock) sock.terminate();
  c.host.connEnded(c, false);
}

/** Gives up on a dial still in progress (handshake timeout, or end of test). */
export function abortDial(c: Conn, cause: string | null): void {
  if (!isDialing(c.state)) return;
  if (cause === null) {
    const sock = c.sock;
    c.state = ST_CLOSED;
    c.sock = null;
    if (sock) sock.terminate();
    c.host.connEnded(c, false);
    return;
  }
  failDial(c, cause, null);
}

/** Writes bytes, keeping what the socket does not take until it drains; counted as WebSocket bytes out. */
export function writeBytes(c: Conn, buf: Uint8Array, len: number): void {
  c.host.metrics.counters.wireBytesOut += len;
  writeRaw(c, buf, len);
}

function writeRaw(c: Conn, buf: Uint8Array, len: number): void {
  const sock = c.sock;
  if (sock === null) return;
  if (c.pending !== null) {
    const p = new Uint8Array(c.pending.byteLength + len);
    p.set(c.pending, 0);
    p.set(buf.subarray(0, len), c.pending.byteLength);
    c.pending = p;
    return;
  }
  const n = sock.write(buf, 0, len);
  if (n < len && n >= 0) c.pending = buf.slice(n, len);
}

/** Starts our side of the close handshake (end of test). */
export function closeConn(c: Conn, code = CLOSE_NORMAL): void {
  if (c.state === ST_OPEN) {
    c.state = ST_CLOSING;
    const f = encodeClose(code, "", c.host.masks);
    writeBytes(c, f, f.byteLength);
  } else if (isDialing(c.state)) {
    abortDial(c, null);
  }
}

/** Drops the TCP connection at once (close-handshake timeout). */
export function terminateConn(c: Conn): void {
  if (c.sock) c.sock.terminate();
}

function onOpened(c: Conn, sock: Socket<Conn>, buf: Uint8Array, headerBytes: number, agreed: DeflateAgreement | null): void {
  const m = c.host.metrics;
  c.state = ST_OPEN;
  c.key = null;
  c.hbuf = null;
  c.failures = 0;
  m.recordMs("handshake", performance.now() - c.tConn);
  m.counters.opened++;
  m.counters.open++;
  initParser(c);
  c.pmd = agreed !== null ? new MessageDeflate(agreed) : null;
  if (c.host.deflate !== null) m.extension(agreed?.response ?? "none");
  c.host.connOpened(c);
  if (headerBytes < buf.byteLength && c.sock === sock) {
    m.counters.wireBytesIn += buf.byteLength - headerBytes;
    parseFrames(c, buf.subarray(headerBytes), sink, c.host.maxMessage);
  }
}

function onUpgradeData(c: Conn, sock: Socket<Conn>, data: Uint8Array): void {
  let buf = data;
  if (c.hbuf !== null) {
    buf = new Uint8Array(c.hbuf.byteLength + data.byteLength);
    buf.set(c.hbuf, 0);
    buf.set(data, c.hbuf.byteLength);
  }
  const res = parseResponse(buf, c.key!, c.host.subprotocols, c.host.deflate);
  if (res === null) {
    c.hbuf = buf === data ? data.slice() : buf;
    return;
  }
  if (!res.ok) {
    failDial(c, res.cause, res.detail);
    return;
  }
  onOpened(c, sock, buf, res.headerBytes, res.deflate);
}

/** TCP (and TLS) is up: send the upgrade request. */
function startUpgrade(c: Conn, sock: Socket<Conn>): void {
  c.state = ST_UPGRADING;
  const key = generateKey();
  c.key = key;
  sock.write(c.host.templates[c.tix]!.render(key));
}

const handlers: SocketHandler<Conn, "uint8array"> = {
  binaryType: "uint8array",
  open(sock) {
    const c = sock.data;
    if (c.state !== ST_CONNECTING) {
      // A dial we already gave up on (timeout) finally connected.
      sock.terminate();
      return;
    }
    c.sock = sock;
    c.tConn = performance.now();
    c.host.metrics.recordMs("connect", c.tConn - c.t0);
    // With TLS, this is the TCP connect (a handshake handler is set): the handshake follows.
    if (c.host.tls !== null) c.state = ST_TLS;
    else startUpgrade(c, sock);
  },
  handshake(sock, success, authorizationError) {
    const c = sock.data;
    if (c.sock !== sock || c.state !== ST_TLS) return;
    // `success` is false whenever the certificate is not authorized, also with rejectUnauthorized false
    // (--insecure: measured with Bun 1.4, a self-signed certificate for another name), where the socket
    // stays open and we go on. Otherwise Bun closes it.
    if (!success && c.host.tls!.rejectUnauthorized !== false) {
      failDial(c, tlsCauseOf(authorizationError), authorizationError ?? "TLS handshake failed");
      return;
    }
    const now = performance.now();
    c.host.metrics.recordMs("tls", now - c.tConn);
    c.tConn = now;
    startUpgrade(c, sock);
  },
  data(sock, data) {
    const c = sock.data;
    if (c.sock !== sock) return;
    // While flushing we have said our last word; what the peer still sends is ignored.
    if (c.state === ST_UPGRADING) onUpgradeData(c, sock, data);
    else if (c.state === ST_OPEN || c.state === ST_CLOSING) {
      c.host.metrics.counters.wireBytesIn += data.byteLength;
      parseFrames(c, data, sink, c.host.maxMessage);
    }
  },
  drain(sock) {
    const c = sock.data;
    if (c.sock !== sock || c.pending === null) return;
    const p = c.pending;
    c.pending = null;
    writeRaw(c, p, p.byteLength);
    if (c.pending === null && c.state === ST_FLUSHING) endFlushed(c, false);
  },
  close(sock, err) {
    const c = sock.data;
    if (c.sock !== sock) return;
    const st = c.state;
    c.sock = null;
    c.pending = null;
    c.pbuf = null;
    c.fragParts = null;
    c.pmd = null;
    if (st === ST_TLS) {
      failDial(c, err ? tlsCauseOf(err) : "CLOSED_DURING_TLS", err ?? null);
      return;
    }
    if (st === ST_CONNECTING || st === ST_UPGRADING) {
      failDial(c, err ? causeOf(err) : "CLOSED_DURING_HANDSHAKE", err ?? null);
      return;
    }
    c.state = ST_CLOSED;
    const m = c.host.metrics;
    if (st === ST_OPEN) {
      // No close frame came first: a reset (its errno) or an orderly TCP close (EOF).
      const cause = err ? causeOf(err) : "EOF";
      m.counters.open--;
      m.drop(cause);
      m.note(cause, err ?? `TCP closed with no close frame (${CLOSE_ABNORMAL})`);
      c.host.connEnded(c, true);
    } else if (st === ST_FLUSHING) {
      // Already counted when the close began; the peer went away before taking what was pending.
      c.host.connEnded(c, true);
    } else if (st === ST_CLOSING) {
      m.counters.open--;
      m.counters.closedByUs++;
      c.host.connEnded(c, true);
    }
  },
  connectError(sock, err) {
    const c = sock.data;
    if (c.state !== ST_CONNECTING) return;
    failDial(c, c.host.refineCause(causeOf(err)), err);
  },
  error(sock, err) {
    const c = sock.data;
    c.host.metrics.note("handler error", err);
  },
};

function serverClosed(c: Conn, code: number): void {
  // Server-initiated close of an open connection: count it, echo the close, end TCP.
  const m = c.host.metrics;
  m.counters.open--;
  m.serverClosed(code);
  sendCloseAndEnd(c, code === 1005 ? CLOSE_NORMAL : code, "");
}

/**
 * Our last close frame, then the end of TCP. RFC 6455 §5.4: a control frame may not go inside another
 * frame, so when part of a data frame is still pending (the peer stopped reading), the close queues
 * behind it and TCP ends once everything is written, or after CLOSE_TIMEOUT_MS (see connFlushing).
 */
function sendCloseAndEnd(c: Conn, code: number, reason: string): void {
  const f = encodeClose(code, reason, c.host.masks);
  writeBytes(c, f, f.byteLength);
  if (c.pending === null) {
    endFlushed(c, false);
    return;
  }
  c.state = ST_FLUSHING;
  c.flushSince = performance.now();
  c.host.connFlushing(c);
}

/** Ends TCP after our close frame went out (or, `abandon`, drops it when the peer would not take it). */
export function endFlushed(c: Conn, abandon: boolean): void {
  const sock = c.sock;
  c.state = ST_CLOSED;
  c.sock = null;
  c.pending = null;
  c.pmd = null;
  if (sock) {
    if (abandon) sock.terminate();
    else sock.end();
  }
  c.host.connEnded(c, true);
}

// The stamp's float64 read through a scratch buffer: no DataView per message (little-endian host, as
// protocol/stamp.ts writes little-endian).
const scratch = new Float64Array(1);
const scratchBytes = new Uint8Array(scratch.buffer);
function stampTime(d: Uint8Array): number {
  for (let i = 0; i < 8; i++) scratchBytes[i] = d[i]!;
  return scratch[0]!;
}

const sink: FrameSink<Conn> = {
  message(c, _opcode, data) {
    const m = c.host.metrics;
    m.counters.msgsIn++;
    m.counters.bytesIn += data.byteLength;
    if (data.byteLength >= STAMP_BYTES) {
      const sent = stampTime(data);
      const now = nowMs();
      const d = now - sent;
      // Only plausible stamps (an unstamped payload decodes to noise).
      if (d > -1000 && d < 3_600_000) m.recordLatencyMs(c.host.measure === MEASURE_RTT ? "rtt" : "push", d < 0 ? 0 : d);
    }
    const onEcho = c.host.onEcho;
    if (onEcho !== null) onEcho(c);
  },
  ping(c, data) {
    c.host.metrics.counters.pingsIn++;
    if (c.state !== ST_OPEN) return;
    const f = encodePong(data, c.host.masks);
    writeBytes(c, f, f.byteLength);
  },
  pong() {},
  close(c, code) {
    if (c.state === ST_CLOSING) {
      // Our close was answered: the server should end TCP; we end our side too.
      c.sock?.end();
      return;
    }
    if (c.state === ST_OPEN) serverClosed(c, code);
  },
  fail(c, code, reason) {
    const m = c.host.metrics;
    m.note(ourCloseNote(code), reason);
    if (c.state === ST_OPEN) {
      m.counters.open--;
      m.failedByUs(code);
      sendCloseAndEnd(c, code, reason);
    } else {
      // Closing already (our close is out): end TCP without another close frame.
      c.sock?.end();
    }
  },
};
