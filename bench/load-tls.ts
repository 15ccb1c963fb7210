// Idle client RSS per connection at N connections in one process: plain ws, wss, and wss + permessage-deflate
// with and without context takeover, against a bare `Bun.connect({ tls })` client holding as many TLS
// sockets in the same run (handshake only, and after one 200-byte echo each, the least any WebSocket
// client exchanges). Target: wss <= 1.2x bare. Then what deflate's windows add once traffic filled them
// (at most 1,000 connections: 16 echoes of 4 KiB text each, so both windows are full).
// The server is Bun.serve in its own process (TLS, permessage-deflate with takeover both ways), plus a bare
// TLS echo listener for the floor. Every row runs in a fresh process: `bun bench/load-tls.ts row '<json>'`.
import type { DeflateOffer } from "../src/protocol/deflate.ts";
import { nowMs } from "../src/protocol/stamp.ts";
import { LoadWorker } from "../src/load/worker.ts";
import { completePlan, shardPlan } from "../src/load/plan.ts";
import type { WorkerToCoordinator } from "../src/load/ipc.ts";
import { loopbackTargets } from "../src/system/targets.ts";
import { makeCerts } from "../test/helpers/certs.ts";
import { NOFILE, finish, runScript } from "./load-lib.ts";

const HOSTS = 4;
const TAKEOVER: DeflateOffer = { clientNoContextTakeover: false, serverNoContextTakeover: false, clientMaxWindowBits: null, serverMaxWindowBits: null };
const NO_TAKEOVER: DeflateOffer = { ...TAKEOVER, clientNoContextTakeover: true, serverNoContextTakeover: true };

interface RowConfig {
  port: number;
  n: number;
  tls: boolean;
  deflate: DeflateOffer | null;
  /** Text echoes after the ramp, before measuring again (null: idle only). */
  traffic: { size: number; intervalMs: number; seconds: number } | null;
}

/** 16 echoes of 4 KiB per connection: 64 KiB each way, past the 32 KiB window and our 4 KiB send history. */
const FILL = { size: 4096, intervalMs: 500, seconds: 8 };
const FILL_CONNECTIONS = 1000;

const settle = async (): Promise<number> => {
  Bun.gc(true);
  await Bun.sleep(200);
  Bun.gc(true);
  return process.memoryUsage.rss();
};

/** One of our rows, in this process: the load worker in-process, RSS before it exists and after its ramp (and traffic). */
async function row(cfg: RowConfig): Promise<void> {
  const t = cfg.traffic;
  const plan = completePlan({
    targets: loopbackTargets(HOSTS, cfg.port), connections: cfg.n, concurrency: 200, durationS: t?.seconds ?? 0, workers: 1, handshakeTimeoutMs: 30_000,
    mode: t ? "echo" : "idle", intervalMs: t?.intervalMs ?? 0, size: t?.size ?? 0, payload: "text",
    tls: cfg.tls ? { insecure: true, caFile: null, serverName: null } : null, deflate: cfg.deflate, maxMessage: 1 << 20, statusUrl: null,
  }, NOFILE);
  const base = await settle();
  let ramped: () => void = () => {};
  const done = new Promise<void>((resolve) => { ramped = resolve; });
  const w = new LoadWorker(shardPlan(plan)[0]!, (m: WorkerToCoordinator) => { if (m.t === "ramped") ramped(); });
  w.start();
  await done;
  const open = w.metrics.counters.open;
  const idle = await settle();
  let after = idle;
  if (t !== null) {
    w.run(nowMs());
    await Bun.sleep(t.seconds * 1000);
    w.hold();
    await Bun.sleep(500);
    after = await settle();
  }
  const c = w.metrics.counters;
  if (c.failed > 0 || c.failedByUs > 0) console.error(JSON.stringify(w.metrics.errors), JSON.stringify(w.metrics.ourCloses), JSON.stringify(w.metrics.notes));
  console.log(JSON.stringify({ open, failed: c.failed, failedByUs: c.failedByUs, wireBytesIn: c.wireBytesIn, bytesIn: c.bytesIn, idleBytesPerConn: Math.round((idle - base) / open), afterBytesPerConn: Math.round((after - base) / open), echoes: c.msgsIn }));
  process.exit(0);
}

/** The floor: bare Bun.connect({ tls }) sockets, handshake done (and with `exchange`, one 200-byte echo each), holding nothing else. */
async function floor(cfg: { port: number; n: number; exchange: boolean }): Promise<void> {
  const base = await settle();
  let open = 0;
  let settled = 0;
  let next = 0;
  await new Promise<void>((resolve) => {
    const handlers = {
      data() { if (cfg.exchange) { open++; done(); } },
      handshake(sock: { write(b: Uint8Array): number }) { if (cfg.exchange) sock.write(new Uint8Array(200)); else { open++; done(); } },
      connectError() { done(); },
      // Counted out again if the server (or Bun) ends it: only sockets still open count.
      close() { open--; },
    };
    const done = (): void => {
      settled++;
      if (settled === cfg.n) resolve();
      else more();
    };
    const more = (): void => {
      while (next < cfg.n && next - settled < 500) {
        const i = next++;
        void Bun.connect({ hostname: `127.0.0.${1 + (i % HOSTS)}`, port: cfg.port, tls: { rejectUnauthorized: false }, socket: handlers });
      }
    };
    more();
  });
  console.log(JSON.stringify({ open, bytesPerConn: Math.round(((await settle()) - base) / open) }));
  process.exit(0);
}

