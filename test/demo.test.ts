// `wsmillion demo` end to end on a small size (what `npm start` runs, and the vehicle of the million run).
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultInterval } from "../src/commands/demo.ts";
import { parseMeminfo } from "../src/system/meminfo.ts";
import { echoCapacity } from "../src/system/model.ts";
import { Timeline } from "../src/report/timeline.ts";
import type { ProgressSnapshot } from "../src/load/report.ts";
import type { ClusterStats } from "../src/server/stats.ts";

test("timeline: counts are compared only when taken close together, never on a phase's first sample", async () => {
  let conns = 100;
  const tl = new Timeline(async () => ({ conns, total: { rssBytes: 0, cpuCores: 0 } }) as unknown as ClusterStats);
  const snap = (t: number, phase: ProgressSnapshot["phase"], open: number) => ({ t, phase, open, failed: 0, rssBytes: 0, cpuCores: 0, msgsOutPerSec: 0, latencyP50Ms: 0, latencyP99Ms: 0 }) as ProgressSnapshot;
  await tl.record(snap(1, "run", 90)); // first of its phase: the generator's count may lag
  await tl.record(snap(2, "run", 100)); // compared, equal
  conns = 50; // the close has begun by the time a slow /stats answers
  await tl.record(snap(3, "run", 100), performance.now() - 5000); // taken 5 s before the answer: not compared
  await tl.record(snap(4, "run", 60)); // compared, differs
  const s = tl.summary(0);
  expect(s.steadyCompared).toBe(2);
  expect(s.steadyMismatches).toBe(1);
  expect(tl.samples[2]!.serverSkewMs).toBeGreaterThanOrEqual(5000);
});

test("demo's default traffic offers at most half of what the cores drive, at a round interval", () => {
  // 2 cores drive 1e6 * 2 / 37 = 54,054 echoes/s by the model: half is 27,027.
  expect(defaultInterval(50_000, 2)).toBe(2000); // 1,850 ms needed -> 25,000 msg/s
  expect(defaultInterval(400, 2)).toBe(100); // the shortest offered
  expect(defaultInterval(1_000_000, 2)).toBe(60_000); // 37 s needed -> the longest
  expect(defaultInterval(50_000, 16)).toBe(250); // more cores, more traffic
  for (const [n, cores] of [[50_000, 2], [200_000, 4], [3_000, 1]] as const) {
    expect((n * 1000) / defaultInterval(n, cores)).toBeLessThanOrEqual(echoCapacity(cores) * 0.5);
  }
});

test("meminfo: used is MemTotal - MemAvailable, slab in bytes", () => {
  const m = parseMeminfo("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    600 kB\nSlab:             50 kB\n");
  expect(m).toEqual({ totalBytes: 1000 * 1024, usedBytes: 400 * 1024, slabBytes: 50 * 1024 });
});

