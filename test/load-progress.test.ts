// The live line: figures from workers whose reports come late are held and marked, never shown as zero.
import { afterAll, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { runLoad } from "../src/load/coordinator.ts";
import type { ProgressSnapshot } from "../src/load/report.ts";
import { progressLine } from "../src/report/progress.ts";
import { bunEcho, local, plan } from "./load-helpers.ts";

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
  const r = await runLoad(plan(local(srv.port), { connections: 40, workers: 2, intervalMs: 50, durationS: 6 }), {
    onProgress(s) {
      snaps.push(s);
      // Two seconds into the traffic, freeze one worker (SIGSTOP) for 2.5 s: its reports stop arriving.
      if (s.phase === "run" && stopped === 0 && snaps.filter((x) => x.phase === "run").length === 2) {
        stopped = childPids()[0]!;
        process.kill(stopped, "SIGSTOP");
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
