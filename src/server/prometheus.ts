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
  return registry.metrics();
}
