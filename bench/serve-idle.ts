// Idle RSS per server connection, 19,000 connections in ONE worker (`wsmillion serve --workers 1`, default
// flags), against a bare Bun.serve echo server and the `ws` server under Node. The connections are held by
// our load client (`wsmillion load --mode idle`, one load worker, 4 destination addresses); the figure is the
// growth of the connection-holding process's VmRSS (for wsmillion: the worker; the supervisor holds none)
// from before dialing to a few seconds after the ramp, over the connections open. No forced GC anywhere:
// the server cannot be asked for one, so neither are the baselines. Target: <= 2.0 KB per connection.
// Usage: bun bench/serve-idle.ts [connections=19000]
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { NOFILE, finish } from "./load-lib.ts";
import { loopbackTargets } from "../src/system/targets.ts";
import { kib, loadAverage, settledRss, startBareBun, startWsmillion, startWsNode, type ServerUnderTest, type WsmillionServer } from "./serve-lib.ts";

const N = Number(process.argv[2] ?? 19_000);
const HOSTS = 4;
const SETTLE_MS = 3000;

interface Idle {
  server: string;
  open: number;
  beforeBytes: number;
  afterBytes: number;
  bytesPerConn: number;
  /** wsmillion only: what /conns and /stats said while the connections were held. */
  serverConns?: number;
  statsRssBytes?: number;
}

async function measure(start: () => Promise<ServerUnderTest>): Promise<Idle> {
  const server = await start();
  try {
    await Bun.sleep(1000);
    const before = await settledRss(server.pid);
    const wsm = "stats" in server ? (server as WsmillionServer) : null;
    let held: Promise<{ after: number; conns?: number; statsRss?: number }> | null = null;
    const plan = completePlan({
      targets: loopbackTargets(HOSTS, server.port), connections: N, concurrency: 500, durationS: 7,
      intervalMs: 0, size: 0, mode: "idle", workers: 1,
      maxMessage: 1 << 20, statusUrl: null,
    }, NOFILE);
    const r = await runLoad(plan, {
      onPhase(p) {
        // The ramp is over and every connection is idle: let the server settle, then read its RSS.
        if (p === "run") {
          held = (async () => {
            await Bun.sleep(SETTLE_MS);
            const after = await settledRss(server.pid);
            if (!wsm) return { after };
            const s = await wsm.stats();
            return { after, conns: s.conns, statsRss: s.workers[0]?.rssBytes };
          })();
        }
      },
    });
    if (!held) throw new Error(`${server.name}: the load never reached its run phase`);
    const h = await (held as Promise<{ after: number; conns?: number; statsRss?: number }>);
    const open = r.connections.openAtRamp;
    const out: Idle = { server: server.name, open, beforeBytes: before, afterBytes: h.after, bytesPerConn: Math.round((h.after - before) / open) };
    if (h.conns !== undefined) out.serverConns = h.conns;
    if (h.statsRss !== undefined) out.statsRssBytes = h.statsRss;
    console.log(
      `  ${server.name.padEnd(16)} ${open} open (${r.connections.failed} failed), RSS ${(before / 2 ** 20).toFixed(1)} -> ${(h.after / 2 ** 20).toFixed(1)} MiB: ${kib(out.bytesPerConn)} KiB per connection` +
        (h.conns !== undefined ? `; /conns ${h.conns}, /stats worker rss ${((h.statsRss ?? 0) / 2 ** 20).toFixed(1)} MiB` : ""),
    );
    return out;
  } finally {
    await server.stop();
  }
}

console.log(`idle RSS per server connection, ${N} connections in one server process; load average ${loadAverage()}`);
const ours = await measure(() => startWsmillion(["--workers", "1", "--mode", "echo"]));
await Bun.sleep(1000);
const bare = await measure(startBareBun);
await Bun.sleep(1000);
const ws = await measure(startWsNode);
const figures = {
  connections: N,
  oursOpen: ours.open,
  oursServerConns: ours.serverConns ?? null,
  oursBytesPerConn: ours.bytesPerConn,
  bareBunBytesPerConn: bare.bytesPerConn,
  wsNodeBytesPerConn: ws.bytesPerConn,
  ratioVsWs: Math.round((ours.bytesPerConn / ws.bytesPerConn) * 1000) / 1000,
  targetBytes: 2048,
  runs: [ours, bare, ws],
};
console.log(
  `idle RSS per connection at ${N}: ours ${kib(ours.bytesPerConn)} KiB (target <= 2.0), bare Bun.serve ${kib(bare.bytesPerConn)} KiB, ws under Node ${kib(ws.bytesPerConn)} KiB`,
);
finish("serve-idle", figures, ours.bytesPerConn / bare.bytesPerConn);
