// Scheduler lateness at 100,000 messages/s offered by ONE load worker (send mode, into a sink server in its
// own process). Target: p99 send lateness < 10 ms. Ratio: p99 / 10 ms (below 1 meets the target).
import { runLoad } from "../src/load/coordinator.ts";
import { finish, loopbackTargets, startServer } from "./load-lib.ts";

const N = Number(process.argv[2] ?? 10_000);
const INTERVAL = Number(process.argv[3] ?? 100);
const SECS = Number(process.argv[4] ?? 5);

const server = await startServer("sink");
try {
  const r = await runLoad({
    targets: loopbackTargets(server.ws, 2), path: "/ws", connections: N, concurrency: 500, rate: 0, durationS: SECS, holdS: 0,
    intervalMs: INTERVAL, size: 100, mode: "send", headers: [], subprotocols: [], handshakeTimeoutMs: 10_000, reconnect: false, workers: 1,
    sources: [], sourcePortBase: 0, maxMessage: 1 << 20, statusUrl: null,
  });
  const l = r.latency.lateness;
  const figures = {
    connections: N, intervalMs: INTERVAL, offeredPerSec: r.traffic.offeredPerSec, achievedPerSec: r.traffic.achievedPerSec,
    latenessP50Ms: l.p50Ms, latenessP99Ms: l.p99Ms, latenessMaxMs: l.maxMs, loopLagP99Ms: r.workers[0]!.loopLagP99Ms,
    cpuUsPerMessage: r.generator.cpuMicrosPerMessage, skipped: r.traffic.skippedBackpressure,
  };
  console.log(`send lateness at ${r.traffic.offeredPerSec} msg/s offered by one worker: p50 ${l.p50Ms} ms, p99 ${l.p99Ms} ms, max ${l.maxMs} ms; achieved ${r.traffic.achievedPerSec}/s`);
  finish("load-lateness", figures, l.p99Ms / 10);
} finally {
  await server.stop();
}
