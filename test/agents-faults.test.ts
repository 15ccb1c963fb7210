// Faults in a run on agents (loopback, a private redis-server, agents as local processes):
// - an agent killed with SIGKILL: found lost when its heartbeat expires, named with when, its last figures
//   kept, the other goes on, exit 3;
// - Redis stopped and started again: the agents keep running, buffer their figures, report again; exit 0;
// - Redis gone for good: the agents finish, write their final reports locally, `merge` rebuilds the run;
// - an agent stopped with SIGTERM, the coordinator interrupted: connections closed, figures kept, said so;
// - the coordinator killed: the agents stop their plan, close their connections, write their reports.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FleetReport } from "../src/agents/merge.ts";
import type { AgentReport } from "../src/agents/protocol.ts";
import { Started, agent, cli, startRedis, type Cli, type RedisServer } from "./helpers/agents.ts";
import { eventually } from "./helpers/eventually.ts";
import { bunEcho, type TcpServer } from "./helpers/load.ts";

const started = new Started();
afterEach(() => started.cleanup());
const track = started.track;

interface Setup {
  r: RedisServer;
  srv: TcpServer;
  url: string;
  dir: string;
  agents: Cli[];
}

/** A Redis, an echo server, a directory, and `n` agents (a1..an) writing their local reports there. */
async function setup(n: number, agentArgs: string[] = []): Promise<Setup> {
  const r = await startRedis();
  started.redis.push(r);
  const srv = bunEcho();
  started.servers.push(srv);
  const dir = mkdtempSync(join(tmpdir(), "wsm-faults-"));
  started.dirs.push(dir);
  const agents: Cli[] = [];
  for (let i = 1; i <= n; i++) agents.push(track(await agent(r.url, `a${i}`, ["--out", dir, ...agentArgs])));
  return { r, srv, url: `ws://127.0.0.1:${srv.port}/ws`, dir, agents };
}

const conns = (srv: TcpServer): number => srv.pendingWebSockets;

