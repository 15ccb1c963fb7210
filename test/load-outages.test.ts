// The outage report of a --reconnect run (how long the count was below target, how long each recovery
// took, what was refused meanwhile) and its verdict; and a run without --reconnect whose server closed
// every connection, which ends its traffic phase early instead of idling to the end.
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LoadReport } from "../src/load/report.ts";
import { groupGone } from "../bench/faults.ts";
import { fleetOutages, type WorkerOutage } from "../src/load/outages.ts";
import { closedPort, runCli } from "./helpers/load.ts";
import { eventually } from "./helpers/eventually.ts";
import { serve, type ServeHandle } from "./helpers/serve.ts";

const stops: (() => unknown)[] = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s();
});

const span = (startMs: number, restoredMs: number | null, endMs: number, minOpen: number, refused: Record<string, number> = {}): WorkerOutage => ({
  startMs, restoredMs, endMs, minOpen, refused, drops: { EOF: 1 }, sendsDown: 0,
});

describe("fleet outages from the workers' spans", () => {
  test("overlapping spans are one outage; the ramp is none; what was lost and refused adds up", () => {
    const t0 = 1_000_000;
    const { report, excused } = fleetOutages(
      300,
      [
        // Full at +1 s; below from +5 s to +7 s; below again from +20 s to +20.5 s.
        { slots: 100, fullMs: t0 + 1000, outages: [span(t0 + 5000, t0 + 7000, t0 + 7000, 0, { ECONNREFUSED: 40 }), span(t0 + 20_000, t0 + 20_500, t0 + 20_500, 90)] },
        // Below from +5.1 s to +9 s: the fleet's first outage lasts until this one is back.
        { slots: 100, fullMs: t0 + 1200, outages: [span(t0 + 5100, t0 + 9000, t0 + 9000, 10, { ECONNREFUSED: 5, HTTP_503: 7 })] },
        // Never lost anything.
        { slots: 100, fullMs: t0 + 900, outages: [] },
      ],
      t0,
    );
    expect(report.count).toBe(2);
    expect(report.recoveries[0]).toEqual({
      startT: 5, recoveredT: 9, seconds: 4, minOpen: 110, refusedDials: 52, refusedByCause: { ECONNREFUSED: 45, HTTP_503: 7 }, dropped: 2,
    });
    expect(report.recoveries[1]).toMatchObject({ startT: 20, recoveredT: 20.5, seconds: 0.5, minOpen: 290 });
    expect(report.belowTargetSeconds).toBe(4.5);
    expect(report.longestSeconds).toBe(4);
    expect(excused).toEqual({ drops: { EOF: 3 }, refused: { ECONNREFUSED: 45, HTTP_503: 7 }, sendsDown: 0 });
  });

  test("a span cut short by the end is an outage that did not recover, and excuses nothing", () => {
    const { report, excused } = fleetOutages(200, [
      { slots: 100, fullMs: 1000, outages: [span(3000, null, 8000, 0, { ECONNREFUSED: 9 })] },
      { slots: 100, fullMs: 1000, outages: [span(3000, 4000, 4000, 50)] },
    ], 0);
    expect(report.recoveries).toEqual([{ startT: 3, recoveredT: null, seconds: null, minOpen: 50, refusedDials: 9, refusedByCause: { ECONNREFUSED: 9 }, dropped: 2 }]);
    expect(report.belowTargetSeconds).toBe(5);
    expect(excused).toEqual({ drops: {}, refused: {}, sendsDown: 0 });
  });

  test("a worker never full: the fleet never reached its target, so nothing after is an outage", () => {
    const { report } = fleetOutages(200, [
      { slots: 100, fullMs: null, outages: [] },
      { slots: 100, fullMs: 1000, outages: [span(3000, 4000, 4000, 50)] },
    ], 0);
    expect(report).toEqual({ count: 0, belowTargetSeconds: 0, longestSeconds: 0, recoveries: [] });
  });
});

/** `wsmillion serve` as the leader of its own process group, so a crash of all of it is one kill. */
async function groupServer(port: number): Promise<ServeHandle> {
  const srv = await serve(["--port", String(port), "--workers", "2"], ["setsid"]);
  stops.push(() => crash(srv));
  return srv;
}

/** kill -9 of the supervisor and every worker at once, as a machine crash or an OOM kill would. */
async function crash(srv: ServeHandle): Promise<void> {
  if (srv.proc.exitCode !== null || srv.proc.signalCode !== null) return;
  process.kill(-srv.proc.pid, "SIGKILL");
  await srv.proc.exited;
  // The workers die a moment later; until then the port is theirs and a new server is refused it.
  await groupGone(srv.proc.pid);
}

