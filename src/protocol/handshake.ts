// Client side of the RFC 6455 §4 opening handshake: the key, the upgrade request, and a strict check of the
// server's answer (status, Upgrade/Connection headers, Sec-WebSocket-Accept, subprotocol, extensions).
import { createHash, randomFillSync } from "node:crypto";
import { WS_GUID } from "./constants.ts";
import { acceptDeflate, offerHeader, type DeflateAgreement, type DeflateOffer } from "./deflate.ts";

/** Largest response header block we wait for before calling the response malformed. */
export const MAX_RESPONSE_HEADER = 16 * 1024;

const keyBytes = new Uint8Array(16);

/** A fresh Sec-WebSocket-Key: 16 random bytes, base64 (24 characters). */
export function generateKey(): string {
  randomFillSync(keyBytes);
  return Buffer.from(keyBytes.buffer, keyBytes.byteOffset, 16).toString("base64");
}

/** RFC 6455 §4.2.2: base64(SHA-1(key + GUID)). */
export function acceptFor(key: string): string {
  return createHash("sha1").update(key + WS_GUID).digest("base64");
}

export interface RequestOptions {
  /** Host header value (host or host:port). */
  host: string;
  path: string;
  subprotocols?: readonly string[];
  /** Extra headers, sent as given. */
  headers?: readonly (readonly [string, string])[];
  /** permessage-deflate to offer (Sec-WebSocket-Extensions), or none. */
  deflate?: DeflateOffer | null;
}

/**
 * The upgrade request split around the key, so each connection only concatenates three strings.
 * `render(key)` returns the bytes to write.
 */
export class RequestTemplate {
  private readonly head: string;
  private readonly tail: string;
  constructor(opts: RequestOptions) {
    const path = opts.path.startsWith("/") ? opts.path : "/" + opts.path;
    this.head =
      `GET ${path} HTTP/1.1\r\nHost: ${opts.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: `;
    let tail = "\r\n";
    if (opts.subprotocols && opts.subprotocols.length > 0) tail += `Sec-WebSocket-Protocol: ${opts.subprotocols.join(", ")}\r\n`;
    if (opts.deflate) tail += `Sec-WebSocket-Extensions: ${offerHeader(opts.deflate)}\r\n`;
    for (const [k, v] of opts.headers ?? []) tail += `${k}: ${v}\r\n`;
    this.tail = tail + "\r\n";
  }
  render(key: string): string {
    return this.head + key + this.tail;
  }
}

export type HandshakeResult =
  | { readonly ok: true; readonly headerBytes: number; readonly protocol: string; readonly deflate: DeflateAgreement | null }
  | { readonly ok: false; readonly cause: string; readonly status: number; readonly detail: string };

/** Not enough bytes yet for a verdict. */
export const INCOMPLETE = null;

/** Offset just past the blank line ending the header block, or -1. */
export function headerEnd(buf: Uint8Array): number {
  const n = buf.byteLength - 3;
  for (let i = 0; i < n; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i + 4;
  }
  return -1;
}

function fail(cause: string, status: number, detail: string): HandshakeResult {
  return { ok: false, cause, status, detail };
}

/**
 * Judges the server's response to the upgrade request. Returns null while the header block is incomplete.
 * Causes: `HTTP_<status>` (upgrade refused), `BAD_ACCEPT`, `BAD_RESPONSE` (malformed or missing headers),
 * `BAD_SUBPROTOCOL`, `BAD_EXTENSION` (an extension not offered, or an answer to our permessage-deflate
 * offer that breaks RFC 7692). With `deflate` offered, `deflate` in the result is what was agreed (null:
 * the server declined, and messages go uncompressed).
 */
export function parseResponse(
  buf: Uint8Array,
  key: string,
  offeredProtocols: readonly string[] = [],
  deflate: DeflateOffer | null = null,
): HandshakeResult | null {
  const end = headerEnd(buf);
  if (end < 0) {
    if (buf.byteLength > MAX_RESPONSE_HEADER) return fail("BAD_RESPONSE", 0, `no end of headers within ${MAX_RESPONSE_HEADER} bytes`);
    return INCOMPLETE;
  }
  const text = Buffer.from(buf.buffer, buf.byteOffset, end - 4).toString("latin1");
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
  if (!m) return fail("BAD_RESPONSE", 0, `not an HTTP status line: ${JSON.stringify((lines[0] ?? "").slice(0, 60))}`);
  const status = Number(m[1]);
  if (status !== 101) return fail(`HTTP_${status}`, status, `server answered ${status} ${m[2] ?? ""}`.trim());
  let upgrade = "";
  let connection = "";
  let accept = "";
  let protocol = "";
  let extensions = "";
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) return fail("BAD_RESPONSE", status, `malformed header line: ${JSON.stringify(line.slice(0, 60))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "upgrade") upgrade = value;
    else if (name === "connection") connection = value;
    else if (name === "sec-websocket-accept") accept = value;
    else if (name === "sec-websocket-protocol") protocol = value;
    // Repeated header lines are one comma-separated list (RFC 7230 §3.2.2).
    else if (name === "sec-websocket-extensions") extensions = extensions === "" ? value : `${extensions}, ${value}`;
  }
  if (upgrade.toLowerCase() !== "websocket") return fail("BAD_RESPONSE", status, `Upgrade header is '${upgrade}', expected 'websocket'`);
  if (!connection.toLowerCase().split(",").some((t) => t.trim() === "upgrade")) {
    return fail("BAD_RESPONSE", status, `Connection header is '${connection}', expected 'Upgrade'`);
  }
  if (accept !== acceptFor(key)) return fail("BAD_ACCEPT", status, `Sec-WebSocket-Accept '${accept}' does not match the key`);
  if (protocol && !offeredProtocols.includes(protocol)) return fail("BAD_SUBPROTOCOL", status, `server chose subprotocol '${protocol}' that was not offered`);
  if (!extensions) return { ok: true, headerBytes: end, protocol, deflate: null };
  if (deflate === null) return fail("BAD_EXTENSION", status, `server chose extensions '${extensions}' that were not offered`);
  const answer = acceptDeflate(extensions, deflate);
  if (!answer.ok) return fail("BAD_EXTENSION", status, answer.reason);
  return { ok: true, headerBytes: end, protocol, deflate: answer.agreement };
}
