// Half-sent upgrade requests against ONE worker (issue #15, defect 4): `serve --workers 1
// --handshake-timeout T`, and an attacker process that holds N sockets on it, each sending half a request
// (request line and one header, never the blank line) and opened again as soon as the server drops it, for
// a bounded time. Meanwhile real clients upgrade (raw sockets, one at a time per slot, closed after the 101).
// Prints how long the server held the attacker's sockets (connect to close, from the attacker's side), the
// worker's peak descriptors against its open-files limit, and the real clients' upgrade times with and
// without the attack. Ratio: real clients' p99 upgrade time under attack over without (target: near 1).
// Figures go to docs/RELIABILITY.md, "Handshake limits".
// Usage: bun bench/serve-slowloris.ts [half-sent sockets=10000] [timeout s=2] [attack s=15] [real upgrades=2000]
import type { Socket } from "bun";
import { statSync } from "node:fs";
import { listenQueues } from "../src/server/listen-queues.ts";
import type { ClusterStats } from "../src/server/stats.ts";
import { finish } from "./load-lib.ts";
import { loadAverage, startWsmillion } from "./serve-lib.ts";

const HALF = Number(process.argv[2] ?? 10_000);
const TIMEOUT_S = Number(process.argv[3] ?? 2);
const ATTACK_S = Number(process.argv[4] ?? 15);
const REAL = Number(process.argv[5] ?? 2000);
const REAL_CONCURRENCY = 20;
const UPGRADE = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/**
 * The attacker, in its own process: keeps N half-sent sockets open until told to stop, then reports how long
 * the server held each one it dropped. Connects 500 at a time, so the ramp itself is not a SYN flood.
 */
const ATTACKER = `
const [port, n] = process.argv.slice(1).map(Number);
const HALF = "GET /ws HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n";
let open = 0, peak = 0, opened = 0, dropped = 0, failed = 0, inFlight = 0, running = true;
const held = [];
const handlers = {
  open(s) { inFlight--; s.data = performance.now(); s.write(HALF); open++; opened++; peak = Math.max(peak, open); top(); },
  data() {},
  end(s) { s.end(); },
  close(s) { if (s.data === undefined) return; open--; if (running) { dropped++; held.push(performance.now() - s.data); top(); } },
  connectError() { inFlight--; failed++; top(); },
  error() {},
};
const live = new Set();
function top() {
  while (running && open + inFlight < n && inFlight < 500) {
    inFlight++;
    Bun.connect({ hostname: "127.0.0.1", port, socket: handlers }).then((s) => live.add(s), () => {});
  }
}
top();
const started = performance.now();
const full = setInterval(() => { if (open >= n) { clearInterval(full); process.send({ t: "full", ms: performance.now() - started }); } }, 50);
process.on("message", () => {
  running = false;
  for (const s of live) s.terminate();
  held.sort((a, b) => a - b);
  const q = (p) => held.length ? Math.round(held[Math.min(held.length - 1, Math.floor(p * held.length))]) : 0;
  process.send({ t: "done", opened, dropped, failed, peak, heldMs: { min: Math.round(held[0] ?? 0), p50: q(0.5), p99: q(0.99), max: Math.round(held.at(-1) ?? 0) } });
  setTimeout(() => process.exit(0), 100);
});
`;

interface AttackReport {
  opened: number;
  dropped: number;
  failed: number;
  peak: number;
  heldMs: { min: number; p50: number; p99: number; max: number };
}

/** REAL upgrades, REAL_CONCURRENCY at a time; each socket closed once its 101 arrived. Upgrade times in ms, sorted. */
async function realUpgrades(port: number): Promise<number[]> {
  const times: number[] = [];
  let next = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      let head = "";
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open(s: Socket) {
            s.write(UPGRADE);
          },
          data(s: Socket, d: Buffer) {
            head += d.toString("latin1");
            if (!head.includes("\r\n\r\n")) return;
            if (head.startsWith("HTTP/1.1 101")) times.push(performance.now() - t0);
            s.terminate();
          },
          close() {
            resolve();
          },
          connectError() {
            resolve();
          },
        },
      }).catch(() => resolve());
    });
  const lane = async (): Promise<void> => {
    while (next++ < REAL) await one();
  };
  await Promise.all(Array.from({ length: REAL_CONCURRENCY }, lane));
  return times.sort((a, b) => a - b);
}

