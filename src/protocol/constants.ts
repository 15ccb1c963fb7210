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
