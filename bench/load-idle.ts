// Idle RSS per client connection at 19,000 connections in one load worker, against the floor (bare
// Bun.connect sockets) and the `ws` client under Node. Target: <= 2.0 KB per connection.
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { NOFILE, finish, node, runScript, startServer, WS_CLIENTS } from "./load-lib.ts";
import { loopbackTargets } from "../src/system/targets.ts";

const N = Number(process.argv[2] ?? 19_000);
const HOSTS = 4;

const FLOOR = `
const [port, n, hosts] = process.argv.slice(1).map(Number);
Bun.gc(true); await Bun.sleep(100); Bun.gc(true);
const base = process.memoryUsage.rss();
const h = { data() {}, open() {}, close() {}, connectError() {} };
let open = 0, pending = 0, next = 0;
await new Promise((resolve) => {
  const more = () => { while (pending < 500 && next < n) { const i = next++; pending++;
    Bun.connect({ hostname: "127.0.0." + (1 + (i % hosts)), port, socket: h }).then(() => { open++; }, () => {}).finally(() => { pending--; if (next >= n && pending === 0) resolve(); else more(); }); } };
  more();
});
Bun.gc(true); await Bun.sleep(200); Bun.gc(true);
console.log(JSON.stringify({ open, rssPerConn: Math.round((process.memoryUsage.rss() - base) / open) }));
process.exit(0);
`;

const server = await startServer("echo");
try {
  const plan = completePlan({
    targets: loopbackTargets(HOSTS, server.ws), connections: N, concurrency: 500, durationS: 1,
    intervalMs: 0, size: 0, mode: "idle", workers: 1,
    maxMessage: 1 << 20, statusUrl: null,
  }, NOFILE);
  const ours = await runLoad(plan);
  const w = ours.workers[0]!;
  await Bun.sleep(1000);
  const floor = await runScript([process.execPath, "-e", FLOOR, String(server.tcp), String(N), String(HOSTS)]);
  await Bun.sleep(1000);
  const ws = await runScript(node(WS_CLIENTS, String(server.ws), String(N), "500", String(HOSTS)));
  const figures = {
    connections: N,
    oursOpen: ours.connections.openAtRamp,
    oursBytesPerConn: w.rssPerConnectionBytes,
    floorBytesPerConn: floor.rssPerConn,
    wsNodeBytesPerConn: ws.rssPerConn,
    targetBytes: 2048,
  };
  console.log(`idle RSS per connection at ${N}: ours ${(w.rssPerConnectionBytes / 1024).toFixed(2)} KiB, bare Bun.connect ${(floor.rssPerConn! / 1024).toFixed(2)} KiB, ws under Node ${(ws.rssPerConn! / 1024).toFixed(2)} KiB`);
  finish("load-idle", figures, w.rssPerConnectionBytes / ws.rssPerConn!);
} finally {
  await server.stop();
}
