// Client CPU per echoed 100-byte message: our load client vs the `ws` client under Node, same
// connections and offered rate, against the same Bun echo server (in its own process).
// Target: <= 0.5x the ws client.
import { runLoad } from "../src/load/coordinator.ts";
import { finish, loopbackTargets, node, startServer, WS_CLIENTS } from "./load-lib.ts";

const N = Number(process.argv[2] ?? 1000);
const INTERVAL = Number(process.argv[3] ?? 50);
const SECS = Number(process.argv[4] ?? 5);
const SIZE = 100;

const server = await startServer("echo");
try {
  const ours = await runLoad({
    targets: loopbackTargets(server.ws, 2), path: "/ws", connections: N, concurrency: 200, rate: 0, durationS: SECS, holdS: 0,
    intervalMs: INTERVAL, size: SIZE, mode: "echo", headers: [], subprotocols: [], handshakeTimeoutMs: 10_000, reconnect: false, workers: 1,
    sources: [], sourcePortBase: 0, maxMessage: 1 << 20, statusUrl: null,
  });
  const t = ours.traffic;
  // CPU per moved message (sent + received) -> per echo (one send and one receive).
  const moved = t.achievedPerSec + t.receivedPerSec;
  const oursPerEcho = t.receivedPerSec > 0 ? (ours.generator.cpuMicrosPerMessage * moved) / t.receivedPerSec : NaN;
  await Bun.sleep(1000);
  const wsEnv = await (async () => {
    const proc = Bun.spawn(node(WS_CLIENTS, String(server.ws), String(N), "200", "2"), { cwd: `${import.meta.dir}/..`, env: { ...process.env, ECHO: `${INTERVAL},${SIZE},${SECS}` }, stdout: "pipe", stderr: "inherit" });
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    return JSON.parse(out.trim().split("\n").at(-1)!) as Record<string, number>;
  })();
  const figures = {
    connections: N, intervalMs: INTERVAL, seconds: SECS, offeredPerSec: t.offeredPerSec,
    oursEchoesPerSec: t.receivedPerSec, oursCpuUsPerEcho: Math.round(oursPerEcho * 100) / 100, oursRttP99Ms: ours.latency.rtt.p99Ms,
    oursLatenessP99Ms: ours.latency.lateness.p99Ms,
    wsNodeEchoesPerSec: wsEnv.echoesPerSec, wsNodeCpuUsPerEcho: Math.round(wsEnv.cpuUsPerEcho! * 100) / 100,
  };
  console.log(`CPU per echoed ${SIZE}-byte message at ${t.offeredPerSec}/s offered: ours ${figures.oursCpuUsPerEcho} µs, ws under Node ${figures.wsNodeCpuUsPerEcho} µs`);
  finish("load-echo-cpu", figures, oursPerEcho / wsEnv.cpuUsPerEcho!);
} finally {
  await server.stop();
}
