// RFC 6455 constants the client codec shares: the handshake GUID, opcodes and frame limits.

/** RFC 6455 §1.3: appended to Sec-WebSocket-Key before hashing into Sec-WebSocket-Accept. */
export const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/** RFC 6455 §5.5: control frames carry at most 125 payload bytes and are never fragmented. */
export const MAX_CONTROL_PAYLOAD = 125;

/** Default largest message the client accepts (1009 "message too big" beyond it). */
export const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;

export function isControl(opcode: number): boolean {
  return (opcode & 0x8) !== 0;
}

export function opcodeName(opcode: number): string {
  switch (opcode) {
    case OP_CONTINUATION: return "continuation";
    case OP_TEXT: return "text";
    case OP_BINARY: return "binary";
    case OP_CLOSE: return "close";
    case OP_PING: return "ping";
    case OP_PONG: return "pong";
    default: return `reserved opcode 0x${opcode.toString(16)}`;
  }
}
