// The pieces of a distributed run that need no Redis: the split of a plan over agents in proportion to what
// each machine holds (and the plan check naming the agent that cannot), the exact merge of their
// histograms (equal to one histogram fed every sample, unlike averaged percentiles), the codec, the URL.
import { describe, expect, test } from "bun:test";
import { UsageError } from "../src/flags.ts";
import { apportion, splitPlan } from "../src/agents/split.ts";
import { mergeFleet, type FleetContext } from "../src/agents/merge.ts";
import { mergeFiles } from "../src/agents/offline.ts";
import { decode, encode, foldOutcomes, type AgentInfo, type AgentReport } from "../src/agents/protocol.ts";
import { parseRedisUrl } from "../src/bus/url.ts";
import { Metrics, newHistogram, zeroCounters } from "../src/load/metrics.ts";
import { completePlan, type LoadPlan } from "../src/load/plan.ts";
import { buildReport, type WorkerOutcome } from "../src/load/report.ts";
import type { LoadOptions } from "../src/load/plan-check.ts";
import { readLimits, type Limits } from "../src/system/limits.ts";
import { findProcess, parseCpuModes, parseSockstat, summarizeMonitor } from "../src/agents/monitor.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = readLimits();

/** This machine's limits with some of them set. */
function limits(over: { ports?: number; memBytes?: number; nofile?: number }): Limits {
  const l: Limits = structuredClone(base);
  if (over.ports !== undefined) {
    l.portRange = { ...l.portRange, value: { low: 30000, high: 30000 + over.ports - 1 } };
    l.reservedPorts = { ...l.reservedPorts, value: [] };
  }
  if (over.memBytes !== undefined) {
    l.memAvailable = { ...l.memAvailable, value: over.memBytes };
    l.memoryMax = { ...l.memoryMax, value: null };
  }
  if (over.nofile !== undefined) {
    l.nofile = { ...l.nofile, soft: over.nofile, hard: over.nofile };
    l.nrOpen = { ...l.nrOpen, value: null };
  }
  return l;
}

const info = (l: Limits): AgentInfo => ({ host: "box", pid: 1, cores: 2, limits: l, sources: ["10.77.0.2"], watching: null });

function options(over: Partial<LoadOptions>): LoadOptions {
  return {
    url: "ws://10.77.0.1:8080/ws", connections: 1000, concurrency: 100, rate: 0, duration: 1, hold: 0, interval: 100, inFlight: 0, size: 100, mode: "echo",
    tls: false, insecure: false, deflate: false, deflateClientNoContextTakeover: false, deflateServerNoContextTakeover: false, payload: "fill", workers: "auto", header: [], subprotocol: [], handshakeTimeoutMs: 5000, reconnect: false, sourcePorts: "explicit", maxMessage: 1 << 20, check: true, ...over,
  };
}

