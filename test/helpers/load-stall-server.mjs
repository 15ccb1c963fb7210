// Test peer: a WebSocket server (raw node:net) that upgrades each connection, then stops reading, so the
// client's sends back up, and ends it while the client has a frame half written:
//   close   sends close 1001 (the server goes away), resumes reading after a while;
//   masked  sends a masked frame (a protocol violation the client must fail with 1002), resumes after a while;
//   reset   resets the connection (RST) after STALL_MS, no close frame;
//   eof     ends TCP (FIN) after STALL_MS, no close frame.
// When the client ends TCP it parses every byte it received as client frames and prints one JSON line:
//   {"frames":N,"last":{"opcode":8,"code":1001},"trailing":0,"bad":null}
// "trailing" is bytes after the last whole frame; "bad" names the first frame that does not parse.
import net from "node:net";
import { createHash } from "node:crypto";

const mode = process.argv[2] ?? "close";
const RESUME_MS = Number(process.argv[3] ?? 800);
const STALL_MS = Number(process.argv[4] ?? 600);

function parseFrames(buf) {
  let off = 0, frames = 0, last = null, bad = null;
  while (off + 2 <= buf.length) {
    const b0 = buf[off], b1 = buf[off + 1];
    const opcode = b0 & 0x0f;
    if ((b1 & 0x80) === 0) { bad = `frame ${frames} not masked`; break; }
    if (![0, 1, 2, 8, 9, 10].includes(opcode) || (b0 & 0x70) !== 0) { bad = `frame ${frames} has opcode ${opcode} / rsv ${(b0 >> 4) & 7}`; break; }
    let len = b1 & 0x7f, h = 2;
    if (len === 126) { if (off + 4 > buf.length) break; len = buf.readUInt16BE(off + 2); h = 4; }
    else if (len === 127) { if (off + 10 > buf.length) break; len = Number(buf.readBigUInt64BE(off + 2)); h = 10; }
    if (off + h + 4 + len > buf.length) break;
    const mask = buf.subarray(off + h, off + h + 4);
    const payload = Buffer.from(buf.subarray(off + h + 4, off + h + 4 + len));
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    last = { opcode, code: opcode === 8 && payload.length >= 2 ? payload.readUInt16BE(0) : null };
    frames++;
    off += h + 4 + len;
  }
  return { frames, last, trailing: buf.length - off, bad };
}

const server = net.createServer((sock) => {
  let head = Buffer.alloc(0);
  let upgraded = false;
  const chunks = [];
  sock.on("data", (d) => {
    if (upgraded) { chunks.push(d); return; }
    head = Buffer.concat([head, d]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) return;
    upgraded = true;
    if (head.length > end + 4) chunks.push(head.subarray(end + 4));
    const key = /sec-websocket-key:\s*(\S+)/i.exec(head.toString())[1];
    const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    if (mode === "reset" || mode === "eof") {
      setTimeout(() => (mode === "reset" ? sock.resetAndDestroy() : sock.end()), STALL_MS);
      return;
    }
    // Let the client's sends fill both socket buffers, then misbehave while it has a frame half written.
    setTimeout(() => {
      sock.pause();
      setTimeout(() => {
        if (mode === "masked") sock.write(Buffer.from([0x82, 0x81, 1, 2, 3, 4, 5]));
        else sock.write(Buffer.from([0x88, 0x02, 0x03, 0xe9]));
        setTimeout(() => sock.resume(), RESUME_MS);
      }, STALL_MS);
    }, 100);
  });
  sock.on("error", () => {});
  sock.on("close", () => {
    process.stdout.write(JSON.stringify(parseFrames(Buffer.concat(chunks))) + "\n");
  });
});
server.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n"));
process.on("SIGTERM", () => process.exit(0));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
