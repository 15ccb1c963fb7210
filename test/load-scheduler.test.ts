// The send scheduler's plan: even phases, one call per slot per tick, batches when a tick finds more than
// a round due, and every planned send accounted for exactly once.
import { describe, expect, test } from "bun:test";
import { SendScheduler } from "../src/load/scheduler.ts";
import { eventually } from "./helpers/eventually.ts";

interface Call {
  slot: number;
  firstDue: number;
  count: number;
}

function collect(slots: number, intervalMs: number, worker = 0, workers = 1, total = slots) {
  const calls: Call[] = [];
  const s = new SendScheduler(slots, intervalMs, worker, workers, total, (slot, firstDue, count) => calls.push({ slot, firstDue, count }));
  return { s, calls };
}

describe("send scheduler", () => {
  test("phases spread a worker's slots evenly across the interval, interleaved with other workers", () => {
    const { s } = collect(4, 100, 1, 2, 8);
    s.start(0);
    s.stop();
    // Worker 1 of 2 over 8 connections: global slots 1, 3, 5, 7 -> 12.5, 37.5, 62.5, 87.5 ms.
    expect([0, 1, 2, 3, 4].map((j) => s.dueAt(j))).toEqual([12.5, 37.5, 62.5, 87.5, 112.5]);
  });

  test("on time: one send per call, each slot in turn", async () => {
    const { s, calls } = collect(50, 200);
    s.start(performance.now());
    try {
      // Into the second round: every slot has had its turn once.
      await eventually(() => calls.length > 50, { timeoutMs: 3000, what: "more than 50 sends" });
    } finally {
      s.stop();
    }
    expect(calls.length).toBeGreaterThan(50);
    expect(calls.every((c) => c.count === 1)).toBe(true);
    expect(calls.slice(0, 50).map((c) => c.slot)).toEqual([...Array(50).keys()]);
    expect(s.planned).toBe(calls.length);
  });

  test("a tick that finds rounds overdue sends each slot's due sends in one call", async () => {
    const { s, calls } = collect(10, 1);
    // Start 25 ms in the past: 250 sends are due at the first tick, 25 for each of the 10 slots.
    const t0 = performance.now() - 25;
    s.start(t0);
    try {
      await eventually(() => calls.length >= 10, { timeoutMs: 3000, what: "a call for each of the 10 slots" });
    } finally {
      s.stop();
    }
    const first = calls.slice(0, 10);
    expect(first.map((c) => c.slot).sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    expect(first.every((c) => c.count >= 25)).toBe(true);
    expect(first[0]!.firstDue).toBe(s.dueAt(0));
    // Every planned send went out exactly once.
    expect(calls.reduce((n, c) => n + c.count, 0)).toBe(s.planned);
  });

  test("with more slots than a tick may write, an overdue round still batches and recovers", async () => {
    const slots = 5000;
    const { s, calls } = collect(slots, 10);
    // 30 ms overdue at 10 ms: at least 3 rounds (15,000 sends) due at the first tick, more than the
    // 4,096 writes a tick may make one by one, so they must go out batched, one call per slot.
    s.start(performance.now() - 30);
    try {
      await eventually(() => calls.length >= slots, { timeoutMs: 3000, what: `a call for each of the ${slots} slots` });
    } finally {
      s.stop();
    }
    const first = calls.slice(0, slots);
    // The first tick visits every slot exactly once, in order...
    expect(first.map((c) => c.slot)).toEqual([...Array(slots).keys()]);
    // ...handing each its 3 or more overdue sends in one call, the first of them planned at its own phase.
    expect(first.filter((c) => c.count < 3).length).toBe(0);
    expect(first.map((c) => c.firstDue)).toEqual(first.map((c) => s.dueAt(c.slot)));
    // Every planned send went out exactly once, and the batch covered at least 3 rounds.
    expect(calls.reduce((n, c) => n + c.count, 0)).toBe(s.planned);
    expect(s.planned).toBeGreaterThanOrEqual(3 * slots);
  });
});
