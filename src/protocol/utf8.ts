// UTF-8 validation for text frames and close reasons (RFC 6455 §8.1: invalid UTF-8 fails the connection with 1007).
import { isUtf8 } from "node:buffer";

export function isValidUtf8(bytes: Uint8Array): boolean {
  return bytes.byteLength === 0 || isUtf8(bytes);
}
