// A deliberately dumb WebSocket peer over a raw socket, for tests that must send what no library would.
import { connect, type Socket } from "node:net";

export const UPGRADE = (path = "/ws", extra = "") =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

export function frame(opcode: number, payload: Uint8Array | string, { fin = true, mask = true, rsv = 0 } = {}): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload);
  const len = body.length;
  const head: number[] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 255);
  else head.push(m | 127, 0, 0, 0, 0, (len >>> 24) & 255, (len >> 16) & 255, (len >> 8) & 255, len & 255);
  const key = [0x12, 0x34, 0x56, 0x78];
  if (mask) for (let i = 0; i < len; i++) body[i] = body[i]! ^ key[i & 3]!;
  return Buffer.concat([Buffer.from(head), mask ? Buffer.from(key) : Buffer.alloc(0), body]);
}

export const closePayload = (code: number, reason = "") => Buffer.concat([Buffer.from([code >> 8, code & 255]), Buffer.from(reason)]);

export interface Parsed {
  opcode: number;
  fin: boolean;
  payload: Buffer;
  /** For close frames. */
  code?: number;
  reason?: string;
}

export function parseFrames(buf: Buffer): Parsed[] {
  const out: Parsed[] = [];
  let b = buf;
  while (b.length >= 2) {
    let len = b[1]! & 127;
    let off = 2;
    if (len === 126) {
      len = b.readUInt16BE(2);
      off = 4;
    } else if (len === 127) {
      len = Number(b.readBigUInt64BE(2));
      off = 10;
    }
    if (b.length < off + len) break;
    const payload = b.subarray(off, off + len);
    const f: Parsed = { opcode: b[0]! & 15, fin: (b[0]! & 0x80) !== 0, payload };
    if (f.opcode === 8 && len >= 2) {
      f.code = payload.readUInt16BE(0);
      f.reason = payload.subarray(2).toString();
    }
    out.push(f);
    b = b.subarray(off + len);
  }
  return out;
}

export interface RawConn {
  socket: Socket;
  /** Everything received after the HTTP response head. */
  received(): Buffer;
  head: string;
  closed: Promise<void>;
  send(...frames: Buffer[]): void;
}

/** Sends raw bytes and resolves with the HTTP response head (and whatever follows, through `received`). */
export function rawConnect(port: number, request: string | Buffer, host = "127.0.0.1"): Promise<RawConn> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host });
    let buf = Buffer.alloc(0);
    let head: string | undefined;
    let closedResolve: () => void;
    const closed = new Promise<void>((r) => (closedResolve = r));
    const conn: RawConn = {
      socket,
      received: () => buf,
      get head() {
        return head ?? "";
      },
      closed,
      send: (...frames) => {
        for (const f of frames) socket.write(f);
      },
    };
    socket.on("connect", () => socket.write(request));
    socket.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (head === undefined) {
        const i = buf.indexOf("\r\n\r\n");
        if (i >= 0) {
          head = buf.subarray(0, i).toString();
          buf = buf.subarray(i + 4);
          resolve(conn);
        }
      }
    });
    socket.on("error", (e) => (head === undefined ? reject(e) : undefined));
    socket.on("close", () => {
      if (head === undefined) {
        head = "";
        resolve(conn);
      }
      closedResolve();
    });
    setTimeout(() => head === undefined && reject(new Error("no HTTP response within 5 s")), 5000).unref();
  });
}

/** Opens a WebSocket over a raw socket, sends frames, waits for the server to close, returns what it sent. */
export async function exchange(port: number, frames: Buffer[], path = "/ws", timeoutMs = 5000): Promise<Parsed[]> {
  const conn = await rawConnect(port, UPGRADE(path));
  if (!conn.head.startsWith("HTTP/1.1 101")) throw new Error(`upgrade refused: ${conn.head}`);
  conn.send(...frames);
  await Promise.race([conn.closed, Bun.sleep(timeoutMs)]);
  conn.socket.destroy();
  return parseFrames(conn.received());
}
