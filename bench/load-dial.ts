// Dial + upgrade rate: our load client vs the `ws` client under Node, same concurrency, same server.
// Target: >= 2x the ws client.
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { NOFILE, finish, node, runScript, startServer, WS_CLIENTS } from "./load-lib.ts";
import { loopbackTargets } from "../src/system/targets.ts";

const N = Number(process.argv[2] ?? 10_000);
const C = Number(process.argv[3] ?? 200);
const HOSTS = 4;

const server = await startServer("echo");
try {
  const ours = await runLoad(completePlan({
    targets: loopbackTargets(HOSTS, server.ws), connections: N, concurrency: C, durationS: 0,
    intervalMs: 0, size: 0, mode: "idle", workers: 1,
    maxMessage: 1 << 20, statusUrl: null,
  }, NOFILE));
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
