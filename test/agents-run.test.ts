// `load --redis URL --agents N` on loopback: agents as local processes with distinct names, a private
// redis-server, a Bun echo server. The merged report's counts are the sum of the agents' own, its
// histograms the exact merge of theirs, the server's count matches; the run's keys are namespaced and
// expire; agents listen on nothing; they serve the next run; setup failures are one line and exit 2.
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import type { FleetReport } from "../src/agents/merge.ts";
import { decode, encode, keys, type Heartbeat } from "../src/agents/protocol.ts";
import { mergeEncoded, newHistogram } from "../src/load/metrics.ts";
import { descendants } from "../src/system/proc.ts";
import { Started, agent, cli, startRedis } from "./helpers/agents.ts";
import { bunEcho, closedPort } from "./helpers/load.ts";
import { serve } from "./helpers/serve.ts";
import { eventually } from "./helpers/eventually.ts";

const started = new Started();
afterEach(() => started.cleanup());
const track = started.track;

const tmp = (): string => started.tmp();

/** Socket inodes a process holds open. */
function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) out.add(m[1]!);
      } catch {
        /* closed meanwhile */
      }
    }
  } catch {
    /* gone */
  }
  return out;
}

/** Inodes of TCP sockets in LISTEN state (state 0A in /proc/net/tcp and tcp6). */
function listeningInodes(): Set<string> {
  const out = new Set<string>();
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(f, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === "0A" && cols[9]) out.add(cols[9]);
    }
  }
  return out;
}

describe("a run on agents", () => {
  test("two agents: one merged report, exact, equal to the sum of theirs and the server's count; the keys expire; agents listen on nothing and take the next run", async () => {
    const r = await startRedis();
    started.redis.push(r);
    const srv = bunEcho();
    started.servers.push(srv);
    const a1 = track(await agent(r.url, "a1"));
    const a2 = track(await agent(r.url, "a2"));
    const dir = tmp();
    const json = join(dir, "fleet.json");
    const url = `ws://127.0.0.1:${srv.port}/ws`;
    const coord = track(cli(["load", url, "--connections", "300", "--duration", "3", "--hold", "2", "--interval", "100", "--redis", r.url, "--agents", "2", "--agents-timeout", "20", "--json", json]));

    // While the connections are held: every socket of the agents and their workers is outbound.
    await coord.waitFor(/open 300\/300/, 30_000);
    const pids = [a1.proc.pid, a2.proc.pid].flatMap((p) => [p, ...descendants(p)]);
    const held = new Set(pids.flatMap((p) => [...socketInodes(p)]));
    expect(held.size).toBeGreaterThanOrEqual(300); // the WebSockets and the Redis connections are there to look at
    const listening = listeningInodes();
    expect([...held].filter((i) => listening.has(i))).toEqual([]);

    expect(await coord.exited).toBe(0);
    const text = coord.text();
    expect(text).toMatch(/agent a1 joined \(\d\/2\): .*clock offset [+-][\d.]+ ms/);
    expect(text).toMatch(/agent a2 joined \(\d\/2\)/);
    expect(text).toMatch(/^ {2}a1 .* ok$/m);
    expect(text).toMatch(/^ {2}a2 .* ok$/m);
    expect(text).toContain("Result: plan met (exit 0)");

    const rep = JSON.parse(readFileSync(json, "utf8")) as FleetReport;
    const agents = rep.fleet.agentReports;
    expect(agents.map((a) => a.agent.name).sort()).toEqual(["a1", "a2"]);
    expect(agents.map((a) => a.share.connections)).toEqual([150, 150]);
    const sum = (f: (c: FleetReport["counters"]) => number): number => agents.reduce((n, a) => n + f(a.report.counters), 0);
    expect(rep.counters.msgsOut).toBe(sum((c) => c.msgsOut));
    expect(rep.counters.msgsIn).toBe(sum((c) => c.msgsIn));
    expect(rep.counters.opened).toBe(300);
    expect(rep.connections.openAtRamp).toBe(300);
    expect(rep.counters.msgsOut).toBeGreaterThan(0);
    // The server's own count, asked by the coordinator with every agent at the barrier.
    expect(rep.server.atRamp?.conns).toBe(300);
    expect(rep.server).toEqual({ url: expect.any(String), atRamp: { conns: 300, closed: 0 }, atEnd: { conns: 300, closed: 0 }, error: null });
    // Histograms: the fleet's equal the agents' encoded ones merged.
    const h = newHistogram();
    for (const a of agents) mergeEncoded(h, a.report.latency.rtt.encoded);
    expect(rep.latency.rtt.count).toBe(h.totalCount);
    expect(rep.latency.rtt.p99Ms).toBe(Math.round(h.getValueAtPercentile(99)) / 1000);
    expect(rep.latency.rtt.p999Ms).toBe(Math.round(h.getValueAtPercentile(99.9)) / 1000);
    expect(rep.fleet.startSkewMs).toBeGreaterThanOrEqual(0);
    expect(rep.fleet.redisCommandsPerAgentPerSec).toBeGreaterThan(0);

    // The run's keys are under its id and expire; agents' heartbeats carry a short TTL.
    const id = rep.fleet.run.id;
    const all = ((await r.cmd("KEYS", "wsm:*")) as string[]).sort();
    expect(all).toEqual(["wsm:agent:a1", "wsm:agent:a1:inbox", "wsm:agent:a2", "wsm:agent:a2:inbox", "wsm:agents", `wsm:run:${id}:ctl`, `wsm:run:${id}:tick`, `wsm:run:${id}:up`]);
    for (const k of all.filter((k) => k !== "wsm:agents")) {
      const ttl = Number(await r.cmd("TTL", k));
      expect(ttl).toBeGreaterThan(0);
      if (k === "wsm:agent:a1" || k === "wsm:agent:a2") expect(ttl).toBeLessThanOrEqual(10);
    }

    // The agents went back to waiting: a second run takes one of them.
    const again = track(cli(["load", url, "--connections", "50", "--duration", "1", "--redis", r.url, "--agents", "1", "--agents-timeout", "20"]));
    expect(await again.exited).toBe(0);
    expect(again.text()).toContain("Result: plan met (exit 0)");
    expect(a1.text() + a2.text()).toMatch(/final report sent[\s\S]*final report sent[\s\S]*final report sent/);

    // Ctrl-C (SIGTERM) on an idle agent: it leaves the registry.
    expect(await a1.stop("SIGTERM")).toBe(0);
    expect(a1.text()).toContain("agent a1: left");
    expect(await r.cmd("SISMEMBER", keys.registry, "a1")).toBe(0);
    expect(await r.cmd("EXISTS", keys.agent("a1"))).toBe(0);
  }, 60_000);
});

