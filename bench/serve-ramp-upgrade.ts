// Upgrades during a big ramp (issue #15, defect 5): N connections from W load workers (the project's own
// coordinator, C dials in flight per worker, --handshake-timeout 10 s) against `serve --workers auto
// --max-conns M`. Prints how many dials failed and why, the clients' connect and upgrade times, the server's
// own share of an upgrade (fetch call to open handler, from /stats), the deepest accept queue each listener
// reached (/proc/net/tcp, read here twice a second: a server without those figures is measured the same
// way) and the listen overflows over the ramp (/proc/net/netstat).
// Ratio: failed dials per dial (target 0). Figures go to docs/RELIABILITY.md, "Upgrades during a ramp".
// RAMP_TRACE=1 prints every sample: per worker its queue, CPU, event-loop lag, connections, slowest upgrade.
//
// It dials 16 loopback addresses and holds both ends here: run it in a private network namespace, so its
// ports and sysctls touch nothing else (netdev_max_backlog is not per namespace; set it beforehand):
//   unshare -n sh -c 'ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 && bun bench/serve-ramp-upgrade.ts'
// A stall (ms > 0) stops one server worker (SIGSTOP) for that long, 5 s into the ramp: a worker that the box
// does not run for a while, as a loaded machine does to one process or another (measured here: event-loop
// lags of 1 to 3.5 s at a load average of 15 to 25).
// Usage: bun bench/serve-ramp-upgrade.ts [connections=200200] [load workers=11] [in flight per worker=200] [max-conns=210000] [stall ms=0]
import { readFileSync } from "node:fs";
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { parseTargets } from "../src/system/capacity.ts";
import { listenCounters, listenQueues } from "../src/server/listen-queues.ts";
import type { ClusterStats } from "../src/server/stats.ts";
import { NOFILE, finish } from "./load-lib.ts";
import { startWsmillion } from "./serve-lib.ts";

const N = Number(process.argv[2] ?? 200_200);
const WORKERS = Number(process.argv[3] ?? 11);
const IN_FLIGHT = Number(process.argv[4] ?? 200);
const MAX_CONNS = Number(process.argv[5] ?? 210_000);
const STALL_MS = Number(process.argv[6] ?? 0);
const STALL_AFTER_MS = 5000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const SAMPLE_MS = 500;

const sysctl = (key: string): string => {
  try {
    return readFileSync(`/proc/sys/${key.replace(/\./g, "/")}`, "utf8").trim();
  } catch {
    return "unknown";
  }
};
const settings = Object.fromEntries(["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_migrate_req", "net.core.netdev_max_backlog"].map((k) => [k, sysctl(k)]));
console.log(`sysctls: ${Object.entries(settings).map(([k, v]) => `${k}=${v}`).join(" ")}`);

const server = await startWsmillion(["--workers", "auto", "--max-conns", String(MAX_CONNS), "--mode", "sink", "--ping-interval", "0", "--idle-timeout", "0"]);
const stats = async (): Promise<ClusterStats> => (await fetch(`http://127.0.0.1:${server.port}/stats`, { signal: AbortSignal.timeout(5000) })).json() as Promise<ClusterStats>;
let first = await stats();
for (let i = 0; i < 100 && first.workers.length < 2; i++) {
  await Bun.sleep(100);
  first = await stats();
}
const pids = [server.proc.pid, ...first.workers.map((w) => w.pid)];
console.log(`server: ${first.workers.length} workers on port ${server.port}; ${N} connections from ${WORKERS} load workers, ${IN_FLIGHT} dials in flight each`);

// The deepest accept queue each listener (by socket inode) reached, sampled as the ramp goes.
const peakQueue = new Map<number, number>();
let samples = 0;
const sampler = setInterval(() => {
  samples++;
  for (const [inode, q] of listenQueues(server.port)) peakQueue.set(inode, Math.max(peakQueue.get(inode) ?? 0, q));
  if (process.env.RAMP_TRACE) {
    stats()
      .then((s) => console.log(`trace ${(performance.now() / 1000).toFixed(1)} ${s.workers.map((w) => `${w.worker}:q${w.acceptQueue}/cpu${w.cpuCores.toFixed(2)}/lag${Math.round(w.eventLoopLagMs)}/o${w.open}/up${w.upgrade.maxMs}`).join(" ")}`))
      .catch(() => undefined);
  }
}, SAMPLE_MS);