describe("splitting a plan over agents", () => {
  test("apportion adds up exactly and follows the weights", () => {
    expect(apportion(10, [1, 1, 1])).toEqual([4, 3, 3]);
    expect(apportion(200_000, [1, 1, 1, 1])).toEqual([50_000, 50_000, 50_000, 50_000]);
    const parts = apportion(1001, [3, 1]);
    expect(parts.reduce((a, b) => a + b, 0)).toBe(1001);
    expect(parts[0]! / parts[1]!).toBeCloseTo(3, 1);
  });

  test("shares follow what each agent's machine holds; rate and concurrency follow the shares", () => {
    // Both bound by ephemeral ports (one target): 30,000 against 10,000 per destination.
    const agents = [
      { name: "big", info: info(limits({ ports: 30_000, memBytes: 64 * 2 ** 30, nofile: 1 << 20 })) },
      { name: "small", info: info(limits({ ports: 10_000, memBytes: 64 * 2 ** 30, nofile: 1 << 20 })) },
    ];
    const { fleet, assignments } = splitPlan(options({ connections: 20_000, rate: 4000, concurrency: 400 }), agents);
    expect(assignments.map((a) => a.share.connections)).toEqual([15_000, 5000]);
    expect(assignments.map((a) => a.share.first)).toEqual([0, 15_000]);
    expect(assignments.map((a) => a.plan.connections)).toEqual([15_000, 5000]);
    expect(assignments.map((a) => a.share.rate)).toEqual([3000, 1000]);
    expect(assignments.map((a) => a.plan.concurrency)).toEqual([300, 100]);
    // The agents' plans leave the server's count to the coordinator; the fleet plan keeps it.
    expect(assignments.every((a) => a.plan.statusUrl === null)).toBe(true);
    expect(fleet).toMatchObject({ connections: 20_000, rate: 4000, concurrency: 400, statusUrl: "http://10.77.0.1:8080/conns" });
    expect(fleet.workers).toBe(assignments[0]!.plan.workers + assignments[1]!.plan.workers);
  });

  test("a plan the agents cannot hold fails before dialing, naming each agent and its binding limit", () => {
    const agents = [
      { name: "a1", info: info(limits({ ports: 1000, memBytes: 64 * 2 ** 30, nofile: 1 << 20 })) },
      { name: "a2", info: info(limits({ ports: 1000, memBytes: 64 * 2 ** 30, nofile: 1 << 20 })) },
    ];
    let err: unknown;
    try {
      splitPlan(options({ connections: 5000 }), agents);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    const msg = (err as Error).message;
    expect(msg).toContain("needs 5,000 connections and the 2 agents hold 2,000");
    expect(msg).toMatch(/a1: 1,000 \(bound by ephemeral ports/);
    expect(msg).toMatch(/a2: 1,000 \(bound by ephemeral ports/);
  });

  test("an agent whose share breaks its own limits is named with the reason (memory)", () => {
    // a2 has little memory; with --workers 1 and a low open-files limit, a1's share breaks its open files.
    const agents = [
      { name: "a1", info: info(limits({ ports: 60_000, memBytes: 64 * 2 ** 30, nofile: 600 })) },
      { name: "a2", info: info(limits({ ports: 60_000, memBytes: 64 * 2 ** 30, nofile: 1 << 20 })) },
    ];
    let msg = "";
    try {
      splitPlan(options({ connections: 2000, workers: 1 }), agents);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^agent a1: --workers 1: each worker would hold 1,?000 sockets but the open-files limit \(600\)/m);
    expect(msg).not.toMatch(/agent a2/);
  });

  test("--source belongs to one machine and is refused with --agents", () => {
    expect(() => splitPlan(options({ source: "10.0.0.2" }), [{ name: "a", info: info(base) }])).toThrow(/--source cannot be used with --agents/);
  });
});

/** A worker outcome whose final snapshot holds these round trips (ms). */
function outcome(index: number, rtts: number[]): WorkerOutcome {
  const m = new Metrics();
  for (const v of rtts) m.recordLatencyMs("rtt", v);
  m.counters.attempted = m.counters.opened = m.counters.closedByUs = 10;
  m.counters.msgsOut = m.counters.msgsIn = rtts.length;
  const c = { ...m.counters, open: 10 };
  return {
    shard: { index, slots: 10 }, pid: 100 + index, lastFigures: null, errors: {},
    ramped: { counters: c, rampMs: 50, rssBytes: 0, cpuUs: 0 }, held: { counters: c, cpuUs: 0, runMs: 1000 },
    final: { t: "final", snapshot: m.snapshot(), proc: { rssBytes: 0, cpuUserUs: 0, cpuSystemUs: 0, lagMaxMs: 0 }, baseRssBytes: 0, peakRssBytes: 0, rampRssBytes: 0, rampOpen: 10, planned: 0, runMs: 1000, spans: { slots: 10, fullMs: 0, outages: [] } },
    baseRss: 0, exitCode: 0, error: null,
  };
}

const ctx = {
  startedAt: new Date(), coordinatorRssBytes: 0, samples: [], warnings: [], peakOpen: 0, statusUrl: null, serverAtRamp: null, serverAtEnd: null, serverError: null,
  tcp: { phases: { ramp: {}, run: {}, close: {} }, unreadable: [] }, limits: () => base,
};
const fleetCtx: FleetContext = { samples: [], warnings: [], events: [], peakOpen: 0, serverAtRamp: null, serverAtEnd: null, serverError: null, redisCommandsPerAgentPerSec: null, monitors: [] };

function agentReport(name: string, index: number, agents: number, fleetPlan: LoadPlan, perWorker: number[][]): AgentReport {
  const plan = { ...fleetPlan, connections: perWorker.length * 10, workers: perWorker.length, statusUrl: null };
  const outcomes = perWorker.map((rtts, i) => outcome(i, rtts));
  return {
    schema: "wsmillion.agent-report/1", agent: { name, host: "box", pid: 10 + index, version: "t", instance: name }, run: { id: "r1", epoch: 1, redis: "redis://x:1" },
    fleetPlan, share: { index, agents, first: index * 20, connections: plan.connections, rate: 0, concurrency: 10 }, clock: { offsetMs: 0, rttMs: 0 },
    started: { ramp: 1000 + index, run: null, close: null }, outcomes, report: buildReport(plan, outcomes, ctx), interrupted: null, redisOutagesMs: [],
  };
}

describe("the exact merge", () => {
  // Four agents of two workers each, with very different latency spreads: percentiles averaged over agents
  // would be far off; merged histograms give exactly what one histogram of every sample gives.
  const fleetPlan = completePlan({ targets: [{ host: "127.0.0.1", port: 1 }], connections: 80, workers: 8, statusUrl: null, intervalMs: 100 }, 1 << 20);
  let seed = 7;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const spreads = [0.2, 1, 5, 40];
  const samples = spreads.map((s) => [0, 1].map(() => Array.from({ length: 3000 }, () => rand() * s + (rand() < 0.01 ? s * 20 : 0))));
  const reports = samples.map((w, i) => agentReport(`a${i + 1}`, i, 4, fleetPlan, w));

  test("merged p50/p99/p99.9 equal one histogram fed every sample", () => {
    const merged = mergeFleet({ id: "r1", epoch: 1, redis: "redis://x:1" }, fleetPlan, reports, [], fleetCtx);
    const one = newHistogram();
    for (const v of samples.flat(2)) one.recordValue(Math.round(v * 1000));
    const ms = (p: number): number => Math.round(one.getValueAtPercentile(p)) / 1000;
    expect(merged.latency.rtt.count).toBe(4 * 2 * 3000);
    expect(merged.latency.rtt.p50Ms).toBe(ms(50));
    expect(merged.latency.rtt.p99Ms).toBe(ms(99));
    expect(merged.latency.rtt.p999Ms).toBe(ms(99.9));
    // What averaging the agents' percentiles would have said is far from it.
    const averaged = reports.reduce((n, r) => n + r.report.latency.rtt.p99Ms, 0) / reports.length;
    expect(Math.abs(averaged - merged.latency.rtt.p99Ms)).toBeGreaterThan(merged.latency.rtt.p99Ms * 0.2);
    // Counts are the sum of the agents' own reports.
    expect(merged.counters.msgsOut).toBe(reports.reduce((n, r) => n + r.report.counters.msgsOut, 0));
    expect(merged.connections.openAtRamp).toBe(80);
    expect(merged.fleet.agents.map((a) => a.name)).toEqual(["a1", "a2", "a3", "a4"]);
    expect(merged.fleet.startSkewMs).toBe(3);
    expect(merged.fleet.exitCode).toBe(0);
    expect(merged.plan.workers).toBe(8);
  });

  test("a lost agent counts with its last figures and makes the run partial (exit 3); its own file completes it", () => {
    const folded = foldOutcomes(reports[3]!.outcomes.map((o) => ({ ...o, lastFigures: { counters: o.final!.snapshot.counters, proc: o.final!.proc, planned: 0 }, final: null })), 3, 20, 13);
    const lost = { name: "a4", host: "box", pid: 13, share: reports[3]!.share, clock: { offsetMs: 0, rttMs: 0 }, atS: 5, reason: "no heartbeat", outcome: folded };
    const partial = mergeFleet({ id: "r1", epoch: 1, redis: "redis://x:1" }, fleetPlan, reports.slice(0, 3), [lost], fleetCtx);
    expect(partial.fleet.partial).toBe(true);
    expect(partial.fleet.exitCode).toBe(3);
    expect(partial.verdict.reasons.join(";")).toContain("agent a4 lost at 5.0 s (no heartbeat)");
    expect(partial.counters.msgsOut).toBe(reports.reduce((n, r) => n + r.report.counters.msgsOut, 0));
    expect(partial.fleet.agents.find((a) => a.name === "a4")!.status).toBe("lost");
    // The coordinator's JSON plus the lost agent's own report: the full run, the same as if nothing was lost.
    const full = mergeFiles([{ path: "fleet.json", doc: JSON.parse(JSON.stringify(partial)) }, { path: "a4.json", doc: JSON.parse(JSON.stringify(reports[3])) }]);
    expect(full.fleet.partial).toBe(false);
    expect(full.fleet.exitCode).toBe(0);
    expect(full.latency.rtt.count).toBe(4 * 2 * 3000);
  });

  test("merge refuses files of different runs and files that are not reports", () => {
    const other = { ...reports[1]!, run: { ...reports[1]!.run, id: "r2" } };
    expect(() => mergeFiles([{ path: "a.json", doc: reports[0] }, { path: "b.json", doc: other }])).toThrow(/b.json is from run r2.*the others from run r1/);
    expect(() => mergeFiles([{ path: "x.json", doc: { schema: "wsmillion.load/1" } }])).toThrow(/x.json is neither an agent report/);
  });

  test("agent files alone: a missing agent makes the run partial", () => {
    const m = mergeFiles(reports.slice(0, 2).map((r, i) => ({ path: `${i}.json`, doc: r })));
    expect(m.fleet.exitCode).toBe(3);
    expect(m.verdict.reasons.join(";")).toContain("no report from 2 of the run's 4 agents (share 2, 3)");
  });

  test("folding an agent's workers sums their counters and keeps the longest times", () => {
    const a = outcome(0, [1, 2]);
    const b = outcome(1, [3]);
    const f = foldOutcomes([{ ...a, lastFigures: { counters: { ...zeroCounters(), msgsOut: 2 }, proc: { rssBytes: 5, cpuUserUs: 1, cpuSystemUs: 1, lagMaxMs: 3 }, planned: 4 } },
      { ...b, lastFigures: { counters: { ...zeroCounters(), msgsOut: 1 }, proc: { rssBytes: 7, cpuUserUs: 2, cpuSystemUs: 2, lagMaxMs: 9 }, planned: 6 }, ramped: { ...b.ramped!, rampMs: 80 } }], 2, 20, 99);
    expect(f.lastFigures).toEqual({ counters: { ...zeroCounters(), msgsOut: 3 }, proc: { rssBytes: 12, cpuUserUs: 3, cpuSystemUs: 3, lagMaxMs: 9 }, planned: 10 });
    expect(f.ramped!.rampMs).toBe(80);
    expect(f.ramped!.counters.open).toBe(20);
    expect(f.shard).toEqual({ index: 2, slots: 20 });
  });
});

describe("wire pieces", () => {
  test("the codec keeps Infinity (the limits' 'unlimited')", () => {
    const v = decode<{ a: number; b: number[]; c: string }>(encode({ a: Infinity, b: [-Infinity, 1], c: "Infinity" }));
    expect(v).toEqual({ a: Infinity, b: [-Infinity, 1], c: "Infinity" });
  });

  test("redis URLs: credentials, database, and a display without the password", () => {
    expect(parseRedisUrl("redis://:s3cret@10.77.0.1:6380/2")).toMatchObject({ host: "10.77.0.1", port: 6380, db: 2, user: null, password: "s3cret", display: "redis://:***@10.77.0.1:6380/2" });
    expect(parseRedisUrl("redis://bob:pw@h")).toMatchObject({ port: 6379, user: "bob", db: 0, display: "redis://bob:***@h:6379" });
    expect(() => parseRedisUrl("http://h:1")).toThrow(/--redis takes redis:\/\//);
    expect(() => parseRedisUrl("redis://h:1/x")).toThrow(/database must be a number/);
  });
});

describe("the monitor's readings", () => {
  test("CPU by mode, sockstat, and the summary over the traffic", () => {
    expect(parseCpuModes("cpu  100 5 50 800 10 1 20 0 0 0\ncpu0 1 2 3\n")).toEqual({ user: 100, nice: 5, system: 50, idle: 800, iowait: 10, irq: 1, softirq: 20, steal: 0 });
    expect(parseSockstat("sockets: used 9\nTCP: inuse 412 orphan 3 tw 17 alloc 420 mem 61\nUDP: inuse 1\n")).toEqual({ inuse: 412, orphan: 3, timeWait: 17, memPages: 61 });
    const cpu = { user: 0.5, nice: 0, system: 0.25, iowait: 0, irq: 0, softirq: 0.25, steal: 0, idle: 1 };
    const sample = (t: number, tcp: number, tree: number) => ({
      t, cpu, load: { load1: t, load5: 0, load15: 0, running: 1 }, memUsedBytes: t * 100, memTotalBytes: 1000, slabBytes: 0,
      tcp: { inuse: tcp, timeWait: 0, orphan: 0, memPages: 0 }, tree: { root: 1, processes: 3, cpuCores: tree, rssBytes: 10 * t },
    });
    const s = summarizeMonitor([sample(1, 5, 9), sample(2, 10, 0.5), sample(3, 30, 1.5), sample(4, 99, 9)], 1, 3)!;
    expect(s).toMatchObject({ seconds: 2, busyCoresMean: 1, userMean: 0.5, systemMean: 0.25, softirqMean: 0.25, load1Max: 3, memUsedMaxBytes: 300, tcpInuseMax: 30, treeCpuMean: 1, treeCpuMax: 1.5, treeRssMaxBytes: 30, treeProcessesMax: 3 });
    expect(summarizeMonitor([sample(9, 1, 1)], 1, 3)).toBeNull();
  });

  test("a process found by name is the root of its tree", () => {
    const root = mkdtempSync(join(tmpdir(), "wsm-proc-"));
    try {
      const proc = (pid: number, ppid: number, comm: string, argv: string[]): void => {
        mkdirSync(join(root, String(pid)));
        writeFileSync(join(root, String(pid), "comm"), `${comm}\n`);
        writeFileSync(join(root, String(pid), "cmdline"), argv.join("\0") + "\0");
        writeFileSync(join(root, String(pid), "stat"), `${pid} (${comm}) S ${ppid} 1 1 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 100 0 0\n`);
      };
      proc(50, 1, "bash", ["bash"]);
      proc(70, 50, "redis-server", ["/usr/bin/redis-server", "*:6379"]);
      proc(71, 70, "redis-server", ["/usr/bin/redis-server", "*:6379"]);
      proc(90, 50, "bun", ["/usr/bin/bun", "src/cli.ts", "serve"]);
      expect(findProcess("redis-server", root)).toBe(70);
      expect(findProcess("bun", root)).toBe(90);
      expect(findProcess("nginx", root)).toBeNull();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
