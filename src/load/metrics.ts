// Load metrics that merge exactly across workers: counters (summed), failures by cause (each with an
// explanation), server close codes, and HdrHistograms in microseconds that travel as compressed base64.
import * as hdr from "hdr-histogram-js";
import { closeCodeMeaning } from "../protocol/close-codes.ts";

export const HIST_NAMES = ["connect", "tls", "handshake", "rtt", "push", "lateness", "loopLag"] as const;
export type HistName = (typeof HIST_NAMES)[number];

export const HIST_LABELS: Record<HistName, string> = {
  connect: "TCP connect",
  tls: "TLS handshake",
  handshake: "WebSocket upgrade",
  rtt: "echo round trip",
  push: "server push latency",
  lateness: "send lateness (generator)",
  loopLag: "event-loop lag (generator)",
};

/** 1 µs to 1 hour at 3 significant digits. */
export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

export function encodeHistogram(h: hdr.Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** Adds an encoded histogram into `into` (exact merge). */
export function mergeEncoded(into: hdr.Histogram, encoded: string): void {
  if (!encoded) return;
  const h = hdr.decodeFromCompressedBase64(encoded);
  into.add(h);
  h.destroy();
}

export interface Counters {
  /** Dials started (first attempts and reconnects). */
  attempted: number;
  /** Upgrades completed. */
  opened: number;
  /** Currently open. */
  open: number;
  /** Dials that ended before the upgrade completed. */
  failed: number;
  /** Open connections ended by the server or the network (close frame, reset, or EOF). */
  dropped: number;
  /** Connections we closed at the end of the test. */
  closedByUs: number;
  /** Open connections we failed mid-run because the server broke RFC 6455 (close 1002, 1007 or 1009). */
  failedByUs: number;
  /** Dials that were reconnects of a dropped or failed slot. */
  reconnects: number;
  msgsOut: number;
  msgsIn: number;
  /** Message payload bytes (before compression out, after inflation in). */
  bytesOut: number;
  bytesIn: number;
  /** WebSocket bytes after the upgrade as written and read: frame headers and (compressed) payloads, before TLS. */
  wireBytesOut: number;
  wireBytesIn: number;
  /** Sends skipped because the socket still had unsent bytes (backpressure). */
  sendsSkipped: number;
  /** Sends that fell due while their connection was not open (dropped, or being reopened). */
  sendsDown: number;
  pingsIn: number;
}

export function zeroCounters(): Counters {
  return {
    attempted: 0, opened: 0, open: 0, failed: 0, dropped: 0, closedByUs: 0, failedByUs: 0, reconnects: 0,
    msgsOut: 0, msgsIn: 0, bytesOut: 0, bytesIn: 0, wireBytesOut: 0, wireBytesIn: 0, sendsSkipped: 0, sendsDown: 0, pingsIn: 0,
  };
}

export function addCounters(into: Counters, c: Counters): void {
  for (const k of Object.keys(into) as (keyof Counters)[]) into[k] += c[k];
}

/** What each failure cause means and what usually fixes it. */
const CAUSES: Record<string, string> = {
  EADDRNOTAVAIL: "ephemeral ports exhausted for that source/destination address pair: spread over more destinations (--targets 127.0.0.1-16:PORT, or more ports) or widen net.ipv4.ip_local_port_range",
  EADDRINUSE: "the explicit source address:port was already taken: use more --source addresses or fewer connections per source",
  EMFILE: "open-files limit of the load worker reached: use more --workers (each stays under the limit) or raise ulimit -n",
  ENFILE: "system-wide open-files limit reached (fs.file-max): raise fs.file-max",
  ENOBUFS: "kernel out of socket buffer memory: lower connections or raise net.ipv4.tcp_mem",
  ENOMEM: "out of memory while creating the socket",
  ECONNREFUSED: "nothing listening at that address and port, or its accept backlog overflowed: check the server is up, raise net.core.somaxconn",
  ECONNRESET: "the server reset the TCP connection (crashed, overloaded or at its own limits)",
  ETIMEDOUT: "TCP connect did not complete within --handshake-timeout (SYN dropped: server backlog full or host unreachable)",
  EHOSTUNREACH: "no route to the destination host",
  ENETUNREACH: "no route to the destination network",
  EPIPE: "the server closed the connection while we were writing",
  HANDSHAKE_TIMEOUT: "connected, but the server did not answer the upgrade within --handshake-timeout (overloaded server or not a WebSocket endpoint)",
  BAD_ACCEPT: "the server's Sec-WebSocket-Accept does not match our key (a proxy or broken server answered)",
  BAD_RESPONSE: "the server's answer to the upgrade is not valid HTTP/WebSocket (wrong Upgrade/Connection headers or garbage)",
  BAD_SUBPROTOCOL: "the server picked a subprotocol we did not offer (--subprotocol)",
  BAD_EXTENSION: "the server's Sec-WebSocket-Extensions answer names an extension we did not offer, or answers our permessage-deflate offer against RFC 7692 (the example names the rule)",
  TLS_UNKNOWN_ISSUER: "the server's certificate is not signed by a CA we trust (self-signed, or a private CA): give that CA with --ca FILE, or accept any certificate with --insecure",
  TLS_NAME_MISMATCH: "the server's certificate does not name the host we dialled: give the name it was issued for with --servername (dialling by IP address needs it)",
  TLS_EXPIRED: "the server's certificate has expired (or is not valid yet): renew it on the server, or check both machines' clocks",
  TLS_HANDSHAKE: "the TLS handshake failed: is that port speaking TLS? (or no common version or cipher, or the server sent an alert; see the example)",
  CLOSED_DURING_TLS: "the server closed or reset the connection during the TLS handshake (at its limits, or it refused our hello: no common TLS version or cipher, or it wants a --servername)",
  TLS_TIMEOUT: "TCP connected, but the TLS handshake did not finish within --handshake-timeout (a server busy with handshakes, or a port that is not TLS)",
  CLOSED_DURING_HANDSHAKE: "the server closed the TCP connection before answering the upgrade (at its limits, or not a WebSocket endpoint)",
  // Why an open connection ended (drops). A close frame from the server is `CLOSE_<code>`.
  EOF: "the server or a middlebox ended the TCP connection without a close frame (crash, kill, idle timeout of a proxy)",
};

/** Where the first reason for a close we sent is kept (the parser's words: "masked frame from server", ...). */
export const ourCloseNote = (code: number): string => `SENT_${code}`;

/** The cause a drop is counted under when the server closed with a close frame. */
export const serverCloseCause = (code: number): string => `CLOSE_${code}`;

export function explainCause(cause: string): string {
  const known = CAUSES[cause];
  if (known) return known;
  const close = /^CLOSE_(\d+)$/.exec(cause);
  if (close) return `the server closed the connection with ${close[1]}: ${closeCodeMeaning(Number(close[1]))}`;
  const http = /^HTTP_(\d{3})$/.exec(cause);
  if (http) {
    const status = Number(http[1]);
    if (status === 503) return "HTTP 503: the server refused the upgrade as full or unavailable";
    if (status === 404) return "HTTP 404: no WebSocket endpoint at that path (check --path)";
    if (status === 400) return "HTTP 400: the server rejected the upgrade request as malformed";
    if (status === 401 || status === 403) return `HTTP ${status}: the server refused the upgrade (authentication or origin; see --header)`;
    if (status === 426) return "HTTP 426: the server wants a different protocol version";
    if (status === 429) return "HTTP 429: the server is rate limiting new connections (lower --rate)";
    return `HTTP ${status}: the server refused the upgrade`;
  }
  return "unclassified error (see the message printed by the worker)";
}

/** Maps a connect/socket error to a cause name (its errno code when it has one). */
export function causeOf(err: unknown): string {
  if (err && typeof err === "object") {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
    const msg = String((err as { message?: unknown }).message ?? "");
    const m = /\b(E[A-Z]{3,})\b/.exec(msg);
    if (m) return m[1]!;
  }
  return "UNKNOWN";
}

/**
 * Certificate errors as Bun reports them (OpenSSL/BoringSSL verify codes, Node's name check), grouped by
 * what fixes them. Measured with Bun 1.4: a self-signed server gives DEPTH_ZERO_SELF_SIGNED_CERT, a leaf of
 * an unknown CA UNABLE_TO_VERIFY_LEAF_SIGNATURE (SELF_SIGNED_CERT_IN_CHAIN when the server sends the CA
 * too), a wrong --servername ERR_TLS_CERT_ALTNAME_INVALID, an expired certificate CERT_HAS_EXPIRED, and a
 * port without TLS EPROTO (WRONG_VERSION_NUMBER).
 */
const TLS_CODES: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: "TLS_UNKNOWN_ISSUER",
  SELF_SIGNED_CERT_IN_CHAIN: "TLS_UNKNOWN_ISSUER",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "TLS_UNKNOWN_ISSUER",
  UNABLE_TO_GET_ISSUER_CERT: "TLS_UNKNOWN_ISSUER",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "TLS_UNKNOWN_ISSUER",
  CERT_UNTRUSTED: "TLS_UNKNOWN_ISSUER",
  ERR_TLS_CERT_ALTNAME_INVALID: "TLS_NAME_MISMATCH",
  HOSTNAME_MISMATCH: "TLS_NAME_MISMATCH",
  CERT_HAS_EXPIRED: "TLS_EXPIRED",
  CERT_NOT_YET_VALID: "TLS_EXPIRED",
  // Bun gives a FIN and a reset during the handshake alike: "Client network socket disconnected before
  // secure TLS connection was established".
  ECONNRESET: "CLOSED_DURING_TLS",
};

