// Client CPU per echoed message with permessage-deflate (context takeover both ways), 100 B and 1,000 B of
// JSON-like text: our load client vs the `ws` client under Node with perMessageDeflate, same connections,
// same offered rate, same text, against the same Bun server (its own process, compressing its echoes).
// Target: <= 0.5x the ws client.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runLoad } from "../src/load/coordinator.ts";
import { textPool } from "../src/load/payload.ts";
import { completePlan } from "../src/load/plan.ts";
import { loopbackTargets } from "../src/system/targets.ts";
import { NOFILE, finish, node, runScript } from "./load-lib.ts";

const SECS = Number(process.argv[2] ?? 5);
const CONNS = 200;
const INTERVAL_MS = 100;

const SERVER = `
const s = Bun.serve({ port: 0, hostname: "0.0.0.0", idleTimeout: 0,
  fetch(req, srv) { return srv.upgrade(req, { data: undefined }) ? undefined : new Response("", { status: 400 }); },
  websocket: { idleTimeout: 0, perMessageDeflate: { compress: "dedicated", decompress: "dedicated" }, message(w, m) { w.send(m, true); } } });
console.log(JSON.stringify({ port: s.port }));
`;

/** The ws client: N connections offering permessage-deflate, each sending the pool's next stretch (stamp first) every interval. */
const WS_DEFLATE = `
import WebSocket from "ws";
import { readFileSync } from "node:fs";
const [port, n, interval, size, secs] = process.argv.slice(1).map(Number);
const pool = readFileSync(process.argv[6]);
const sockets = [];
await new Promise((resolve) => {
  let settled = 0;
  for (let i = 0; i < n; i++) {
    const w = new WebSocket("ws://127.0.0." + (1 + (i % 2)) + ":" + port + "/ws", { perMessageDeflate: true });
    sockets.push(w);
    const done = () => { if (++settled === n) resolve(); };
    w.on("open", done);
    w.on("error", done);
  }
});
const open = sockets.filter((w) => w.readyState === WebSocket.OPEN);
let echoes = 0;
for (const w of open) w.on("message", () => { echoes++; });
let at = 0;
const next = () => {
  const b = Buffer.alloc(size);
  b.writeDoubleLE(performance.timeOrigin + performance.now(), 0);
  for (let o = 12; o < size; o++) { b[o] = pool[at]; at = (at + 1) % pool.length; }
  return b;
};
const timers = [];
const c0 = process.cpuUsage(); const w0 = performance.now();
open.forEach((w, i) => { setTimeout(() => timers.push(setInterval(() => w.send(next()), interval)), (i / open.length) * interval); });
await new Promise((r) => setTimeout(r, secs * 1000));
const c = process.cpuUsage(c0); const wall = (performance.now() - w0) / 1000;
for (const t of timers) clearInterval(t);
console.log(JSON.stringify({ open: open.length, extensions: open[0]?.extensions ?? "", echoes, echoesPerSec: Math.round(echoes / wall), cpuUsPerEcho: (c.user + c.system) / echoes }));
for (const w of sockets) w.terminate();
process.exit(0);
`;

const dir = mkdtempSync(join(tmpdir(), "wsm-bench-"));
const poolFile = join(dir, "pool.txt");
writeFileSync(poolFile, textPool());
const proc = Bun.spawn([process.execPath, "-e", SERVER], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
try {
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const { port } = JSON.parse(new TextDecoder().decode(value)) as { port: number };
  const sizes: Record<string, unknown> = {};
  let worst = 0;
  for (const size of [100, 1000]) {
    const ours = await runLoad(completePlan({
      targets: loopbackTargets(2, port), connections: CONNS, concurrency: 200, durationS: SECS, intervalMs: INTERVAL_MS, size, mode: "echo", workers: 1,
      payload: "text", deflate: { clientNoContextTakeover: false, serverNoContextTakeover: false, clientMaxWindowBits: null, serverMaxWindowBits: null },
      maxMessage: 1 << 20, statusUrl: null,
    }, NOFILE));
    const t = ours.traffic;
    // CPU per moved message (sent + received) -> per echo (one send and one receive).
    const oursPerEcho = t.receivedPerSec > 0 ? (ours.generator.cpuMicrosPerMessage * (t.achievedPerSec + t.receivedPerSec)) / t.receivedPerSec : NaN;
    await Bun.sleep(1000);
    const ws = await runScript(node(WS_DEFLATE, String(port), String(CONNS), String(INTERVAL_MS), String(size), String(SECS), poolFile), 120_000);
    await Bun.sleep(1000);
    const ratio = oursPerEcho / ws.cpuUsPerEcho!;
    worst = Math.max(worst, ratio);
    sizes[String(size)] = {
      oursEchoesPerSec: t.receivedPerSec, oursCpuUsPerEcho: Math.round(oursPerEcho * 10) / 10, oursAnswer: ours.deflate?.answers[0]?.response ?? null,
      oursPayloadPerWireOut: Math.round((t.bytesOut / t.wireBytesOut) * 100) / 100, oursRttP99Ms: ours.latency.rtt.p99Ms,
      wsEchoesPerSec: ws.echoesPerSec, wsCpuUsPerEcho: Math.round(ws.cpuUsPerEcho! * 10) / 10, ratio: Math.round(ratio * 100) / 100,
    };
    console.log(
      `${CONNS} connections every ${INTERVAL_MS} ms, ${size} B text, deflate with takeover: CPU per echo ours ${oursPerEcho.toFixed(1)} µs (${t.receivedPerSec}/s, ` +
        `${(t.bytesOut / t.wireBytesOut).toFixed(2)}x payload/wire), ws under Node ${ws.cpuUsPerEcho!.toFixed(1)} µs (${ws.echoesPerSec}/s): ${ratio.toFixed(2)}x`,
    );
  }
  finish("load-deflate-cpu", { connections: CONNS, intervalMs: INTERVAL_MS, seconds: SECS, sizes }, worst);
} finally {
  proc.kill();
  await proc.exited;
  rmSync(dir, { recursive: true, force: true });
}
