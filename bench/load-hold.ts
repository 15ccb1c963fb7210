// Connections held against `wsmillion serve` with zero failures (target: >= 200,000). Heavy at full
// scale (about 3 GB of RAM, a minute of ramp on 2 cores): `bun bench/load-hold.ts 200000`; default 20,000.
// Ratio: connections held / connections asked (1 meets the plan).
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { NOFILE, finish } from "./load-lib.ts";
import { loopbackTargets } from "../src/system/targets.ts";
import { join } from "node:path";
import { pairsFor } from "../src/system/capacity.ts";
import { readLimits } from "../src/system/limits.ts";

const N = Number(process.argv[2] ?? 20_000);
// As the demo spreads: no destination pair more than a fifth full (connect() slows as a pair fills).
const HOSTS = Math.max(2, pairsFor(N, readLimits()));
const serverWorkers = Math.max(1, Math.ceil(N / 18_000));
const proc = Bun.spawn([process.execPath, join(import.meta.dir, "..", "src", "cli.ts"), "serve", "--port", "0", "--host", "0.0.0.0", "--mode", "echo", "--workers", String(serverWorkers)], { stdout: "pipe", stderr: "inherit" });
let port = 0;
{
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = Date.now() + 30_000;
  while (!port && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    const m = /listening on [^:]+:(\d+)/.exec(text);
    if (m) port = Number(m[1]);
  }
  // Keep draining so the server never blocks on a full pipe.
  void (async () => { for (;;) { const { done } = await reader.read(); if (done) break; } })();
}
try {
  if (!port) throw new Error("wsmillion serve did not start");
  const r = await runLoad(completePlan({
    targets: loopbackTargets(HOSTS, port), connections: N, concurrency: 1000, durationS: 5,
    intervalMs: 0, size: 0, mode: "idle", handshakeTimeoutMs: 30_000,
    workers: Math.ceil(N / 19_000), maxMessage: 1 << 20, statusUrl: `http://127.0.0.1:${port}/conns`,
  }, NOFILE));
  const figures = {
    connections: N, openAtRamp: r.connections.openAtRamp, openAtEnd: r.connections.openAtEnd, failed: r.connections.failed,
    dropped: r.connections.dropped, rampSeconds: r.connections.rampSeconds, dialsPerSec: r.connections.dialsPerSecond,
    serverConns: r.server.atEnd?.conns ?? null, clientRssPerConn: r.generator.rssPerConnectionBytes, workers: r.workers.length,
  };
  console.log(`held ${r.connections.openAtEnd} of ${N} against wsmillion serve (${r.connections.failed} failed, ${r.connections.dropped} dropped), ramp ${r.connections.rampSeconds}s`);
  finish("load-hold", figures, r.connections.openAtEnd / N);
} finally {
  proc.kill();
  await proc.exited;
}
