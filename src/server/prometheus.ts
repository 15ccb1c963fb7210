// The cluster snapshot in Prometheus text format, per worker (label `worker`) and in total.
import { Counter, Gauge, Registry } from "prom-client";
import type { ClusterStats, WorkerStats } from "./stats.ts";

type Numeric = { [K in keyof WorkerStats]: WorkerStats[K] extends number ? K : never }[keyof WorkerStats];

const PER_WORKER: { name: string; help: string; field: Numeric; counter?: boolean }[] = [
  { name: "wsmillion_connections_open", help: "WebSocket connections open now", field: "open" },
  { name: "wsmillion_connections_accepted_total", help: "WebSocket upgrades accepted", field: "accepted", counter: true },
  { name: "wsmillion_connections_closed_total", help: "WebSocket connections closed", field: "closed", counter: true },
  { name: "wsmillion_messages_in_total", help: "Messages received", field: "messagesIn", counter: true },
  { name: "wsmillion_messages_out_total", help: "Messages sent", field: "messagesOut", counter: true },
  { name: "wsmillion_bytes_in_total", help: "Payload bytes received", field: "bytesIn", counter: true },
  { name: "wsmillion_bytes_out_total", help: "Payload bytes sent", field: "bytesOut", counter: true },
  { name: "wsmillion_messages_dropped_total", help: "Messages dropped by the backpressure policy", field: "dropped", counter: true },
  { name: "wsmillion_idle_timeouts_total", help: "Connections closed by --idle-timeout", field: "timedOut", counter: true },
  { name: "wsmillion_process_resident_memory_bytes", help: "Resident memory of the worker process", field: "rssBytes" },
  { name: "wsmillion_process_cpu_cores", help: "CPU used over the last interval, in cores", field: "cpuCores" },
  { name: "wsmillion_process_cpu_seconds_total", help: "CPU seconds used by the worker process", field: "cpuSeconds", counter: true },
  { name: "wsmillion_event_loop_lag_ms", help: "Worst event-loop delay over the last interval", field: "eventLoopLagMs" },
  { name: "wsmillion_buffered_bytes", help: "Bytes queued for slow connections", field: "bufferedBytes" },
  { name: "wsmillion_worker_restarts_total", help: "Times the worker was restarted", field: "restarts", counter: true },
  { name: "wsmillion_handshake_timeouts_total", help: "Connections shut down for not completing their request within --handshake-timeout", field: "handshakeTimeouts", counter: true },
];

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export async function renderPrometheus(stats: ClusterStats): Promise<string> {
  const registry = new Registry();
  for (const def of PER_WORKER) {
    const Metric = def.counter ? Counter : Gauge;
    const metric = new Metric({ name: def.name, help: def.help, labelNames: ["worker"], registers: [registry] });
    for (const w of stats.workers) {
      const v = w[def.field];
      if (metric instanceof Counter) metric.inc({ worker: String(w.worker) }, v);
      else metric.set({ worker: String(w.worker) }, v);
    }
  }
  const closedCode = new Counter({ name: "wsmillion_closed_by_code_total", help: "Closed connections by close code (lost workers count as 1006)", labelNames: ["code"], registers: [registry] });
  for (const [code, n] of Object.entries(stats.total.closedByCode)) closedCode.inc({ code }, n);
  const rejected = new Counter({ name: "wsmillion_upgrades_rejected_total", help: "Refused upgrades by HTTP status and reason", labelNames: ["reason"], registers: [registry] });
  for (const [reason, n] of Object.entries(stats.total.rejected)) rejected.inc({ reason }, n);
  new Gauge({ name: "wsmillion_conns", help: "Connections open now, cluster-wide (same as /conns)", registers: [registry] }).set(stats.conns);
  new Counter({ name: "wsmillion_closed_total", help: "Connections closed, cluster-wide (same as /conns)", registers: [registry] }).inc(stats.closed);
  new Gauge({ name: "wsmillion_workers", help: "Worker processes", registers: [registry] }).set(stats.workers.length);
  const queue = new Gauge({ name: "wsmillion_accept_queue", help: "Connections waiting in the worker's accept queue (kernel, Recv-Q of its listener)", labelNames: ["worker"], registers: [registry] });
  for (const w of stats.workers) if (w.acceptQueue !== null) queue.set({ worker: String(w.worker) }, w.acceptQueue);
  const upgradeMax = new Gauge({ name: "wsmillion_upgrade_seconds_max", help: "Longest upgrade, fetch call to open handler, since the worker started", labelNames: ["worker"], registers: [registry] });
  for (const w of stats.workers) upgradeMax.set({ worker: String(w.worker) }, w.upgrade.maxMs / 1000);
  const h = stats.handshakes;
  if (h?.listenOverflows != null) new Counter({ name: "wsmillion_listen_overflows_total", help: "Connections that found their listener's accept queue full, network namespace since boot (TcpExt ListenOverflows)", registers: [registry] }).inc(h.listenOverflows);
  if (h?.listenDrops != null) new Counter({ name: "wsmillion_listen_drops_total", help: "Connections dropped at a listener, network namespace since boot (TcpExt ListenDrops)", registers: [registry] }).inc(h.listenDrops);
  return (await registry.metrics()) + upgradeSummary(stats);
}

/**
 * Upgrade times as a Prometheus summary per worker. prom-client computes a summary only from values
 * observed in this process, and these come as each worker's HdrHistogram figures, so the lines are written here.
 */
function upgradeSummary(stats: ClusterStats): string {
  const name = "wsmillion_upgrade_seconds";
  const lines = [`# HELP ${name} Upgrade time, fetch call to open handler (the 101 sent), since the worker started`, `# TYPE ${name} summary`];
  for (const w of stats.workers) {
    const u = w.upgrade;
    const worker = `worker="${w.worker}"`;
    lines.push(`${name}{${worker},quantile="0.5"} ${u.p50Ms / 1000}`, `${name}{${worker},quantile="0.99"} ${u.p99Ms / 1000}`);
    lines.push(`${name}_sum{${worker}} ${(u.meanMs * u.count) / 1000}`, `${name}_count{${worker}} ${u.count}`);
  }
  return `${lines.join("\n")}\n`;
}
