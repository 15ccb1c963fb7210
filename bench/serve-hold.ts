// Idle connections held by a multi-worker `wsmillion serve` on this box (target: >= 200,000), the
// clients spread over several destination addresses (127.0.0.1..N, enough that no pair's ephemeral range is
// more than 20% full: connect() searches the range, and a crowded one slows the ramp several-fold, see the
// demo section of docs/BENCHMARKS.md) and several load worker processes, with
// the server's /conns checked against the generator's own count. Heavy at full scale (3-4 GB of RAM, a
// minute or more of ramp on 2 cores): run it alone, on a quiet machine. Equivalent CLI:
//   wsmillion serve --port P --max-conns N &
//   wsmillion load --targets 127.0.0.1-36:P --connections N --concurrency 2000 --mode idle --duration 10
// Reports total system memory per connection (MemAvailable drop from before the server started to the held
// state: server workers + load workers + the kernel's two sockets per connection), server RSS per
// connection, ramp time. Ratio: connections held / asked (1 meets the plan).
// Usage: bun bench/serve-hold.ts [connections=200000] [addresses=N/(20% of a pair's range), 36 here] [concurrency=2000]
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { NOFILE, finish } from "./load-lib.ts";
import { loopbackTargets } from "../src/system/targets.ts";
import { loadAverage, memAvailable, slabBytes, startWsmillion } from "./serve-lib.ts";
import { portsPerPair } from "../src/system/capacity.ts";
import { readLimits } from "../src/system/limits.ts";

const N = Number(process.argv[2] ?? 200_000);
const HOSTS = Number(process.argv[3] ?? Math.min(254, Math.max(2, Math.ceil(N / (portsPerPair(readLimits()) * 0.2)))));
const CONCURRENCY = Number(process.argv[4] ?? 2000);
const SETTLE_MS = 3000;
const MiB = 2 ** 20;

// Refuse to start a run the box cannot hold (12 KiB per connection all in, plus a margin).
const need = N * 12 * 1024 + 1024 * MiB;
if (memAvailable() < need) {
  console.error(`serve-hold: ${N} connections need about ${Math.round(need / MiB)} MiB; ${Math.round(memAvailable() / MiB)} MiB available`);
  process.exit(1);
}

console.log(`held idle connections: ${N} over ${HOSTS} destination addresses, ${CONCURRENCY} dials in flight; load average ${loadAverage()}`);
await Bun.sleep(500);
const mem0 = memAvailable();
const slab0 = slabBytes();
const server = await startWsmillion(["--mode", "echo", "--max-conns", String(N)], 0);
// The supervisor prints its banner once every worker it sized is ready; their first reports follow within 250 ms.
await Bun.sleep(1000);
const stats = await server.stats();
const serverWorkers = stats.workers.length;
const memServer = memAvailable();
const serverRss0 = stats.total.rssBytes;
console.log(`  server: ${serverWorkers} workers on port ${server.port}, ${Math.round((mem0 - memServer) / MiB)} MiB before any connection`);

let minMem = memServer;
interface Held {
  mem: number;
  slab: number;
  conns: number;
  serverRss: number;
  perWorker: number[];
}
let held: Held | null = null;
let heldP: Promise<void> | null = null;
const workers = Math.ceil(N / 19_000);
try {
  const r = await runLoad(
    completePlan({
      targets: loopbackTargets(HOSTS, server.port), connections: N, concurrency: CONCURRENCY, durationS: 10,
      intervalMs: 0, size: 0, mode: "idle", handshakeTimeoutMs: 30_000,
      workers, maxMessage: 1 << 20, statusUrl: `http://127.0.0.1:${server.port}/conns`,
    }, NOFILE),
    {
      onProgress(s) {
        minMem = Math.min(minMem, memAvailable());
        if (s.phase === "ramp" && Math.round(s.t) % 5 === 0) console.log(`  t=${s.t}s open ${s.open} (${s.dialsPerSec}/s), failed ${s.failed}`);
      },
      onPhase(p) {
        if (p !== "run") return;
        heldP = (async () => {
          await Bun.sleep(SETTLE_MS);
          const s = await server.stats();
          held = { mem: memAvailable(), slab: slabBytes(), conns: s.conns, serverRss: s.total.rssBytes, perWorker: s.workers.map((w) => w.open) };
          minMem = Math.min(minMem, held.mem);
        })();
      },
    },
  );
  if (heldP) await heldP;
  const h = held as Held | null;
  const open = r.connections.openAtRamp;
  const figures = {
    connections: N,
    addresses: HOSTS,
    serverWorkers,
    loadWorkers: r.workers.length,
    openAtRamp: open,
    openAtEnd: r.connections.openAtEnd,
    failed: r.connections.failed,
    dropped: r.connections.dropped,
    rampSeconds: r.connections.rampSeconds,
    dialsPerSec: r.connections.dialsPerSecond,
    serverConnsAtRamp: r.server.atRamp?.conns ?? null,
    serverConnsAtEnd: r.server.atEnd?.conns ?? null,
    serverConnsHeld: h?.conns ?? null,
    connsExact: r.server.atRamp?.conns === open && r.server.atEnd?.conns === r.connections.openAtEnd,
    perServerWorker: h?.perWorker ?? null,
    systemBytesPerConn: h ? Math.round((mem0 - h.mem) / open) : null,
    systemPeakBytesPerConn: Math.round((mem0 - minMem) / open),
    serverRssBytesPerConn: h ? Math.round((h.serverRss - serverRss0) / open) : null,
    /** Kernel slab growth per connection: both sockets (server and client end), their files and epoll entries. */
    slabBytesPerConn: h ? Math.round((h.slab - slab0) / open) : null,
    clientRssBytesPerConn: r.generator.rssPerConnectionBytes,
    systemUsedMiB: h ? Math.round((mem0 - h.mem) / MiB) : null,
  };
  console.log(
    `held ${r.connections.openAtEnd} of ${N} (${figures.failed} failed, ${figures.dropped} dropped), ramp ${figures.rampSeconds} s (${figures.dialsPerSec}/s); ` +
      `/conns ${figures.serverConnsAtRamp} at ramp, ${figures.serverConnsAtEnd} at end (exact: ${figures.connsExact}); ` +
      `system memory ${figures.systemUsedMiB} MiB = ${((figures.systemBytesPerConn ?? 0) / 1024).toFixed(2)} KiB per connection ` +
      `(server RSS ${((figures.serverRssBytesPerConn ?? 0) / 1024).toFixed(2)} KiB, client RSS ${(figures.clientRssBytesPerConn / 1024).toFixed(2)} KiB, ` +
      `kernel slab ${((figures.slabBytesPerConn ?? 0) / 1024).toFixed(2)} KiB)`,
  );
  finish("serve-hold", figures, r.connections.openAtEnd / N);
} finally {
  await server.stop();
}