/** The cause of a failed TLS handshake: a certificate cause, CLOSED_DURING_TLS, another errno, or TLS_HANDSHAKE. */
export function tlsCauseOf(err: unknown): string {
  const code = err && typeof err === "object" ? (err as { code?: unknown }).code : undefined;
  if (typeof code === "string") {
    const known = TLS_CODES[code];
    if (known) return known;
    if (code !== "EPROTO" && /^E[A-Z]+$/.test(code)) return code;
  }
  return "TLS_HANDSHAKE";
}

/** One worker's figures in a form that crosses IPC and merges exactly. */
export interface MetricsSnapshot {
  counters: Counters;
  errors: Record<string, number>;
  /** Close codes the server sent to close an open connection. */
  closeCodes: Record<string, number>;
  /** Why open connections ended other than by our end-of-test close: `CLOSE_<code>`, an errno, or EOF. */
  drops: Record<string, number>;
  /** Close codes we sent mid-run to fail a connection whose server broke the protocol. */
  ourCloses: Record<string, number>;
  /** With permessage-deflate offered: opened connections by the server's answer ("none": declined). */
  extensions: Record<string, number>;
  notes: Record<string, string>;
  /** Encoded histograms (µs). */
  hist: Record<HistName, string>;
}

/** What a worker counts and what the coordinator sums: the same shape on both sides. */
class MetricSet {
  readonly counters: Counters = zeroCounters();
  readonly errors: Record<string, number> = {};
  readonly closeCodes: Record<string, number> = {};
  readonly drops: Record<string, number> = {};
  readonly ourCloses: Record<string, number> = {};
  readonly extensions: Record<string, number> = {};
  /** The first message seen for each cause, to show next to its explanation. */
  readonly notes: Record<string, string> = {};
  readonly hist = Object.fromEntries(HIST_NAMES.map((n) => [n, newHistogram()])) as Record<HistName, hdr.Histogram>;
}

