// Shared pieces of the load benchmarks: a Bun server child (WebSocket echo/sink plus a bare TCP listener),
// Node scripts driving the `ws` client as the baseline, and the final JSON line.
import type { Socket, Subprocess } from "bun";
import { join } from "node:path";
import { workerNofile } from "../src/system/capacity.ts";
import { readLimits } from "../src/system/limits.ts";

export const ROOT = join(import.meta.dir, "..");
/** The open-files limit a load worker runs with here (sizes plans as the CLI would). */
export const NOFILE = workerNofile(readLimits());

export interface ServerChild {
  ws: number;
  tcp: number;
  proc: Subprocess;
  stop(): Promise<void>;
}

const SERVER = `
const mode = process.argv[1] ?? "echo";
const ws = Bun.serve({ port: 0, hostname: "0.0.0.0", idleTimeout: 0,
  fetch(req, s) { return s.upgrade(req, { data: undefined }) ? undefined : new Response("", { status: 400 }); },
  websocket: { idleTimeout: 0, maxPayloadLength: 1 << 20, message(w, m) { if (mode === "echo") w.send(m); } } });
const tcp = Bun.listen({ port: 0, hostname: "0.0.0.0", socket: { data() {} } });
console.log(JSON.stringify({ ws: ws.port, tcp: tcp.port }));
`;