const SERVER = `
const [cert, key] = process.argv.slice(1);
const tls = { cert: Bun.file(cert), key: Bun.file(key) };
const websocket = { idleTimeout: 0, maxPayloadLength: 1 << 20, perMessageDeflate: { compress: "dedicated", decompress: "dedicated" }, message(w, m) { w.send(m, true); } };
const fetch = (req, s) => (s.upgrade(req, { data: undefined }) ? undefined : new Response("", { status: 400 }));
const wss = Bun.serve({ port: 0, hostname: "0.0.0.0", idleTimeout: 0, tls, fetch, websocket });
const ws = Bun.serve({ port: 0, hostname: "0.0.0.0", idleTimeout: 0, fetch, websocket });
const bare = Bun.listen({ port: 0, hostname: "0.0.0.0", tls, socket: { data(s, d) { s.write(d); } } });
console.log(JSON.stringify({ wss: wss.port, ws: ws.port, bare: bare.port }));
`;

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 10_000);
  const certs = makeCerts();
  const proc = Bun.spawn([process.execPath, "-e", SERVER, certs.self.cert, certs.self.key], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  try {
    const reader = proc.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    const ports = JSON.parse(new TextDecoder().decode(value)) as { wss: number; ws: number; bare: number };
    const self = import.meta.path;
    const run = async (cfg: RowConfig): Promise<Record<string, number>> => {
      const r = await runScript([process.execPath, self, "row", JSON.stringify(cfg)], 180_000);
      await Bun.sleep(1000);
      return r;
    };
    const floor = async (exchange: boolean): Promise<Record<string, number>> => {
      const r = await runScript([process.execPath, self, "floor", JSON.stringify({ port: ports.bare, n, exchange })], 180_000);
      await Bun.sleep(1000);
      return r;
    };
    const bare = await floor(false);
    const bareEcho = await floor(true);
    const plain = await run({ port: ports.ws, n, tls: false, deflate: null, traffic: null });
    const wss = await run({ port: ports.wss, n, tls: true, deflate: null, traffic: null });
    const takeover = await run({ port: ports.wss, n, tls: true, deflate: TAKEOVER, traffic: null });
    const noTakeover = await run({ port: ports.wss, n, tls: true, deflate: NO_TAKEOVER, traffic: null });
    const m = Math.min(n, FILL_CONNECTIONS);
    const takeoverFull = await run({ port: ports.wss, n: m, tls: true, deflate: TAKEOVER, traffic: FILL });
    const noTakeoverFull = await run({ port: ports.wss, n: m, tls: true, deflate: NO_TAKEOVER, traffic: FILL });
    const kib = (b: number | undefined): string => `${((b ?? 0) / 1024).toFixed(2)} KiB`;
    const per = (r: Record<string, number>): number => r.idleBytesPerConn ?? 0;
    const ratio = per(wss) / bare.bytesPerConn!;
    const grown = (r: Record<string, number>): number => (r.afterBytesPerConn ?? 0) - per(r);
    console.log(`idle client RSS per connection at ${n} (one process): bare Bun.connect({tls}) ${kib(bare.bytesPerConn)}, after one echo ${kib(bareEcho.bytesPerConn)}`);
    console.log(`  plain ws ${kib(per(plain))}; wss ${kib(per(wss))}: ${ratio.toFixed(2)}x bare, ${(per(wss) / bareEcho.bytesPerConn!).toFixed(2)}x bare after one echo`);
    console.log(`  wss + deflate, idle: takeover ${kib(per(takeover))}, no takeover ${kib(per(noTakeover))}`);
    const each = (r: Record<string, number>): string => ((r.echoes ?? 0) / (r.open ?? 1)).toFixed(1);
    console.log(`  after 4 KiB text echoes (${m} connections): takeover +${kib(grown(takeoverFull))} (${each(takeoverFull)} echoes each), no takeover +${kib(grown(noTakeoverFull))} (${each(noTakeoverFull)} each)`);
    finish("load-tls", { connections: n, bare, bareEcho, plain, wss, takeover, noTakeover, fillConnections: m, takeoverFull, noTakeoverFull, targetRatio: 1.2 }, ratio);
  } finally {
    proc.kill();
    await proc.exited;
    certs.remove();
  }
}

if (process.argv[2] === "row") await row(JSON.parse(process.argv[3]!) as RowConfig);
else if (process.argv[2] === "floor") await floor(JSON.parse(process.argv[3]!) as { port: number; n: number; exchange: boolean });
else await main();