/** Milliseconds to the microseconds the histograms hold, clamped to their range (0 .. 1 hour). */
function toMicros(ms: number): number {
  const us = Math.round(ms * 1000);
  return us > 0 ? (us < 3_600_000_000 ? us : 3_600_000_000) : 0;
}

export class Metrics extends MetricSet {
  /** Round trips (echo) or push latencies since the last interval snapshot, for live p50/p99. */
  readonly recentLatency = newHistogram();
  /** Send lateness since the last interval snapshot: a sweep stops a round early on it. */
  readonly recentLateness = newHistogram();

  /** Records milliseconds into a histogram held in microseconds. */
  recordMs(name: HistName, ms: number): void {
    this.hist[name].recordValue(toMicros(ms));
  }

  recordLatencyMs(name: "rtt" | "push", ms: number): void {
    const v = toMicros(ms);
    this.hist[name].recordValue(v);
    this.recentLatency.recordValue(v);
  }

  recordLatenessMs(ms: number): void {
    const v = toMicros(ms);
    this.hist.lateness.recordValue(v);
    this.recentLateness.recordValue(v);
  }

  fail(cause: string): void {
    this.counters.failed++;
    this.errors[cause] = (this.errors[cause] ?? 0) + 1;
  }

  /** An open connection the server closed with a close frame. */
  serverClosed(code: number): void {
    const k = String(code);
    this.closeCodes[k] = (this.closeCodes[k] ?? 0) + 1;
    this.drop(serverCloseCause(code));
  }