/** A Bun server in its own process (so its CPU and memory are not the client's). */
export async function startServer(mode: "echo" | "sink" = "echo"): Promise<ServerChild> {
  const proc = Bun.spawn([process.execPath, "-e", SERVER, mode], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const { ws, tcp } = JSON.parse(new TextDecoder().decode(value)) as { ws: number; tcp: number };
  return { ws, tcp, proc, async stop() { proc.kill(); await proc.exited; } };
}

/** Runs a script (Node by default) that prints one JSON line of figures last. */
export async function runScript(cmd: string[], timeoutMs = 60_000): Promise<Record<string, number>> {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const out = await new Response(proc.stdout).text();
  clearTimeout(timer);
  await proc.exited;
  const last = out.trim().split("\n").at(-1) ?? "{}";
  return JSON.parse(last) as Record<string, number>;
}

export function node(script: string, ...args: string[]): string[] {
  return ["node", "--expose-gc", "--input-type=module", "-e", script, ...args];
}

/** `ws` clients under Node: opens N with at most C dialing, then runs `phase` and prints figures. */
export const WS_CLIENTS = `
import WebSocket from "ws";
const [port, n, conc, hosts] = process.argv.slice(1).map(Number);
const sockets = [];
global.gc(); await new Promise(r => setTimeout(r, 100)); global.gc();
const base = process.memoryUsage().rss;
let next = 0, open = 0, failed = 0;
const t0 = performance.now();
await new Promise((resolve) => {
  const dial = () => {
    if (next >= n) return;
    const i = next++;
    const w = new WebSocket("ws://127.0.0." + (1 + (i % hosts)) + ":" + port + "/ws");
    sockets.push(w);
    w.on("open", () => { open++; if (open + failed === n) resolve(); else dial(); });
    w.on("error", () => { failed++; if (open + failed === n) resolve(); else dial(); });
  };
  for (let k = 0; k < conc; k++) dial();
});
const dialMs = performance.now() - t0;
global.gc(); await new Promise(r => setTimeout(r, 200)); global.gc();
const rss = process.memoryUsage().rss;
const out = { open, failed, dialsPerSec: Math.round(open / (dialMs / 1000)), rssPerConn: Math.round((rss - base) / open) };
const [interval, size, secs] = (process.env.ECHO ?? "0,0,0").split(",").map(Number);
if (interval > 0) {
  let echoes = 0;
  for (const w of sockets) w.on("message", () => { echoes++; });
  const payload = Buffer.alloc(size, 120);
  const timers = [];
  const c0 = process.cpuUsage(); const w0 = performance.now();
  sockets.forEach((w, i) => { setTimeout(() => timers.push(setInterval(() => { payload.writeDoubleLE(performance.timeOrigin + performance.now(), 0); w.send(payload); }, interval)), (i / sockets.length) * interval); });
  await new Promise(r => setTimeout(r, secs * 1000));
  const c = process.cpuUsage(c0); const wall = (performance.now() - w0) / 1000;
  for (const t of timers) clearInterval(t);
  Object.assign(out, { echoes, echoesPerSec: Math.round(echoes / wall), cpuUsPerEcho: (c.user + c.system) / echoes });
}
for (const w of sockets) w.terminate();
console.log(JSON.stringify(out));
process.exit(0);
`;

/**
 * The floor for one write per message: raw Bun sockets to the bare TCP sink, pre-built 106-byte frames
 * written round-robin (one write each) as fast as the process can, for `secs`. What any client that
 * writes each message on its own could reach with `n` sockets on this box.
 */
export async function rawWriteFloor(tcpPort: number, n: number, secs: number): Promise<{ writesPerSec: number; cpuUsPerWrite: number }> {
  const socks: Socket[] = [];
  await new Promise<void>((resolve, reject) => {
    for (let i = 0; i < n; i++) {
      void Bun.connect({ hostname: `127.0.0.${1 + (i % 2)}`, port: tcpPort, socket: {
        open(s) { socks.push(s); if (socks.length === n) resolve(); },
        data() {},
        connectError(_s, err) { reject(err); },
      } });
    }
  });
  const frame = new Uint8Array(106).fill(0x78);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let writes = 0;
  while (performance.now() - t0 < secs * 1000) {
    for (let i = 0; i < 1000; i++) socks[writes++ % n]!.write(frame);
    await new Promise((r) => setImmediate(r));
  }
  const c = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / 1000;
  for (const s of socks) s.terminate();
  return { writesPerSec: Math.round(writes / wall), cpuUsPerWrite: Math.round(((c.user + c.system) / writes) * 100) / 100 };
}

/**
 * The floor for echo traffic from Bun: `n` raw sockets, upgraded with a fixed request, each sending one
 * pre-masked 100-byte frame every `intervalMs` (one sweep, round-robin, one write per frame) and counting
 * echoed bytes without parsing them. What any Bun client pays per echo in this shape, mostly kernel time.
 */
export async function rawEchoFloor(wsPort: number, n: number, intervalMs: number, secs: number): Promise<{ echoesPerSec: number; cpuUsPerEcho: number }> {
  const FRAME_IN = 2 + 100; // the server's unmasked reply
  let received = 0;
  let upgraded = 0;
  const socks: Socket<{ open: boolean }>[] = [];
  const req = `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${wsPort}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  await new Promise<void>((resolve, reject) => {
    for (let i = 0; i < n; i++) {
      void Bun.connect<{ open: boolean }>({ hostname: `127.0.0.${1 + (i % 2)}`, port: wsPort, data: { open: false }, socket: {
        open(s) { s.write(req); },
        data(s, d) {
          if (s.data.open) { received += d.byteLength; return; }
          // The 101 response arrives alone: nothing is sent before it.
          s.data.open = true;
          socks.push(s);
          if (++upgraded === n) resolve();
        },
        connectError(_s, err) { reject(err); },
      } });
    }
  });
  const frame = new Uint8Array(6 + 100);
  frame[0] = 0x82; frame[1] = 0x80 | 100; // FIN + binary, masked, 100 bytes; mask 0 keeps the payload as is
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r0 = received;
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      const due = Math.floor(((now - t0) / intervalMs) * n);
      while (sent < due) socks[sent++ % n]!.write(frame);
      if (now - t0 >= secs * 1000) { clearInterval(timer); resolve(); }
    }, 1);
  });
  const c = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / 1000;
  const echoes = (received - r0) / FRAME_IN;
  for (const s of socks) s.terminate();
  return { echoesPerSec: Math.round(echoes / wall), cpuUsPerEcho: Math.round(((c.user + c.system) / echoes) * 100) / 100 };
}

export function finish(bench: string, figures: Record<string, unknown>, ratio: number): void {
  console.log(JSON.stringify({ bench, figures, ratio: Math.round(ratio * 1000) / 1000 }));
}

