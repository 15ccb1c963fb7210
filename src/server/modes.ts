// What a worker does with messages: echo, sink, push or broadcast. Each mode is a message handler plus,
// for push, periodic visits that send to every connection once per --sendtick.
import type { ServerWebSocket } from "bun";
import { nowMs, writeStamp } from "../protocol/stamp.ts";
import type { ServerConfig } from "./config.ts";
import type { ServerCounters } from "./stats.ts";
import type { Slot } from "./visits.ts";

export type Conn = ServerWebSocket<Slot>;

export interface ModeContext {
  config: ServerConfig;
  counters: ServerCounters;
  /** Sends the result of ws.send through the backpressure accounting. */
  sent(ws: Conn, result: number, bytes: number): void;
  /** Delivers a broadcast to this worker's connections and, through the supervisor, to the other workers'. */
  broadcast(data: string | Uint8Array): void;
}

export type MessageHandler = (ws: Conn, message: string | Buffer) => void;

export function byteLength(message: string | Uint8Array): number {
  return typeof message === "string" ? Buffer.byteLength(message) : message.byteLength;
}

export function messageHandler(ctx: ModeContext): MessageHandler {
  const { counters } = ctx;
  const receive = (message: string | Buffer): number => {
    const n = byteLength(message);
    counters.messagesIn++;
    counters.bytesIn += n;
    return n;
  };
  switch (ctx.config.mode) {
    case "echo":
      return (ws, message) => {
        const n = receive(message);
        ctx.sent(ws, ws.send(message), n);
      };
    case "sink":
    case "push":
      return (_ws, message) => {
        receive(message);
      };
    case "broadcast":
      return (_ws, message) => {
        receive(message);
        ctx.broadcast(message);
      };
  }
}

/** The push payload: --databyte bytes, stamped with the send time and a sequence number at each send. */
export function pushSender(ctx: ModeContext): (ws: Conn) => void {
  const payload = new Uint8Array(ctx.config.databyte);
  let seq = 0;
  return (ws) => {
    writeStamp(payload, nowMs(), seq++);
    ctx.sent(ws, ws.send(payload), payload.byteLength);
  };
}
