// The live line: figures from workers whose reports come late are held and marked, never shown as zero.
import { afterAll, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { runLoad } from "../src/load/coordinator.ts";
import type { ProgressSnapshot } from "../src/load/report.ts";
import { progressLine } from "../src/report/progress.ts";
import { bunEcho, local, plan } from "./helpers/load.ts";

const stops: (() => unknown)[] = [];
afterAll(async () => { for (const s of stops.reverse()) await s(); });

/** This process's children (the load workers), from /proc. */
function childPids(): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
    const text = readFileSync(`/proc/${process.pid}/task/${tid}/children`, "utf8").trim();
    if (text) out.push(...text.split(/\s+/).map(Number));
  }
  return out;
}

test("a worker that stops reporting for two seconds is marked late and its rates are held, not zeroed", async () => {
  const srv = bunEcho();
  stops.push(() => srv.stop(true));
  const snaps: ProgressSnapshot[] = [];
  let stopped = 0;
  const r = await runLoad(plan(local(srv.port!), { connections: 40, workers: 2, intervalMs: 50, durationS: 6 }), {
    onProgress(s) {
      snaps.push(s);
      // Two seconds into the traffic, freeze one worker (SIGSTOP) for 2.5 s: its reports stop arriving.
      if (s.phase === "run" && stopped === 0 && snaps.filter((x) => x.phase === "run").length === 2) {
        stopped = childPids()[0] ?? 0;
        if (stopped > 0) process.kill(stopped, "SIGSTOP");
        setTimeout(() => process.kill(stopped, "SIGCONT"), 2500);
      }
    },
  });
  expect(stopped).toBeGreaterThan(0);
  const late = snaps.filter((s) => s.phase === "run" && s.lateWorkers > 0);
  expect(late.length).toBeGreaterThan(0);
  // The frozen worker's last rate is held: the line never shows zero traffic while the other one sends.
  for (const s of late) expect(s.msgsOutPerSec).toBeGreaterThan(0);
  expect(progressLine(late[0]!)).toContain("1 worker late: last rates held");
  expect(r.connections.failed).toBe(0);
}, 30_000);

test("closed loop (--in-flight): each connection keeps N outstanding and sends the next as an echo returns", async () => {
  const srv = bunEcho();
  stops.push(() => srv.stop(true));
  const r = await runLoad(plan(local(srv.port!), { connections: 10, inFlight: 4, intervalMs: 1000, durationS: 2 }));
  // Far more than an interval of 1 s would send (10 connections x 2 s = 20): the echoes set the pace.
  expect(r.traffic.sent).toBeGreaterThan(1000);
  // Every message sent in the run came back except at most N per connection still outstanding at its end.
  expect(r.traffic.sent - r.traffic.received).toBeLessThanOrEqual(10 * 4);
  expect(r.traffic.sent - r.traffic.received).toBeGreaterThanOrEqual(0);
  expect(r.traffic.offeredPerSec).toBe(0);
  expect(r.latency.rtt.count).toBe(r.traffic.received);
  expect(r.latency.lateness.count).toBe(0);
  expect(r.verdict.met).toBe(true);
  expect(r.plan.inFlight).toBe(4);
  // The fixed cost: the coordinator (this process) plus the one worker at rest, before any connection.
  expect(r.generator.processes).toBe(2);
  expect(r.generator.coordinatorRssBytes).toBeGreaterThan(1 << 20);
  expect(r.generator.fixedRssBytes).toBe(r.generator.coordinatorRssBytes + r.workers[0]!.baseRssBytes);
}, 30_000);