const pct = (xs: number[], p: number): number => Math.round(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]! * 100) / 100;
const summary = (xs: number[]) => ({ ok: xs.length, p50: pct(xs, 0.5), p99: pct(xs, 0.99), max: pct(xs, 1) });

const server = await startWsmillion(["--workers", "1", "--handshake-timeout", String(TIMEOUT_S), "--mode", "sink", "--ping-interval", "0", "--idle-timeout", "0"]);
const worker = server.pid;
const limit = Number(/^Max open files\s+(\d+)/m.exec(await Bun.file(`/proc/${worker}/limits`).text())?.[1] ?? 0);
// The worker's descriptors, and its accept queue: a socket the worker is too busy to accept waits there,
// holding no descriptor of the worker's but counted in the attacker's time from connect to close.
let peakFds = 0;
let peakQueue = 0;
const fdSampler = setInterval(() => {
  peakFds = Math.max(peakFds, statSync(`/proc/${worker}/fd`).size);
  for (const q of listenQueues(server.port).values()) peakQueue = Math.max(peakQueue, q);
}, 100);
try {
  await realUpgrades(server.port); // warm-up
  const without = await realUpgrades(server.port);
  let full!: (ms: number) => void;
  let done!: (r: AttackReport) => void;
  const isFull = new Promise<number>((r) => (full = r));
  const finished = new Promise<AttackReport>((r) => (done = r));
  const attacker = Bun.spawn([process.execPath, "-e", ATTACKER, String(server.port), String(HALF)], {
    stdio: ["ignore", "inherit", "inherit"],
    ipc: (m: ({ t: "full"; ms: number }) | ({ t: "done" } & AttackReport)) => (m.t === "full" ? full(m.ms) : done(m)),
  });
  const killer = setTimeout(() => attacker.kill("SIGKILL"), (ATTACK_S + 60) * 1000);
  const rampMs = await Promise.race([isFull, Bun.sleep(ATTACK_S * 1000).then(() => -1)]);
  const during = await realUpgrades(server.port);
  await Bun.sleep(Math.max(0, ATTACK_S * 1000 - rampMs - 1000));
  attacker.send("stop");
  const attack = await finished;
  await attacker.exited;
  clearTimeout(killer);
  const s = (await (await fetch(`http://127.0.0.1:${server.port}/stats`)).json()) as ClusterStats;
  const figures = {
    halfSent: HALF,
    handshakeTimeoutS: TIMEOUT_S,
    attackSeconds: ATTACK_S,
    attackerFullAfterMs: rampMs,
    attack,
    serverDropped: s.total.handshakeTimeouts,
    workerPeakFds: peakFds,
    workerFdLimit: limit,
    peakAcceptQueue: peakQueue,
    realWithout: summary(without),
    realDuring: summary(during),
    realFailedDuring: REAL - during.length,
    loadAverage: loadAverage(),
  };
  console.log(`attacker: ${HALF} half-sent sockets held ${rampMs >= 0 ? `from ${Math.round(rampMs)} ms` : "never all at once"}; ${attack.opened} opened, ${attack.dropped} dropped by the server after ${attack.heldMs.min}/${attack.heldMs.p50}/${attack.heldMs.p99}/${attack.heldMs.max} ms (min/p50/p99/max)`);
  console.log(`worker: peak ${peakFds} descriptors of ${limit}, accept queue peak ${peakQueue}; ${figures.serverDropped} sockets shut down by the handshake guard`);
  console.log(`real upgrades: without ${JSON.stringify(figures.realWithout)} ms; during ${JSON.stringify(figures.realDuring)} ms, ${figures.realFailedDuring} failed`);
  finish("serve-slowloris", figures, figures.realDuring.p99 / figures.realWithout.p99);
} finally {
  clearInterval(fdSampler);
  await server.stop();
}