describe("a monitor on the target's machine", () => {
  test("it generates no load, joins every run, and the report shows the server's machine and process tree during the traffic", async () => {
    const r = await startRedis();
    started.redis.push(r);
    const srv = await serve(["--workers", "2"]);
    started.servers.push({ stop: () => srv.stop() });
    const mon = track(await agent(r.url, "m1", ["--monitor", "--pid", String(srv.proc.pid)]));
    expect(mon.text()).toContain(`agent m1: monitor of pid ${srv.proc.pid} and its descendants`);
    track(await agent(r.url, "a1"));
    const json = join(tmp(), "fleet.json");
    const coord = track(cli(["load", srv.url, "--connections", "200", "--duration", "4", "--interval", "100", "--redis", r.url, "--agents", "1", "--agents-timeout", "20", "--json", json]));
    expect(await coord.exited).toBe(0);
    const text = coord.text();
    expect(text).toContain(`monitor m1 joined: `);
    expect(text).toMatch(new RegExp(`Target machine: monitor m1 on .*, watching pid ${srv.proc.pid} and its descendants; during the traffic \\(\\d+ s`));
    const rep = JSON.parse(readFileSync(json, "utf8")) as FleetReport;
    // It generated no load: the one load agent has every connection.
    expect(rep.fleet.agents.map((a) => a.name)).toEqual(["a1"]);
    expect(rep.fleet.agents[0]!.connections).toBe(200);
    const m = rep.fleet.monitors[0]!;
    expect(m.name).toBe("m1");
    expect(m.samples.length).toBeGreaterThanOrEqual(4);
    expect(m.samples.every((s) => s.tree?.root === srv.proc.pid)).toBe(true);
    const t = m.traffic!;
    expect(t.seconds).toBeGreaterThanOrEqual(2);
    expect(t.treeProcessesMax).toBeGreaterThanOrEqual(3); // the supervisor and its two workers
    expect(t.treeCpuMean).toBeGreaterThan(0); // the server echoes 2,000 messages a second
    expect(t.busyCoresMean).toBeGreaterThan(0);
    expect(t.tcpInuseMax).toBeGreaterThanOrEqual(400); // both ends of 200 loopback connections
    expect(t.treeRssMaxBytes).toBeGreaterThan(0);
    // After the run it waits for the next one.
    await eventually(async () => decode<Heartbeat>((await r.cmd("GET", keys.agent("m1"))) as string), (h) => h.role === "monitor" && h.state === "idle", 15_000, "m1 idle again");
  }, 60_000);
});