  /** An open connection ended by the server or the network, by cause (an errno such as ECONNRESET, EOF, CLOSE_<code>). */
  drop(cause: string): void {
    this.counters.dropped++;
    this.drops[cause] = (this.drops[cause] ?? 0) + 1;
  }

  /** An open connection we failed because the server broke the protocol; `code` is the close we sent. */
  failedByUs(code: number): void {
    this.counters.failedByUs++;
    const k = String(code);
    this.ourCloses[k] = (this.ourCloses[k] ?? 0) + 1;
  }

  /** An opened connection whose server answered our permessage-deflate offer so ("none": declined). */
  extension(answer: string): void {
    this.extensions[answer] = (this.extensions[answer] ?? 0) + 1;
  }

  /** Keeps the first detail message seen for a cause. */
  note(cause: string, detail: unknown): void {
    if (cause in this.notes || detail === null || detail === undefined) return;
    const text = typeof detail === "string" ? detail : detail instanceof Error ? `${detail.message}` : String(detail);
    this.notes[cause] = text.slice(0, 200);
  }

  snapshot(): MetricsSnapshot {
    const hist = {} as Record<HistName, string>;
    for (const n of HIST_NAMES) hist[n] = encodeHistogram(this.hist[n]);
    return {
      counters: { ...this.counters }, errors: { ...this.errors }, closeCodes: { ...this.closeCodes }, drops: { ...this.drops },
      ourCloses: { ...this.ourCloses }, extensions: { ...this.extensions }, notes: { ...this.notes }, hist,
    };
  }

  /** Encodes and resets the recent-latency histogram. */
  takeRecentLatency(): string {
    const s = this.recentLatency.totalCount > 0 ? encodeHistogram(this.recentLatency) : "";
    this.recentLatency.reset();
    return s;
  }

  /** Encodes and resets the recent send-lateness histogram. */
  takeRecentLateness(): string {
    const s = this.recentLateness.totalCount > 0 ? encodeHistogram(this.recentLateness) : "";
    this.recentLateness.reset();
    return s;
  }
}

function addAll(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Sums worker snapshots; histograms merged exactly. */
export class MergedMetrics extends MetricSet {
  add(s: MetricsSnapshot): void {
    addCounters(this.counters, s.counters);
    addAll(this.errors, s.errors);
    addAll(this.closeCodes, s.closeCodes);
    addAll(this.drops, s.drops);
    addAll(this.ourCloses, s.ourCloses);
    addAll(this.extensions, s.extensions);
    for (const [k, v] of Object.entries(s.notes)) if (!(k in this.notes)) this.notes[k] = v;
    for (const n of HIST_NAMES) mergeEncoded(this.hist[n], s.hist[n]);
  }
}

/** Percentiles of a µs histogram, reported in milliseconds, plus the encoded histogram. */
export interface LatencySummary {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** HdrHistogram V2 compressed base64, values in microseconds. */
  encoded: string;
}

export function summarize(h: hdr.Histogram): LatencySummary {
  const ms = (us: number): number => Math.round(us) / 1000;
  if (h.totalCount === 0) {
    return { count: 0, minMs: 0, meanMs: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, p999Ms: 0, maxMs: 0, encoded: encodeHistogram(h) };
  }
  return {
    count: h.totalCount,
    minMs: ms(h.getValueAtPercentile(0)),
    meanMs: ms(h.mean),
    p50Ms: ms(h.getValueAtPercentile(50)),
    p90Ms: ms(h.getValueAtPercentile(90)),
    p99Ms: ms(h.getValueAtPercentile(99)),
    p999Ms: ms(h.getValueAtPercentile(99.9)),
    maxMs: ms(h.maxValue),
    encoded: encodeHistogram(h),
  };
}
