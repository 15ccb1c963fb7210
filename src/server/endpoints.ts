// The HTTP side of a worker: /conns, /stats, /metrics, /healthz, /dashboard and its live feed /events.
// Every answer but /healthz is cluster-wide. /conns answers at once from the count the supervisor pushes to
// every worker (exact at rest, ~0.1 s behind while connections come and go), so it answers even while
// every other process is too busy to; the rest ask the supervisor for a fresh summed snapshot.
import type { ClusterStats, ConnCount } from "./stats.ts";
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./prometheus.ts";
import { buildPage } from "../web-pages.ts";

const EVENTS_PERIOD_MS = 1000;

export type ClusterSource = () => Promise<ClusterStats>;
/** The worker's copy of the pushed count: no round trip. */
export type CountSource = () => ConnCount;

let dashboard: string | undefined;

/** web/dashboard.html with uPlot inlined, built on the first request and kept: each worker reads the files once. */
function dashboardPage(): string {
  dashboard ??= buildPage("dashboard.html");
  return dashboard;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", "Cache-Control": "no-store" } });
}

/** Server-sent events: one cluster snapshot a second for the dashboard, until the page goes away. */
function events(cluster: ClusterSource, signal: AbortSignal): Response {
  const encoder = new TextEncoder();
  let timer: Timer | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const push = async () => {
        try {
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(await cluster())}\n\n`));
        } catch {
          clearInterval(timer);
        }
      };
      void push();
      timer = setInterval(push, EVENTS_PERIOD_MS);
      signal.addEventListener("abort", () => {
        clearInterval(timer);
        try {
          controller.close();
        } catch {
          // already closed by the client going away
        }
      });
    },
    cancel() {
      clearInterval(timer);
    },
  });
  return new Response(stream, { headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-store", Connection: "keep-alive" } });
}

export async function serveEndpoint(req: Request, url: URL, cluster: ClusterSource, worker: number, count: CountSource): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405, headers: { Allow: "GET" } });
  switch (url.pathname) {
    case "/conns": {
      const c = count();
      // Field order as the classic Go tool answered it.
      return json({ closed: c.closed, conns: c.conns });
    }
    case "/stats":
      return json(await cluster());
    case "/metrics":
      return new Response(await renderPrometheus(await cluster()), { headers: { "Content-Type": PROMETHEUS_CONTENT_TYPE } });
    case "/healthz":
      return json({ ok: true, worker });
    case "/dashboard":
    case "/":
      // Self-contained: the page makes no other request.
      return new Response(dashboardPage(), { headers: { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" } });
    case "/events":
      return events(cluster, req.signal);
    default:
      return new Response("not found: WebSocket upgrades go to the configured --path; see /dashboard, /conns, /stats, /metrics, /healthz\n", { status: 404 });
  }
}