const jsonPath = (name: string): string => join(tmpdir(), `wsmillion-${name}-${process.pid}.json`);

describe("a --reconnect run through a server crash and restart", () => {
  test("one outage, timed, recovered; refused reconnects do not fail the plan, and the verdict says what was kept", async () => {
    const port = closedPort();
    let srv = await groupServer(port);
    const json = jsonPath("outage");
    const run = runCli(["load", `ws://127.0.0.1:${port}/ws`, "--connections", "300", "--workers", "2", "--duration", "8", "--interval", "200", "--reconnect", "--quiet", "--json", json], { timeoutMs: 60_000 });
    await eventually(srv.conns, (c) => c.conns === 300, 20_000, "300 open");
    await crash(srv);
    // Down long enough that reconnects are refused (ECONNREFUSED), then the same command on the same port.
    await Bun.sleep(700);
    srv = await groupServer(port);
    const r = await run;
    const report = JSON.parse(readFileSync(json, "utf8")) as LoadReport;
    expect(report.outages.count).toBe(1);
    const o = report.outages.recoveries[0]!;
    expect(o.recoveredT).not.toBeNull();
    expect(o.seconds!).toBeGreaterThan(0.7);
    expect(o.minOpen).toBe(0);
    expect(o.dropped).toBe(300);
    expect(o.refusedByCause.ECONNREFUSED).toBeGreaterThan(0);
    // Every failed dial of the run was a reconnect refused during the outage.
    expect(o.refusedDials).toBe(report.connections.failed);
    expect(report.outages.belowTargetSeconds).toBe(o.seconds!);
    expect(report.connections.openAtEnd).toBe(300);
    expect(report.verdict).toMatchObject({ met: true, exitCode: 0, reasons: [] });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Result: plan met (exit 0): kept 300 connections; 1 outage, back in ${o.seconds!.toFixed(1)} s; ${o.refusedDials.toLocaleString("en-US")} dials refused meanwhile`);
    expect(r.stdout).toMatch(/Outages: below the target of 300 for \d+\.\d s in all/);
  }, 60_000);

  test("an outage still open at the end fails the plan and says how far short the count ended", async () => {
    const port = closedPort();
    const srv = await groupServer(port);
    const json = jsonPath("unrecovered");
    const run = runCli(["load", `ws://127.0.0.1:${port}/ws`, "--connections", "200", "--duration", "3", "--interval", "0", "--mode", "idle", "--reconnect", "--quiet", "--json", json], { timeoutMs: 60_000 });
    await eventually(srv.conns, (c) => c.conns === 200, 20_000, "200 open");
    await crash(srv);
    const r = await run;
    const report = JSON.parse(readFileSync(json, "utf8")) as LoadReport;
    expect(r.code).toBe(1);
    expect(report.outages.recoveries).toHaveLength(1);
    expect(report.outages.recoveries[0]).toMatchObject({ recoveredT: null, seconds: null, minOpen: 0, dropped: 200 });
    expect(report.verdict.reasons.join("; ")).toMatch(/the count did not recover: 0 of 200 open at the end, 200 short \(below target from t=[\d.]+s, lowest 0\)/);
    expect(report.verdict.summary).toBeUndefined();
  }, 60_000);
});

describe("without --reconnect, a server that closes every connection", () => {
  test("ends the traffic phase early with a warning, instead of idling to the end of --duration", async () => {
    const srv = await serve(["--workers", "2"]);
    stops.push(() => srv.stop("SIGKILL"));
    const json = jsonPath("drained");
    const run = runCli(["load", srv.url, "--connections", "200", "--workers", "2", "--duration", "120", "--quiet", "--json", json], { timeoutMs: 100_000 });
    await eventually(srv.conns, (c) => c.conns === 200, 20_000, "200 open");
    expect(await srv.stop("SIGTERM")).toBe(0);
    const r = await run;
    const report = JSON.parse(readFileSync(json, "utf8")) as LoadReport;
    expect(report.drops.map((d) => [d.cause, d.count])).toEqual([["CLOSE_1001", 200]]);
    // Asked for 120 s of traffic: it stopped once the last connection went.
    expect(report.traffic.runSeconds).toBeLessThan(60);
    expect(report.warnings.join("\n")).toMatch(/every connection was closed by the server at t=[\d.]+s; the traffic phase ended early/);
    expect(r.code).toBe(1);
  }, 120_000);
});
