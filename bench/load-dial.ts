// Dial + upgrade rate: our load client vs the `ws` client under Node, same concurrency, same server.
// Target: >= 2x the ws client.
import { runLoad } from "../src/load/coordinator.ts";
import { finish, loopbackTargets, node, runScript, startServer, WS_CLIENTS } from "./load-lib.ts";

const N = Number(process.argv[2] ?? 10_000);
const C = Number(process.argv[3] ?? 200);
const HOSTS = 4;

const server = await startServer("echo");
try {
  const ours = await runLoad({
    targets: loopbackTargets(server.ws, HOSTS), path: "/ws", connections: N, concurrency: C, rate: 0, durationS: 0, holdS: 0,
    intervalMs: 0, size: 0, mode: "idle", headers: [], subprotocols: [], handshakeTimeoutMs: 10_000, reconnect: false, workers: 1,
    sources: [], sourcePortBase: 0, maxMessage: 1 << 20, statusUrl: null,
  });
  await Bun.sleep(1000);
  const ws = await runScript(node(WS_CLIENTS, String(server.ws), String(N), String(C), String(HOSTS)));
  const figures = {
    connections: N, concurrency: C,
    oursDialsPerSec: ours.connections.dialsPerSecond, oursFailed: ours.connections.failed,
    oursHandshakeP99Ms: ours.latency.handshake.p99Ms,
    wsNodeDialsPerSec: ws.dialsPerSec, wsNodeFailed: ws.failed,
  };
  console.log(`dial+upgrade, ${N} connections at concurrency ${C}: ours ${ours.connections.dialsPerSecond}/s, ws under Node ${ws.dialsPerSec}/s`);
  finish("load-dial", figures, ours.connections.dialsPerSecond / ws.dialsPerSec!);
} finally {
  await server.stop();
}