describe("faults", () => {
  test("an agent killed mid-run: lost when its heartbeat expires, named with when, its last figures kept, the other goes on; exit 3", async () => {
    const s = await setup(2);
    const json = join(s.dir, "fleet.json");
    const coord = track(cli(["load", s.url, "--connections", "200", "--duration", "20", "--interval", "100", "--redis", s.r.url, "--agents", "2", "--agents-timeout", "20", "--json", json]));
    await coord.waitFor(/run .*open 200\/200.*msg\/s out [1-9]/, 30_000);
    // Killed early in a long traffic phase: the loss (about 11 s later) comes while the other still sends.
    s.agents[1]!.proc.kill("SIGKILL");
    // Its workers notice their parent is gone and close their connections; the other agent's stay.
    await eventually(() => conns(s.srv) === 100, { timeoutMs: 10_000, what: "a2's connections to close" });
    await coord.waitFor(/agent a2 lost: no heartbeat for 10 s \(its last figures, [\d.]+ s old, are kept\); the others go on/, 30_000);
    await coord.waitFor(/\| a1 \S+ \d+ {2}a2 LOST$/m); // the live line
    expect(await coord.exited).toBe(3);
    const text = coord.text();
    expect(text).toMatch(/^ {2}a2 .* lost: lost at [\d.]+ s: no heartbeat for 10 s$/m);
    expect(text).toMatch(/^ {2}a1 .* ok$/m);
    expect(text).toMatch(/^Result: partial run \(exit 3\): .*agent a2 lost at [\d.]+ s/m);
    const rep = JSON.parse(readFileSync(json, "utf8")) as FleetReport;
    expect(rep.fleet.exitCode).toBe(3);
    expect(rep.fleet.partial).toBe(true);
    const a1 = rep.fleet.agentReports.find((a) => a.agent.name === "a1")!;
    const lost = rep.fleet.lost.find((l) => l.name === "a2")!;
    // a2's last figures count: messages it had sent before it was killed.
    const a2sent = lost.outcome.lastFigures!.counters.msgsOut;
    expect(a2sent).toBeGreaterThan(0);
    expect(rep.counters.msgsOut).toBe(a1.report.counters.msgsOut + a2sent);
    expect(rep.latency.rtt.count).toBeGreaterThan(a1.report.latency.rtt.count);
    // a1 ran its whole plan.
    expect(a1.interrupted).toBeNull();
    expect(a1.report.traffic.runSeconds).toBeGreaterThanOrEqual(19.9);
  }, 60_000);

  test("Redis stopped mid-run and started again: the agents go on, buffer their figures and report again; the run completes", async () => {
    const s = await setup(2);
    const json = join(s.dir, "fleet.json");
    const coord = track(cli(["load", s.url, "--connections", "200", "--duration", "8", "--interval", "100", "--redis", s.r.url, "--agents", "2", "--agents-timeout", "20", "--json", json]));
    await coord.waitFor(/run .*open 200\/200.*msg\/s out [1-9]/, 30_000);
    await s.r.stop();
    await coord.waitFor(/Redis unreachable; the agents keep running their plan/);
    for (const a of s.agents) await a.waitFor(/Redis unreachable; the plan goes on, figures are kept/);
    // The connections stay up while Redis is away.
    await Bun.sleep(3000);
    expect(conns(s.srv)).toBe(200);
    await s.r.start();
    for (const a of s.agents) await a.waitFor(/Redis back after [\d.]+ s; sending \d+ queued messages/);
    await coord.waitFor(/Redis back after/);
    expect(await coord.exited).toBe(0);
    const rep = JSON.parse(readFileSync(json, "utf8")) as FleetReport;
    expect(rep.fleet.partial).toBe(false);
    expect(rep.fleet.agentReports.map((a) => a.agent.name).sort()).toEqual(["a1", "a2"]);
    expect(rep.fleet.agentReports.every((a) => a.redisOutagesMs.length === 1 && a.redisOutagesMs[0]! >= 3000)).toBe(true);
    expect(rep.counters.msgsOut).toBe(rep.fleet.agentReports.reduce((n, a) => n + a.report.counters.msgsOut, 0));
    expect(rep.connections.openAtRamp).toBe(200);
    expect(rep.counters.failed + rep.counters.dropped).toBe(0);
  }, 60_000);

  test("Redis gone for good: the agents finish their plan and write their reports locally; merge rebuilds the run", async () => {
    const s = await setup(2, ["--redis-grace", "3"]);
    const json = join(s.dir, "fleet.json");
    const coord = track(cli(["load", s.url, "--connections", "100", "--duration", "5", "--interval", "100", "--redis", s.r.url, "--agents", "2", "--agents-timeout", "20", "--redis-grace", "3", "--json", json]));
    await coord.waitFor(/run .*open 100\/100.*msg\/s out [1-9]/, 30_000);
    await s.r.stop();
    const files: string[] = [];
    for (const a of s.agents) {
      const m = await a.waitFor(/run \S+ done \(plan (?:NOT )?met\); Redis unreachable: final report written to (\S+) \(merge it with/, 40_000);
      files.push(m[1]!);
      expect(a.text()).toContain("Redis unreachable; the plan goes on, figures are kept");
    }
    expect(await coord.exited).toBe(3);
    expect(coord.text()).toMatch(/agent a1 lost: no final report: Redis away for more than 3 s/);
    // Their connections were closed at the end of their plan, without the coordinator.
    expect(conns(s.srv)).toBe(0);
    const reports = files.map((f) => JSON.parse(readFileSync(f, "utf8")) as AgentReport);
    expect(reports.map((r) => r.agent.name).sort()).toEqual(["a1", "a2"]);
    expect(reports.every((r) => r.report.connections.openAtRamp === 50 && r.interrupted === null)).toBe(true);
    // The coordinator's partial report and the agents' files: the whole run again.
    const merged = join(s.dir, "merged.json");
    const m = track(cli(["merge", json, ...files, "--json", merged]));
    const code = await m.exited;
    expect(m.text()).toMatch(/^ {2}a1 .* ok$/m);
    expect(m.text()).toMatch(/^ {2}a2 .* ok$/m);
    const rep = JSON.parse(readFileSync(merged, "utf8")) as FleetReport;
    expect(rep.fleet.partial).toBe(false);
    expect(code).toBe(rep.verdict.met ? 0 : 1);
    expect(rep.counters.msgsOut).toBe(reports[0]!.report.counters.msgsOut + reports[1]!.report.counters.msgsOut);
    expect(rep.connections.openAtRamp).toBe(100);
  }, 60_000);

  test("an agent stopped (SIGTERM) mid-run closes its connections, sends what it measured and leaves; the run says it was interrupted", async () => {
    const s = await setup(2);
    const json = join(s.dir, "fleet.json");
    const coord = track(cli(["load", s.url, "--connections", "200", "--duration", "8", "--interval", "100", "--redis", s.r.url, "--agents", "2", "--agents-timeout", "20", "--json", json]));
    await coord.waitFor(/run .*open 200\/200.*msg\/s out [1-9]/, 30_000);
    expect(await s.agents[1]!.stop("SIGTERM")).toBe(0);
    expect(s.agents[1]!.text()).toMatch(/stopping: closing the run's connections[\s\S]*final report sent[\s\S]*agent a2: left/);
    await eventually(() => conns(s.srv) === 100, { timeoutMs: 5000, what: "a2's connections closed at the server" });
    expect(await coord.exited).toBe(1);
    const rep = JSON.parse(readFileSync(json, "utf8")) as FleetReport;
    expect(rep.fleet.partial).toBe(false);
    expect(rep.verdict.reasons).toContain("agent a2 was interrupted: the agent was stopped");
    expect(rep.fleet.agents.find((a) => a.name === "a2")).toMatchObject({ status: "interrupted", note: "the agent was stopped" });
    expect(rep.counters.closedByUs).toBe(200);
  }, 60_000);

  test("the coordinator interrupted (SIGINT): the agents close their connections and report; exit 130", async () => {
    const s = await setup(1);
    const coord = track(cli(["load", s.url, "--connections", "100", "--duration", "60", "--interval", "100", "--redis", s.r.url, "--agents", "1", "--agents-timeout", "20"]));
    await coord.waitFor(/run .*open 100\/100/, 30_000);
    coord.proc.kill("SIGINT");
    expect(await coord.exited).toBe(130);
    expect(coord.text()).toMatch(/run aborted: interrupted \(Ctrl-C\)/);
    expect(coord.text()).toMatch(/^ {2}a1 .* interrupted: aborted by the coordinator: interrupted \(Ctrl-C\)$/m);
    await eventually(() => conns(s.srv) === 0, { timeoutMs: 5000, what: "the agent's connections closed at the server" });
    await s.agents[0]!.waitFor(/done \(plan (?:NOT )?met; aborted by the coordinator: interrupted \(Ctrl-C\)\); final report sent/);
  }, 60_000);

  test("the coordinator killed: the agents stop their plan, close their connections and write their reports", async () => {
    const s = await setup(2);
    const coord = track(cli(["load", s.url, "--connections", "100", "--duration", "600", "--interval", "1000", "--redis", s.r.url, "--agents", "2", "--agents-timeout", "20"]));
    await coord.waitFor(/run .*open 100\/100/, 30_000);
    coord.proc.kill("SIGKILL");
    const files: string[] = [];
    for (const a of s.agents) {
      await a.waitFor(/the coordinator is gone \(no tick for 25 s\); stopping the plan/, 45_000);
      files.push((await a.waitFor(/the coordinator is gone: final report written to (\S+) /))[1]!);
    }
    await eventually(() => conns(s.srv) === 0, { timeoutMs: 10_000, what: "the agents' connections to close" });
    const reports = files.map((f) => JSON.parse(readFileSync(f, "utf8")) as AgentReport);
    expect(reports.every((r) => r.interrupted === "the coordinator is gone")).toBe(true);
    expect(reports.every((r) => r.report.counters.closedByUs === 50)).toBe(true);
  }, 60_000);
});
