// Several machines on one: scripts/netns-lab makes a server box and two client boxes (network namespaces
// on a bridge, a private /24 made for this run), Redis listens on the bridge's host side, the server and
// the agents each run in their own box. Each client box has its own connection table (counted in its own
// /proc/net/tcp), the agents dial from their own addresses, the fleet report and the server agree. The
// namespaces are removed even when the test fails; only the processes started here are stopped.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FleetReport } from "../src/agents/merge.ts";
import { agent, cli, startRedis, stopAll, type Cli, type RedisServer } from "./helpers/agents.ts";
import { ROOT } from "./helpers/load.ts";

const LAB = join(ROOT, "scripts", "netns-lab");
// One prefix and one /24 per test run, so two runs never share a box.
const PREFIX = `t${(process.pid % 46656).toString(36)}`;
const NET = `10.77.${100 + (process.pid % 100)}`;
const clis: Cli[] = [];
const redis: RedisServer[] = [];
let dir = "";

function lab(...args: string[]): { code: number; out: string } {
  const p = Bun.spawnSync([LAB, ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString() + p.stderr.toString() };
}

afterAll(async () => {
  await stopAll(clis, redis);
  lab("down", "--prefix", PREFIX);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Established TCP connections to `port` in the network namespace `pid` lives in (its own /proc/<pid>/net/tcp). */
function established(pid: number, port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return readFileSync(`/proc/${pid}/net/tcp`, "utf8").split("\n").slice(1).filter((l) => {
    const c = l.trim().split(/\s+/);
    return c[3] === "01" && c[2]?.endsWith(`:${hex}`);
  }).length;
}

test("a server box and two client boxes: each agent dials from its own address with its own connection table; one exact report", async () => {
  expect(process.getuid?.()).toBe(0); // network namespaces need root: run the suite as root (CI does)
  const up = lab("up", "--prefix", PREFIX, "--clients", "2", "--net", NET, "--server-addrs", "2");
  expect(up.out).toContain(`lab '${PREFIX}' up`);
  expect(up.code).toBe(0);
  dir = mkdtempSync(join(tmpdir(), "wsm-netns-"));
  // The bridge is private to this test: protected mode (loopback only without a password) would refuse the boxes.
  const r = await startRedis(["--protected-mode", "no"], `${NET}.1`);
  redis.push(r);
  const server = cli(["serve", "--host", "0.0.0.0", "--port", "8080"], undefined, ["ip", "netns", "exec", `${PREFIX}-server`]);
  clis.push(server);
  await server.waitFor(/listening on/);
  const a1 = await agent(r.url, "c1", [], undefined, ["ip", "netns", "exec", `${PREFIX}-c1`]);
  clis.push(a1);
  const a2 = await agent(r.url, "c2", [], undefined, ["ip", "netns", "exec", `${PREFIX}-c2`]);
  clis.push(a2);
  const json = join(dir, "fleet.json");
  const coord = cli(["load", "--targets", `${NET}.2-3:8080`, "--connections", "600", "--duration", "3", "--hold", "2", "--interval", "100", "--redis", r.url, "--agents", "2", "--agents-timeout", "20", "--json", json]);
  clis.push(coord);
  // Each agent joined from its own box's address.
  await coord.waitFor(new RegExp(`agent c1 joined .*sources ${NET.replace(/\./g, "\\.")}\\.11 127\\.0\\.0\\.1`));
  await coord.waitFor(new RegExp(`agent c2 joined .*sources ${NET.replace(/\./g, "\\.")}\\.12 127\\.0\\.0\\.1`));
  await coord.waitFor(/run .*open 600\/600/, 30_000);
  // Each box's own connection table holds its agent's share, and only that.
  expect(established(a1.proc.pid, 8080)).toBe(300);
  expect(established(a2.proc.pid, 8080)).toBe(300);
  expect(await coord.exited).toBe(0);
  const rep = JSON.parse(readFileSync(json, "utf8")) as FleetReport;
  expect(rep.server.atRamp?.conns).toBe(600);
  expect(rep.server.atEnd?.conns).toBe(600);
  expect(rep.connections.openAtRamp).toBe(600);
  expect(rep.counters.failed).toBe(0);
  expect(rep.counters.msgsIn).toBe(rep.fleet.agentReports.reduce((n, a) => n + a.report.counters.msgsIn, 0));
  expect(coord.text()).toContain("Result: plan met (exit 0)");
}, 60_000);
