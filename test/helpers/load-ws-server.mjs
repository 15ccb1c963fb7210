// Test oracle: a `ws` package server run under Node (an independent RFC 6455 implementation).
// Usage: node test/helpers/load-ws-server.mjs <mode> [arg]; prints {"port":N} on stdout once listening.
// Modes: echo | push <ms> (stamped 64-byte pushes) | close <code> (close right after open) | ping (ping every
// 50 ms, echo too) | fragment (echo each message back as 3 fragments with a ping between).
import { WebSocketServer } from "ws";
import http from "node:http";

const [mode = "echo", arg = "0"] = process.argv.slice(2);
let closed = 0;
const server = http.createServer((req, res) => {
  if (req.url === "/conns") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ closed, conns: wss.clients.size }));
    return;
  }
  res.statusCode = 404;
  res.end();
});
const wss = new WebSocketServer({ server, path: "/ws" });
let seq = 0;
wss.on("connection", (ws) => {
  ws.on("close", () => closed++);
  if (mode === "close") {
    ws.close(Number(arg), "bye");
    return;
  }
  if (mode === "fragment") {
    ws.on("message", (data, isBinary) => {
      const b = Buffer.from(data);
      const third = Math.max(1, Math.floor(b.length / 3));
      ws.send(b.subarray(0, third), { binary: isBinary, fin: false });
      ws.ping();
      ws.send(b.subarray(third, 2 * third), { binary: isBinary, fin: false });
      ws.send(b.subarray(2 * third), { binary: isBinary, fin: true });
    });
    return;
  }
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
if (mode === "push") {
  const every = Number(arg) || 100;
  setInterval(() => {
    for (const ws of wss.clients) {
      const b = Buffer.alloc(64);
      b.writeDoubleLE(performance.timeOrigin + performance.now(), 0);
      b.writeUInt32LE(seq++ >>> 0, 8);
      ws.send(b);
    }
  }, every);
}
if (mode === "ping") {
  setInterval(() => {
    for (const ws of wss.clients) ws.ping(Buffer.from("hi"));
  }, 50);
}
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.on("SIGTERM", () => process.exit(0));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