test("demo: ramp, traffic, idle hold, report files with the server's count equal to ours", async () => {
  const out = mkdtempSync(join(tmpdir(), "wsm-demo-"));
  const p = Bun.spawn([process.execPath, "src/cli.ts", "demo", "--connections", "400", "--interval", "500", "--duration", "2", "--hold", "2", "--out", out], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  expect(code).toBe(0);
  // Liveness left to the demo: scaled with the connections, and said in one line.
  expect(stdout).toContain("pings: every 30 s (400 connections at ≤ 14 pings/s), idle timeout 120 s");
  expect(stdout).toMatch(/demo: 400 of 400 connections held, 0 failed, 0 of [1-9]\d* steady samples where \/conns differed; traffic: .*; plan met/);
  const run = JSON.parse(readFileSync(join(out, "demo.json"), "utf8"));
  expect(run.schema).toBe("wsmillion.demo/1");
  expect(run.summary.peakOpen).toBe(400);
  expect(run.summary.steadyMismatches).toBe(0);
  expect(run.summary.steadyCompared).toBeGreaterThan(0);
  const phases = new Set(run.timeline.map((s: { phase: string }) => s.phase));
  expect(phases.has("run") && phases.has("hold")).toBe(true);
  for (const s of run.timeline.filter((x: { phase: string }) => x.phase === "hold")) expect(s.serverConns).toBe(400);
  expect(run.load.connections.failed).toBe(0);
  expect(readFileSync(join(out, "demo.md"), "utf8")).toContain("# wsmillion demo: 400 connections");
  const svg = readFileSync(join(out, "demo.svg"), "utf8");
  expect(svg).toStartWith("<svg");
  expect(svg).toContain("open (server /conns)");
  expect(svg.match(/<path d="M/g)?.length).toBe(3);
}, 60_000);

/** A child's stdout, read as it comes. */
function collect(stream: ReadableStream<Uint8Array>): { text: string; done: Promise<void> } {
  const decoder = new TextDecoder();
  const sink = { text: "", done: Promise.resolve() };
  sink.done = (async () => {
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) sink.text += decoder.decode(chunk);
  })();
  return sink;
}

async function waitForOutput(sink: { text: string }, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(sink.text)) {
    if (Date.now() > deadline) throw new Error(`demo did not print ${pattern} within ${timeoutMs} ms; got:\n${sink.text}`);
    await Bun.sleep(10);
  }
}

const sysctlPath = (key: string) => `/proc/sys/${key.replace(/\./g, "/")}`;
const readSysctl = (key: string) => readFileSync(sysctlPath(key), "utf8").trim();
const DEMO_SYSCTLS = ["net.core.netdev_max_backlog", "net.ipv4.tcp_migrate_req"];

/** Runs `body` with the demo's sysctls set to values the demo will change, and puts the machine's back after. */
async function withSysctls(values: string[], body: () => Promise<void>): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("this test changes sysctls and needs root (CI runs as root): run npm test as root");
  const before = DEMO_SYSCTLS.map(readSysctl);
  try {
    DEMO_SYSCTLS.forEach((k, i) => writeFileSync(sysctlPath(k), values[i]!));
    await body();
  } finally {
    DEMO_SYSCTLS.forEach((k, i) => writeFileSync(sysctlPath(k), before[i]!));
  }
}

test("demo: Ctrl-C during the load closes the connections, says how far it got, exits 130 and puts the sysctls back", async () => {
  await withSysctls(["1000", "0"], async () => {
    const p = Bun.spawn([process.execPath, "src/cli.ts", "demo", "--connections", "2000", "--interval", "1000", "--duration", "60"], { stdout: "pipe", stderr: "pipe" });
    const out = collect(p.stdout);
    // Printed as the load starts; the run lasts 60 s, so the interrupt lands in the ramp or the traffic.
    await waitForOutput(out, /^load: /m, 30_000);
    p.kill("SIGINT");
    const code = await p.exited;
    await out.done;
    expect(code).toBe(130);
    expect(out.text).toMatch(/demo: interrupted at [\d,]+ of 2,000 connections open at the most, 0 failed/);
    expect(DEMO_SYSCTLS.map(readSysctl)).toEqual(["1000", "0"]);
  });
}, 60_000);

test("demo: Ctrl-C right after the sysctls are applied still puts them back (exit 130)", async () => {
  await withSysctls(["1000", "0"], async () => {
    const p = Bun.spawn([process.execPath, "src/cli.ts", "demo", "--connections", "2000", "--interval", "1000", "--duration", "60"], { stdout: "pipe", stderr: "pipe" });
    const out = collect(p.stdout);
    await waitForOutput(out, /^sysctl net\./m, 30_000);
    p.kill("SIGINT");
    const code = await p.exited;
    await out.done;
    expect(code).toBe(130);
    expect(out.text).toMatch(/sysctl restored net\./);
    expect(DEMO_SYSCTLS.map(readSysctl)).toEqual(["1000", "0"]);
  });
}, 60_000);