describe("setup failures: one line, exit 2", () => {
  test("--agents without --redis, and the other way round", async () => {
    const a = track(cli(["load", "ws://127.0.0.1:1/ws", "--agents", "2"]));
    expect(await a.exited).toBe(2);
    expect(a.err.text.trim()).toBe("wsmillion: --agents needs --redis URL: the agents and the coordinator meet on a Redis server");
    const b = track(cli(["load", "ws://127.0.0.1:1/ws", "--redis", "redis://127.0.0.1:1"]));
    expect(await b.exited).toBe(2);
    expect(b.err.text).toContain("--redis needs --agents N");
  });

  test("an unreachable Redis, for the coordinator and for an agent", async () => {
    const port = closedPort();
    const c = track(cli(["load", "ws://127.0.0.1:1/ws", "--redis", `redis://127.0.0.1:${port}`, "--agents", "1"]));
    expect(await c.exited).toBe(2);
    expect(c.err.text.trim()).toBe(`wsmillion: cannot reach Redis at 127.0.0.1:${port}: connection refused (is redis-server running there, listening on that address and port?)`);
    const a = track(cli(["agent", "--redis", `redis://127.0.0.1:${port}`, "--name", "x"]));
    expect(await a.exited).toBe(2);
    expect(a.err.text.trim()).toBe(`wsmillion: agent x: cannot reach Redis at 127.0.0.1:${port}: connection refused (is redis-server running there, listening on that address and port?)`);
  });

  test("a wrong password and a missing one", async () => {
    const r = await startRedis(["--requirepass", "sekret"]);
    started.redis.push(r);
    const wrong = track(cli(["agent", "--redis", `redis://:nope@127.0.0.1:${r.port}`, "--name", "x"]));
    expect(await wrong.exited).toBe(2);
    expect(wrong.err.text).toMatch(/^wsmillion: agent x: Redis at 127\.0\.0\.1:\d+ refused the credentials: WRONGPASS/);
    const none = track(cli(["load", "ws://127.0.0.1:1/ws", "--redis", `redis://127.0.0.1:${r.port}`, "--agents", "1"]));
    expect(await none.exited).toBe(2);
    expect(none.err.text).toMatch(/^wsmillion: Redis at 127\.0\.0\.1:\d+ needs a password: give it as redis:\/\/:PASSWORD@/);
  });

  test("--pid and --process belong to --monitor", async () => {
    const a = track(cli(["agent", "--redis", "redis://127.0.0.1:1", "--pid", "1"]));
    expect(await a.exited).toBe(2);
    expect(a.err.text.trim()).toBe("wsmillion: --pid needs --monitor (a monitor watches a process; a load agent runs load)");
  });

  test("two agents with one name: the second is refused and says why", async () => {
    const r = await startRedis();
    started.redis.push(r);
    track(await agent(r.url, "same"));
    const second = track(cli(["agent", "--redis", r.url, "--name", "same"]));
    expect(await second.exited).toBe(2);
    expect(second.err.text).toMatch(/^wsmillion: agent same: the agent name 'same' is taken by a live agent \(pid \d+ on .*, idle\); give this one another --name/);
  });

  test("another wsmillion version: the coordinator leaves it out and says so; an agent refuses a coordinator of another version", async () => {
    const r = await startRedis();
    started.redis.push(r);
    // An agent of another version, as its heartbeat and registry entry say.
    const old: Heartbeat = { name: "old", instance: "x", version: "0.0.1", role: "load", state: "idle", run: null, host: "elsewhere", pid: 1, open: 0, cpuCores: 0, rssBytes: 0 };
    await r.cmd("SET", keys.agent("old"), encode(old), "EX", "60");
    await r.cmd("SADD", keys.registry, "old");
    const c = track(cli(["load", "ws://127.0.0.1:1/ws", "--redis", r.url, "--agents", "1", "--agents-timeout", "2"]));
    expect(await c.exited).toBe(2);
    expect(c.err.text).toContain("agent old (elsewhere) runs wsmillion 0.0.1, this coordinator 0.1.0: not used");
    expect(c.err.text).toMatch(/wsmillion: only 0 of 1 agents joined within 2 s .*; not used: old \(another wsmillion version\)/);
    const inbox = (await r.cmd("XRANGE", keys.inbox("old"), "-", "+")) as [string, string[]][];
    expect(decode<{ t: string; reason: string }>(inbox[0]![1][1]!)).toMatchObject({ t: "refuse", reason: expect.stringContaining("it runs wsmillion 0.0.1 and the coordinator 0.1.0") });

    // And the other way: an invitation from a coordinator of another version.
    const a = track(await agent(r.url, "new"));
    await r.cmd("XADD", keys.inbox("new"), "*", "m", encode({ t: "invite", run: "r-old", version: "9.9.9", coordinator: "elsewhere" }));
    await a.waitFor(/refused run r-old: its coordinator runs wsmillion 9\.9\.9, this agent 0\.1\.0/);
    expect(decode<Heartbeat>((await r.cmd("GET", keys.agent("new"))) as string).state).toBe("idle");
  });
});
