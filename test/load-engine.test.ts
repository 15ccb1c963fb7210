// The load engine end to end (coordinator, worker processes, our codec) against independent servers:
// a `ws` package server under Node, a bare Bun.serve, and `wsmillion serve`.
import { afterAll, describe, expect, test } from "bun:test";
import { runLoad } from "../src/load/coordinator.ts";
import type { LoadPhase } from "../src/load/report.ts";
import { bunEcho, local, plan, wsServer, type NodeServer } from "./helpers/load.ts";
import { serve, type ServeHandle } from "./helpers/serve.ts";

const stops: (() => unknown)[] = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s();
});

describe("against a ws server (Node, independent implementation)", () => {
  let echo: NodeServer;
  test("echo: counts exact across 2 workers, round trips measured, server count matches", async () => {
    echo = await wsServer("echo");
    stops.push(() => echo.stop());
    const r = await runLoad(plan(local(echo.port), { connections: 300, workers: 2, durationS: 1, intervalMs: 100, statusUrl: `http://127.0.0.1:${echo.port}/conns` }));
    expect(r.connections).toMatchObject({ attempted: 300, opened: 300, openAtRamp: 300, failed: 0, dropped: 0, closedByUs: 300 });
    expect(r.server.atRamp).toEqual({ conns: 300, closed: 0 });
    expect(r.counters.msgsIn).toBe(r.counters.msgsOut);
    expect(r.latency.rtt.count).toBe(r.counters.msgsIn);
    expect(r.latency.rtt.count).toBeGreaterThan(2000);
    expect(r.latency.lateness.count).toBe(r.counters.msgsOut);
    expect(r.latency.handshake.count).toBe(300);
    expect(r.workers.map((w) => w.connections)).toEqual([150, 150]);
    expect(r.verdict).toEqual({ met: true, exitCode: 0, reasons: [] });
  }, 30_000);

  test("receive: server pushes give push latency", async () => {
    const push = await wsServer("push", "50");
    stops.push(() => push.stop());
    const r = await runLoad(plan(local(push.port), { connections: 50, mode: "receive", intervalMs: 0, durationS: 1 }));
    expect(r.connections.openAtRamp).toBe(50);
    expect(r.counters.msgsOut).toBe(0);
    expect(r.latency.push.count).toBeGreaterThan(500);
    expect(r.latency.push.p50Ms).toBeLessThan(1000);
    expect(r.latency.rtt.count).toBe(0);
  }, 30_000);

  test("fragmented echoes with pings interleaved are reassembled and answered", async () => {
    const frag = await wsServer("fragment");
    stops.push(() => frag.stop());
    const r = await runLoad(plan(local(frag.port), { connections: 20, durationS: 1, intervalMs: 50, size: 300 }));
    expect(r.counters.msgsIn).toBe(r.counters.msgsOut);
    expect(r.counters.pingsIn).toBe(r.counters.msgsOut);
    expect(r.latency.rtt.count).toBe(r.counters.msgsOut);
    expect(r.errors).toEqual([]);
  }, 30_000);

  test("server-initiated close is counted with its code and meaning", async () => {
    const closer = await wsServer("close", "4001");
    stops.push(() => closer.stop());
    const r = await runLoad(plan(local(closer.port), { connections: 30, durationS: 0 }));
    expect(r.connections.opened).toBe(30);
    expect(r.connections.dropped).toBe(30);
    expect(r.serverCloses).toEqual([{ code: 4001, count: 30, meaning: "application-defined" }]);
    expect(r.verdict.exitCode).toBe(1);
  }, 30_000);
});

describe("against Bun.serve", () => {
  test("several destination pairs (127.0.0.1-4 to a 0.0.0.0 listener), rate capped", async () => {
    const srv = bunEcho(0, "0.0.0.0");
    stops.push(() => srv.stop(true));
    const targets = [1, 2, 3, 4].map((o) => ({ host: `127.0.0.${o}`, port: srv.port! }));
    const r = await runLoad(plan(targets, { connections: 200, rate: 400, durationS: 0 }));
    expect(r.connections.openAtRamp).toBe(200);
    // 200 dials at 400/s take about half a second.
    expect(r.connections.rampSeconds).toBeGreaterThan(0.35);
  }, 30_000);

  test("reconnect: connections come back after the server restarts", async () => {
    let srv = bunEcho();
    const port = srv.port!;
    stops.push(() => srv.stop(true));
    const restart = async (): Promise<void> => {
      await Bun.sleep(300);
      srv.stop(true);
      await Bun.sleep(400);
      srv = bunEcho(port);
    };
    let restarted: Promise<void> | null = null;
    const r = await runLoad(plan(local(port), { connections: 100, durationS: 3, intervalMs: 100, reconnect: true }), {
      onPhase: (p: LoadPhase) => {
        if (p === "run") restarted = restart();
      },
    });
    await restarted;
    expect(r.connections.dropped).toBe(100);
    expect(r.connections.reconnects).toBeGreaterThanOrEqual(100);
    expect(r.connections.openAtEnd).toBe(100);
    expect(r.connections.closedByUs).toBe(100);
  }, 30_000);
});

describe("against wsmillion serve", () => {
  let server: ServeHandle | null = null;
  test("echo: counts exact, server's /conns agrees", async () => {
    server = await serve(["--mode", "echo"]);
    stops.push(() => server?.stop());
    const r = await runLoad(plan(local(server.port), { connections: 400, workers: 2, durationS: 1, statusUrl: `${server.http}/conns` }));
    expect(r.connections).toMatchObject({ opened: 400, failed: 0, dropped: 0, closedByUs: 400 });
    expect(r.server.atRamp?.conns).toBe(400);
    expect(r.latency.rtt.count).toBe(r.counters.msgsOut);
  }, 30_000);

  test("receive: push mode latency", async () => {
    const push = await serve(["--mode", "push", "--sendtick", "50", "--databyte", "64"]);
    stops.push(() => push.stop());
    const r = await runLoad(plan(local(push.port), { connections: 50, mode: "receive", intervalMs: 0, durationS: 1 }));
    expect(r.connections.openAtRamp).toBe(50);
    expect(r.latency.push.count).toBeGreaterThan(300);
  }, 30_000);
});
