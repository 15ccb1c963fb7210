// Four load agents in four network namespaces against one `wsmillion serve` in a fifth (scripts/netns-lab),
// coordinated through Redis on the bridge. Two runs:
//  1. hold: 4 x PER connections (the target: 50,000 each, 200,000 in all; default 5,000 so `npm run bench`
//     stays light), idle, held for HOLD s. Target: 0 failed,
//     the merged counts equal to the sum of the agents' own reports and to the server's /conns.
//  2. the first traffic round of the field report, as it ran but sized for this box: 4 agents x ROUND
//     connections x 100 bytes every 100 ms (default 500 each: 20,000 msg/s, what 2 cores carry with both
//     ends on the box), one row per agent.
// Both: merged p50/p99/p99.9 checked against the agents' encoded histograms merged here, the agents' start
// skew on Redis's clock, and Redis's own count of commands per agent per second in the steady state.
// Needs root. Heavy at full scale (several GB, minutes on 2 cores): `bun bench/agents-fleet.ts 50000`.
// Ratio: connections held / asked in run 1 (1 meets the plan). Figures go to docs/DISTRIBUTED.md.
import type { Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FleetReport } from "../src/agents/merge.ts";
import { mergeEncoded, newHistogram } from "../src/load/metrics.ts";
import { ROOT, finish } from "./load-lib.ts";

const PER = Number(process.argv[2] ?? 5000);
const AGENTS = Number(process.argv[3] ?? 4);
const ROUND = Number(process.argv[4] ?? 500);
const HOLD_S = 10;
const PREFIX = "wsmb";
const NET = "10.77.50";
const LAB = join(ROOT, "scripts", "netns-lab");
const CLI = join(ROOT, "src", "cli.ts");
const PORT = 6390;
const REDIS = `redis://${NET}.1:${PORT}`;

const procs: Subprocess[] = [];
const dir = mkdtempSync(join(tmpdir(), "wsm-bench-fleet-"));

