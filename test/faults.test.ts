// The fault suite's small versions (bench/faults.ts at full scale; figures in docs/RELIABILITY.md): a real
// `wsmillion serve` broken on purpose under our load generator, hundreds of connections each. Behaviour is
// checked (counts, codes, who was closed, what arrived); times only where the issue states a bound, and
// generously, since this box is shared.
import { describe, expect, test } from "bun:test";
import { badClients, drain, restart, slowReaders, workerKill } from "../bench/faults.ts";

const quiet = { log: () => {} };

describe("server faults under load", () => {
  test("kill -9 of one worker: /conns drops exactly what it held, the worker is restarted, --reconnect clients restore the count", async () => {
    const r = await workerKill(1500, { ...quiet, serverWorkers: 3, durationS: 8 });
    const f = r.figures;
    expect(f.victimOpen).toBeGreaterThan(0);
    expect(f.connsExact).toBe(true);
    // The bound is 1 s; the supervisor hears of the death at once (onExit), so 5 s is generous.
    expect(f.detectMs).not.toBeNull();
    expect(f.detectMs!).toBeLessThan(5000);
    expect(f.workerBackMs).not.toBeNull();
    expect(f.outages).toBe(1);
    expect(f.recoverySeconds).not.toBeNull();
    expect(f.openAtEnd).toBe(1500);
    expect(f.serverConnsAtEnd).toBe(1500);
    expect(r.checks.find((c) => c.what.startsWith("the clients lost exactly"))!.ok).toBe(true);
    expect(f.verdict).toStartWith("plan met: kept 1,500 connections; 1 outage, back in");
  }, 30_000);

  test("the whole server killed and started again on its port: every client back, none gives up, no dial timed out", async () => {
    const r = await restart(1000, { ...quiet, durationS: 15 });
    const f = r.figures;
    expect(f.backAfterRestartMs).not.toBeNull();
    // The bound is 10 s after the restart; twice that on a shared 2-core box.
    expect(f.backAfterRestartMs!).toBeLessThan(20_000);
    expect(f.openAtEnd).toBe(1000);
    expect(f.verdict).toStartWith("plan met: kept 1,000 connections; 1 outage");
    expect(f.refusedDials!).toBeGreaterThan(0);
    expect(f.refusedByCause.ETIMEDOUT ?? 0).toBe(0);
    expect(f.refusedByCause.HANDSHAKE_TIMEOUT ?? 0).toBe(0);
  }, 40_000);

  test("SIGTERM: every client gets close 1001 within --drain-timeout, exit 0, counts exact, and the load run ends then", async () => {
    const r = await drain(1000, quiet);
    const f = r.figures;
    expect(f.drops).toEqual({ CLOSE_1001: 1000 });
    expect(f.exitCode).toBe(0);
    expect(f.serverExitMs).toBeLessThanOrEqual(10_000);
    expect(f.connsBeforeTerm).toBe(1000);
    expect(f.serverAccepted).toBe(1000);
    expect(f.serverClosed).toBe(1000);
    expect(f.runSeconds).toBeLessThan(60);
    expect(r.checks.every((c) => c.ok)).toBe(true);
  }, 30_000);
});

describe("slow readers under broadcast (50 of 400 never read)", () => {
  const opts = { ...quiet, seconds: 4, rate: 10, size: 8192, maxBuffered: 16_384, baseline: false };

  test("--backpressure close: the slow ones are closed; every healthy receiver gets every message", async () => {
    const r = await slowReaders(400, 50, { ...opts, policies: ["close"] });
    const run = r.figures.runs[0]!;
    expect(run.policy).toBe("close");
    expect(run.published).toBeGreaterThan(20);
    expect(run.slowStillOpen).toBe(0);
    // Reading at last, each slow reader finds its connection ended after fewer messages than were sent.
    expect(run.slowFigures!.closedByServer).toBe(50);
    expect(run.slowFigures!.perConnection!.max).toBeLessThan(run.published);
    expect(run.received).toBe(run.expected);
    expect(run.healthyDropped).toBe(0);
  }, 30_000);

  test("--backpressure drop: the slow ones stay open and miss messages; every healthy receiver gets every message", async () => {
    const r = await slowReaders(400, 50, { ...opts, policies: ["drop"] });
    const run = r.figures.runs[0]!;
    expect(run.policy).toBe("drop");
    expect(run.slowStillOpen).toBe(50);
    expect(run.slowFigures!.closedByServer).toBe(0);
    expect(run.slowFigures!.perConnection!.max).toBeLessThan(run.published);
    expect(run.slowFigures!.perConnection!.min).toBeGreaterThan(0);
    expect(run.received).toBe(run.expected);
    expect(run.healthyDropped).toBe(0);
  }, 30_000);
});

test("half-sent upgrades and garbage after the upgrade beside healthy echo clients: the healthy ones lose nothing; garbage is failed with 1002", async () => {
  const r = await badClients(800, 200, 200, { ...quiet, durationS: 4, cleanAfter: false });
  const f = r.figures;
  expect(r.checks[0]!.ok).toBe(true);
  // Met: every healthy connection open to the end, none failed or dropped, sends at the offered rate.
  expect(f.withBad.met).toBe(true);
  expect(f.garbageClients!.upgraded).toBe(200);
  expect(f.garbageClients!.closeCodes).toEqual({ "1002": 200 });
  expect(f.halfClients!.opened).toBeGreaterThanOrEqual(200);
}, 30_000);
