// The send scheduler's plan: even phases, one call per slot per tick, batches when a tick finds more than
// a round due, and every planned send accounted for exactly once.
import { describe, expect, test } from "bun:test";
import { SendScheduler } from "../src/load/scheduler.ts";

interface Call { slot: number; firstDue: number; count: number }

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
    await Bun.sleep(450);
    s.stop();
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
    for (let i = 0; i < 50 && calls.length < 10; i++) await Bun.sleep(1);
    s.stop();
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
    s.start(performance.now() - 30);
    for (let i = 0; i < 50 && calls.length < slots; i++) await Bun.sleep(1);
    s.stop();
    expect(calls.slice(0, slots).every((c) => c.count >= 3)).toBe(true);
    expect(calls.reduce((n, c) => n + c.count, 0)).toBe(s.planned);
  });
});
