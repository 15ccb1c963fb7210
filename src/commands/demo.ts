// `wsmillion demo` (what `npm start` runs): the whole exercise on this machine with nothing to set up.
// Limits summary, a local `serve`, connections ramped to what fits, a round of echo traffic, the report.
import type { Command } from "commander";
import { runLoad } from "../load/coordinator.ts";
import type { LoadPlan } from "../load/plan.ts";
import { renderLoadReport } from "../report/load-report.ts";
import { ProgressPrinter } from "../report/progress.ts";
import { SERVER_DEFAULTS } from "../server/config.ts";
import { startServer } from "../server/supervisor.ts";
import { capacityFor, portsPerPair, workerNofile } from "../system/capacity.ts";
import { readLimits } from "../system/limits.ts";
import { loopbackTargets } from "../system/targets.ts";
import { finalLine } from "./serve.ts";
import { bytes, integer } from "./options.ts";

interface DemoFlags {
  connections?: number;
  interval: number;
  size: number;
  duration: number;
  concurrency: number;
}

const DEFAULT_CONNECTIONS = 50_000;
/**
 * Use at most this share of a destination pair's ephemeral ports. connect() searches the range for a free
 * port, and the search grows with the fill: measured here, 50,000 connections ramped at 2,500/s over 3
 * pairs (60% full) and at 15,500/s over 9 pairs (20% full). Loopback addresses cost nothing.
 */
const PORT_SHARE = 0.2;

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "unbounded");

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("the main job on this machine: a local server, connections ramped to what fits, a round of traffic, the report")
    .option("--connections <n>", `connections to ramp to (default ${fmt(DEFAULT_CONNECTIONS)} or what the limits allow)`, integer("--connections", 1, 10_000_000))
    .option("--interval <ms>", "traffic round: each connection sends every <ms>", integer("--interval", 1, 3_600_000), 100)
    .option("--size <bytes>", "traffic round: payload bytes", bytes("--size", 12, 1 << 20), 100)
    .option("--duration <s>", "traffic round: seconds", integer("--duration", 1, 3600), 10)
    .option("--concurrency <n>", "dials in flight at once", integer("--concurrency", 1, 100_000), 2000)
    .action(async (f: DemoFlags) => {
      const limits = readLimits();
      const wanted = f.connections ?? DEFAULT_CONNECTIONS;
      // Spread over enough loopback destination addresses that no pair runs out of ephemeral ports.
      const pairs = Math.max(1, Math.ceil(wanted / (portsPerPair(limits) * PORT_SHARE)));
      const targets = loopbackTargets(pairs, SERVER_DEFAULTS.port);
      const fits = capacityFor({ role: "both", connections: wanted, targets }, limits).both;
      const connections = f.connections ?? Math.min(DEFAULT_CONNECTIONS, Math.floor(fits.max));
      const nofile = workerNofile(limits);
      console.log(`wsmillion demo: server and load generator on this machine, ${fmt(connections)} connections`);
      console.log(
        `limits: open files ${fmt(nofile)} per process, ephemeral ports ${fmt(portsPerPair(limits))} per destination, ` +
          `${fmt(limits.cores.value ?? 0)} cores, ${fmt((limits.memAvailable.value ?? 0) / 2 ** 30)} GiB available; ` +
          `this box holds about ${fmt(fits.max)} connections with both ends on it (binding: ${fits.binding}); run \`wsmillion doctor\` for details`,
      );

      const server = await startServer(
        { ...SERVER_DEFAULTS, host: pairs > 1 ? "0.0.0.0" : "127.0.0.1", port: 0, maxConns: connections, quiet: true },
        { nofileSoft: nofile, log: (l) => console.error(l) },
      );
      console.log(`server: ws://127.0.0.1:${server.port}/ws, ${server.sizing.initial} workers, ${fmt(server.sizing.perWorker)} connections each`);

      const plan: LoadPlan = {
        targets: targets.map((t) => ({ ...t, port: server.port })),
        path: SERVER_DEFAULTS.path,
        connections,
        concurrency: f.concurrency,
        rate: 0,
        durationS: f.duration,
        holdS: 0,
        intervalMs: f.interval,
        size: f.size,
        mode: "echo",
        headers: [],
        subprotocols: [],
        handshakeTimeoutMs: 10_000,
        reconnect: false,
        workers: Math.ceil((connections * 1.05) / (nofile - 200)),
        sources: [],
        sourcePortBase: 0,
        maxMessage: 1 << 20,
        statusUrl: `http://127.0.0.1:${server.port}/conns`,
      };
      console.log(`load: ${plan.workers} workers over ${pairs} destination address${pairs > 1 ? "es" : ""}; then ${f.size} B every ${f.interval} ms per connection for ${f.duration} s`);
      const progress = new ProgressPrinter(process.stderr, Boolean(process.stderr.isTTY));
      const abort = new AbortController();
      process.once("SIGINT", () => abort.abort());
      const report = await runLoad(plan, { signal: abort.signal, onProgress: (s) => progress.update(s), onPhase: () => progress.settle() });
      progress.settle();
      console.log(renderLoadReport(report));
      const final = await server.stop();
      console.log(`server ${finalLine(final)}`);
      const t = report.traffic;
      console.log(
        `\ndemo: ${fmt(report.connections.openAtRamp)} of ${fmt(connections)} connections held, ${fmt(report.connections.failed)} failed; ` +
          `traffic: ${fmt(t.achievedPerSec)} of ${fmt(t.offeredPerSec)} msg/s offered were driven` +
          (t.achievedPerSec < 0.95 * t.offeredPerSec ? ` (this machine's CPU is the limit: find the rate it holds with \`wsmillion load --interval\`)` : ""),
      );
      // The demo shows what this box does; a traffic round it cannot fully drive is a finding, not a failure.
      process.exitCode = report.connections.failed > 0 ? 1 : 0;
    });
}