function spawn(cmd: string[], ns?: string): Subprocess<"ignore", "pipe", "inherit"> {
  const p = Bun.spawn([...(ns ? ["ip", "netns", "exec", `${PREFIX}-${ns}`] : []), ...cmd], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  procs.push(p);
  return p;
}

/** Reads a child's stdout until `re` matches (and keeps draining it). */
async function until(p: Subprocess<"ignore", "pipe", "inherit">, re: RegExp, timeoutMs = 60_000): Promise<void> {
  const reader = p.stdout.getReader();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (!re.test(text)) {
    if (Date.now() > deadline) throw new Error(`no ${re} within ${timeoutMs} ms: ${text.slice(-500)}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`exited before ${re}: ${text.slice(-500)}`);
    text += new TextDecoder().decode(value);
  }
  void (async () => {
    for (;;) if ((await reader.read()).done) break;
  })();
}

async function redisStat(): Promise<number> {
  const out = Bun.spawnSync(["redis-cli", "-h", `${NET}.1`, "-p", String(PORT), "INFO", "stats"]).stdout.toString();
  return Number(/total_commands_processed:(\d+)/.exec(out)?.[1]);
}

/** One coordinated run; its report, checked for the exact merge. */
async function run(name: string, args: string[]): Promise<{ report: FleetReport; exitCode: number; seconds: number }> {
  const json = join(dir, `${name}.json`);
  const t0 = performance.now();
  const p = Bun.spawn([process.execPath, CLI, "load", "--targets", `${NET}.2-5:8080`, ...args, "--redis", REDIS, "--agents", String(AGENTS), "--agents-timeout", "60", "--json", json, "--quiet"], {
    stdout: "inherit",
    stderr: "inherit",
  });
  procs.push(p);
  const exitCode = await p.exited;
  const report = JSON.parse(readFileSync(json, "utf8")) as FleetReport;
  const h = newHistogram();
  const lat = report.plan.mode === "echo" ? "rtt" : "handshake";
  for (const a of report.fleet.agentReports) mergeEncoded(h, a.report.latency[lat].encoded);
  const same = [50, 99, 99.9].every((q, i) => Math.round(h.getValueAtPercentile(q)) / 1000 === [report.latency[lat].p50Ms, report.latency[lat].p99Ms, report.latency[lat].p999Ms][i]);
  if (!same) throw new Error(`${name}: merged ${lat} percentiles differ from the agents' histograms merged here`);
  return { report, exitCode, seconds: Math.round((performance.now() - t0) / 100) / 10 };
}

const sum = (r: FleetReport, f: (a: FleetReport["fleet"]["agentReports"][number]) => number): number => r.fleet.agentReports.reduce((n, a) => n + f(a), 0);

try {
  const up = Bun.spawnSync([LAB, "up", "--prefix", PREFIX, "--clients", String(AGENTS), "--net", NET, "--server-addrs", "4"], { stdout: "inherit", stderr: "inherit" });
  if (up.exitCode !== 0) throw new Error("netns-lab up failed");
  spawn(["redis-server", "--port", String(PORT), "--bind", `${NET}.1`, "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"]);
  const total = PER * AGENTS;
  const server = spawn([process.execPath, CLI, "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", String(Math.max(2, Math.ceil(total / 19_000))), "--max-conns", String(total + 1000)], "server");
  await until(server, /listening on/);
  for (let i = 1; i <= AGENTS; i++) await until(spawn([process.execPath, CLI, "agent", "--redis", REDIS, "--name", `c${i}`, "--out", dir], `c${i}`), /waiting for work/);

  const before = await redisStat();
  const hold = await run("hold", ["--connections", String(total), "--mode", "idle", "--duration", String(HOLD_S), "--concurrency", String(2000), "--handshake-timeout", "60"]);
  const after = await redisStat();
  const h = hold.report;
  const round = await run("round", ["--connections", String(ROUND * AGENTS), "--mode", "echo", "--size", "100", "--interval", "100", "--duration", "10"]);
  const r = round.report;
  const figures = {
    agents: AGENTS,
    hold: {
      connections: total, exitCode: hold.exitCode, seconds: hold.seconds, openAtRamp: h.connections.openAtRamp, failed: h.connections.failed, dropped: h.connections.dropped,
      rampSeconds: h.connections.rampSeconds, dialsPerSecond: h.connections.dialsPerSecond,
      serverConnsAtRamp: h.server.atRamp?.conns ?? null, serverConnsAtEnd: h.server.atEnd?.conns ?? null,
      sumOfAgentsOpenAtRamp: sum(h, (a) => a.report.connections.openAtRamp), sumOfAgentsOpened: sum(h, (a) => a.report.counters.opened), mergedOpened: h.counters.opened,
      handshakeP50Ms: h.latency.handshake.p50Ms, handshakeP99Ms: h.latency.handshake.p99Ms, handshakeP999Ms: h.latency.handshake.p999Ms,
      startSkewMs: h.fleet.startSkewMs, redisCommandsPerAgentPerSecInTraffic: h.fleet.redisCommandsPerAgentPerSec,
      redisCommandsWholeRun: after - before - 1,
      agentsRows: h.fleet.agents.map((a) => ({ name: a.name, connections: a.connections, opened: a.openAtRamp, failed: a.failed, cpuSeconds: a.cpuSeconds, workers: a.workers })),
    },
    round: {
      connections: ROUND * AGENTS, exitCode: round.exitCode, offeredPerSec: r.traffic.offeredPerSec, achievedPerSec: r.traffic.achievedPerSec, receivedPerSec: r.traffic.receivedPerSec,
      rttP50Ms: r.latency.rtt.p50Ms, rttP99Ms: r.latency.rtt.p99Ms, rttP999Ms: r.latency.rtt.p999Ms, sent: r.counters.msgsOut, sumOfAgentsSent: sum(r, (a) => a.report.counters.msgsOut),
      startSkewMs: r.fleet.startSkewMs, redisCommandsPerAgentPerSecInTraffic: r.fleet.redisCommandsPerAgentPerSec,
      agentsRows: r.fleet.agents.map((a) => ({ name: a.name, connections: a.connections, sent: a.sent, received: a.received, rttP99Ms: a.latencyP99Ms })),
    },
  };
  console.log(JSON.stringify(figures, null, 2));
  finish("agents-fleet", figures, h.connections.openAtRamp / total);
} finally {
  for (const p of procs.reverse()) {
    if (p.exitCode === null) p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 30_000);
    await p.exited;
    clearTimeout(t);
  }
  Bun.spawnSync([LAB, "down", "--prefix", PREFIX], { stdout: "inherit", stderr: "inherit" });
  rmSync(dir, { recursive: true, force: true });
}