const before = listenCounters();
const stalled = first.workers[0]!.pid;
const stall =
  STALL_MS > 0
    ? setTimeout(() => {
        process.kill(stalled, "SIGSTOP");
        console.log(`stalled worker pid ${stalled} for ${STALL_MS} ms`);
        setTimeout(() => {
          try {
            process.kill(stalled, "SIGCONT");
          } catch {
            // the ramp ended first and the server is gone
          }
        }, STALL_MS);
      }, STALL_AFTER_MS)
    : undefined;
const abort = new AbortController();
const plan = completePlan(
  {
    targets: parseTargets(`127.0.0.1-16:${server.port}`),
    connections: N,
    concurrency: WORKERS * IN_FLIGHT,
    workers: WORKERS,
    mode: "idle",
    durationS: 0,
    holdS: 3600,
    handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    statusUrl: null,
  },
  NOFILE,
);
let after = before;
let atRamp: ClusterStats | null = null;
const report = await runLoad(plan, {
  onPhase: (phase) => {
    if (phase !== "hold") return;
    // The ramp is over: take the server's figures, then end every connection at once (SIGKILL drops them
    // in the kernel, no close handshakes) so the load's close phase has nothing left to do.
    clearInterval(sampler);
    after = listenCounters();
    // Workers encode their upgrade times at most once a second: the first ask starts it, the second reads it.
    void stats()
      .then(() => Bun.sleep(1500))
      .then(stats)
      .then((s) => (atRamp = s))
      .catch(() => undefined)
      .finally(() => {
        for (const pid of pids) process.kill(pid, "SIGKILL");
        abort.abort();
      });
  },
  signal: abort.signal,
});
clearInterval(sampler);
clearTimeout(stall);
for (const pid of pids) {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

const c = report.connections;
const upgrade = (atRamp as ClusterStats | null)?.handshakes?.upgrade;
const queues = [...peakQueue.values()].sort((a, b) => b - a);
const figures = {
  connections: N,
  opened: c.opened,
  failed: c.failed,
  errors: Object.fromEntries(report.errors.map((e) => [e.cause, e.count])),
  rampSeconds: c.rampSeconds,
  dialsPerSecond: c.dialsPerSecond,
  clientConnectMs: { p99: report.latency.connect.p99Ms, max: report.latency.connect.maxMs },
  clientUpgradeMs: { p50: report.latency.handshake.p50Ms, p99: report.latency.handshake.p99Ms, max: report.latency.handshake.maxMs },
  serverUpgradeMs: upgrade ? { count: upgrade.count, p50: upgrade.p50Ms, p99: upgrade.p99Ms, max: upgrade.maxMs } : null,
  stallMs: STALL_MS,
  peakAcceptQueue: { max: Math.max(0, ...queues), perListener: queues },
  listenOverflows: before && after ? after.listenOverflows - before.listenOverflows : null,
  listenDrops: before && after ? after.listenDrops - before.listenDrops : null,
  samples,
  settings,
};
console.log(`dials: ${c.opened} opened, ${c.failed} failed ${JSON.stringify(figures.errors)} in ${c.rampSeconds.toFixed(1)} s (${Math.round(c.dialsPerSecond)}/s)`);
console.log(`client: connect p99 ${figures.clientConnectMs.p99} ms, max ${figures.clientConnectMs.max} ms; upgrade p50 ${figures.clientUpgradeMs.p50} ms, p99 ${figures.clientUpgradeMs.p99} ms, max ${figures.clientUpgradeMs.max} ms`);
console.log(`server: fetch to open ${upgrade ? `p50 ${upgrade.p50Ms} ms, p99 ${upgrade.p99Ms} ms, max ${upgrade.maxMs} ms over ${upgrade.count}` : "unknown"}`);
console.log(`accept queues: deepest ${figures.peakAcceptQueue.max} (per listener, deepest first: ${queues.join(" ")}); listen overflows ${figures.listenOverflows}, drops ${figures.listenDrops}`);
finish("serve-ramp-upgrade", figures, c.failed / N);
