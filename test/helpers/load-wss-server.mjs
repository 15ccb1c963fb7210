// Test oracle for wss and permessage-deflate: the `ws` package under Node (an independent RFC 6455 and
// RFC 7692 implementation), over TLS or not.
// Usage: node test/helpers/load-wss-server.mjs '<json config>'; prints {"port":N} on stdout once listening.
// Config:
//   tls: { cert, key } PEM file paths (absent: plain ws)
//   deflate: ws's perMessageDeflate options (threshold 0 unless given, so every message is compressed), or false
//   mode: "echo" (default)
//       | "corrupt": echo, but every `every`-th connection first gets a frame marked compressed whose
//         payload is not DEFLATE data
//       | "bomb": every `every`-th connection first gets one small compressed frame inflating to `bombBytes`
//   expect: a file path: every message's bytes after the 12-byte stamp must be that file repeated; counted
//         as expectOk / expectBad in /conns
// GET /conns: {"conns", "closed", "messages", "expectOk", "expectBad", "extensions" and "hosts": each connection's
//   Sec-WebSocket-Extensions offer and Host header}
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import zlib from "node:zlib";
import { WebSocketServer } from "ws";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const every = cfg.every ?? 2;
const expected = cfg.expect ? readFileSync(cfg.expect) : null;
const figures = { conns: 0, closed: 0, messages: 0, expectOk: 0, expectBad: 0, extensions: [], hosts: [] };

function handler(req, res) {
  if (req.url === "/conns") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ ...figures, conns: wss.clients.size }));
    return;
  }
  res.statusCode = 404;
  res.end();
}
const server = cfg.tls ? https.createServer({ cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) }, handler) : http.createServer(handler);
const perMessageDeflate = cfg.deflate ? { threshold: 0, ...cfg.deflate } : false;
const wss = new WebSocketServer({ server, path: "/ws", perMessageDeflate, maxPayload: 64 << 20 });

/** An unmasked server frame: FIN, RSV1 (compressed), binary. */
function compressedFrame(payload) {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0xc2, len]) : len < 65536 ? Buffer.from([0xc2, 126, len >> 8, len & 255]) : null;
  if (head === null) throw new Error("test frames stay under 64 KiB");
  return Buffer.concat([head, payload]);
}

function matchesExpected(b) {
  for (let i = 12; i < b.length; i++) if (b[i] !== expected[(i - 12) % expected.length]) return false;
  return true;
}

let seq = 0;
wss.on("connection", (ws, req) => {
  const n = seq++;
  figures.extensions.push(req.headers["sec-websocket-extensions"] ?? null);
  figures.hosts.push(req.headers.host);
  ws.on("close", () => figures.closed++);
  if (cfg.mode === "corrupt" && n % every === 0) {
    // BTYPE 11 is reserved: no DEFLATE decoder accepts it.
    ws._socket.write(compressedFrame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00])));
  }
  if (cfg.mode === "bomb" && n % every === 0) {
    const z = zlib.deflateRawSync(Buffer.alloc(cfg.bombBytes), { finishFlush: zlib.constants.Z_SYNC_FLUSH, level: 9 });
    ws._socket.write(compressedFrame(z.subarray(0, z.length - 4)));
  }
  ws.on("message", (data, isBinary) => {
    figures.messages++;
    if (expected) {
      if (matchesExpected(data)) figures.expectOk++;
      else figures.expectBad++;
    }
    ws.send(data, { binary: isBinary });
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.on("SIGTERM", () => process.exit(0));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
