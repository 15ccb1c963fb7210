// `wsmillion load` on the command line: the classic Go flag line parsed exactly, usage errors (exit 2, one
// line naming the flag), the plan check, the JSON report, and exit codes.
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildProgram, translateClassicFlags } from "../src/cli.ts";
import { resolvePlan } from "../src/load/plan-check.ts";
import type { LoadOptions } from "../src/load/plan-check.ts";
import { loadOptions, type RawLoadFlags } from "../src/commands/load.ts";
import type { LoadReport } from "../src/load/report.ts";
import { bunEcho, closedPort, runCli } from "./helpers/load.ts";

const stops: (() => unknown)[] = [];
afterAll(async () => { for (const s of stops.reverse()) await s(); });

/** Parses argv as the CLI would, capturing the load command's options instead of running it. */
async function parse(argv: string[]): Promise<LoadOptions> {
  const program = buildProgram();
  const load = program.commands.find((c) => c.name() === "load")!;
  const seen: { got: LoadOptions | null } = { got: null };
  load.action((url: string | undefined, f: RawLoadFlags) => { seen.got = loadOptions(url, f); });
  await program.parseAsync(translateClassicFlags(["load", ...argv]), { from: "user" });
  // Without this, two parses that never reached the action would compare equal (null and null).
  if (seen.got === null) throw new Error(`the load command's action never ran for: ${argv.join(" ")}`);
  return seen.got;
}

describe("flags", () => {
  test("the classic command line works unchanged", async () => {
    const o = await parse("-addr 127.0.0.1:8080 -con 20000 -time 60 -path /ws -co 1000 -wait 10 -sendtick 100 -databyte 100".split(" "));
    expect(o).toMatchObject({ addr: "127.0.0.1:8080", connections: 20000, duration: 60, path: "/ws", concurrency: 1000, hold: 10, interval: 100, size: 100 });
    const { plan } = resolvePlan(o);
    expect(plan).toMatchObject({
      targets: [{ host: "127.0.0.1", port: 8080 }], path: "/ws", connections: 20000, concurrency: 1000, durationS: 60, holdS: 10,
      intervalMs: 100, size: 100, mode: "echo", reconnect: false, sources: [], statusUrl: "http://127.0.0.1:8080/conns",
    });
    // 20,000 sockets do not fit one process under a 20,000 open-files limit.
    expect(plan.workers).toBeGreaterThanOrEqual(2);
  });

  test("classic -name=value and long forms mean the same", async () => {
    const a = await parse(["-con=500", "-co=50", "-addr=127.0.0.1:9000"]);
    const b = await parse(["--connections", "500", "--concurrency", "50", "--addr", "127.0.0.1:9000"]);
    expect(a).toEqual(b);
  });

  test("every long option, with targets, headers, subprotocols and sources", async () => {
    const o = await parse([
      "ws://127.0.0.1:8080/chat", "--targets", "127.0.0.1-4:8080", "--rate", "5000", "--mode", "send", "--workers", "3", "--header", "Authorization: Bearer t",
      "--subprotocol", "chat", "--handshake-timeout", "2500", "--reconnect", "--size", "1k", "--interval", "250", "--duration", "5", "--hold", "2",
      "--source", "127.0.0.2-3", "--json", "out.json", "--quiet",
    ]);
    const { plan } = resolvePlan(o);
    expect(plan.targets.map((t) => t.host)).toEqual(["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    expect(plan).toMatchObject({ path: "/chat", rate: 5000, mode: "send", workers: 3, headers: [["Authorization", "Bearer t"]], subprotocols: ["chat"],
      handshakeTimeoutMs: 2500, reconnect: true, size: 1024, intervalMs: 250, durationS: 5, holdS: 2, sources: ["127.0.0.2", "127.0.0.3"] });
    expect(plan.sourcePortBase).toBeGreaterThan(1023);
  });

  test("defaults", async () => {
    const { plan } = resolvePlan(await parse(["ws://127.0.0.1:8080"]));
    expect(plan).toMatchObject({ path: "/", connections: 1000, concurrency: 500, rate: 0, durationS: 10, holdS: 0, intervalMs: 1000, size: 100, mode: "echo", workers: 1, handshakeTimeoutMs: 10000 });
  });
});

describe("TLS, deflate and payload flags become the plan", () => {
  test("plain by default: no TLS, no deflate offer, fill payloads", async () => {
    const { plan } = resolvePlan(await parse(["ws://127.0.0.1:8080/ws"]));
    expect(plan).toMatchObject({ tls: null, deflate: null, payload: "fill" });
  });

  test("wss:// in the URL, in --targets, or --tls with --addr; https status URL; --servername and --ca carried", async () => {
    const url = resolvePlan(await parse(["wss://127.0.0.1:8443/ws", "--insecure"])).plan;
    expect(url).toMatchObject({ tls: { insecure: true, caFile: null, serverName: null }, statusUrl: "https://127.0.0.1:8443/conns" });
    const targets = resolvePlan(await parse(["--targets", "wss://127.0.0.1-2:8443", "--insecure"])).plan;
    expect(targets.tls).not.toBeNull();
    expect(targets.targets).toEqual([{ host: "127.0.0.1", port: 8443 }, { host: "127.0.0.2", port: 8443 }]);
    const dir = mkdtempSync(join(tmpdir(), "wsm-ca-"));
    stops.push(() => rmSync(dir, { recursive: true, force: true }));
    const ca = join(dir, "ca.pem");
    writeFileSync(ca, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    const addr = resolvePlan(await parse(["--addr", "10.0.0.5:443", "--tls", "--servername", "gw.example.com", "--ca", ca])).plan;
    expect(addr).toMatchObject({ tls: { insecure: false, caFile: ca, serverName: "gw.example.com" }, statusUrl: "https://10.0.0.5:443/conns" });
  });

  test("each --deflate-* flag implies --deflate; window bits bare or with a value", async () => {
    const a = resolvePlan(await parse(["ws://127.0.0.1:8080/ws", "--deflate-server-no-context-takeover", "--deflate-client-max-window-bits"])).plan;
    expect(a.deflate).toEqual({ clientNoContextTakeover: false, serverNoContextTakeover: true, clientMaxWindowBits: true, serverMaxWindowBits: null });
    const b = resolvePlan(await parse(["ws://127.0.0.1:8080/ws", "--deflate", "--deflate-client-max-window-bits", "10", "--deflate-server-max-window-bits", "9", "--deflate-client-no-context-takeover"])).plan;
    expect(b.deflate).toEqual({ clientNoContextTakeover: true, serverNoContextTakeover: false, clientMaxWindowBits: 10, serverMaxWindowBits: 9 });
  });

  test("--payload text; --deflate with the default fill payload warns that it compresses unrealistically", async () => {
    const { plan, warnings } = resolvePlan(await parse(["ws://127.0.0.1:8080/ws", "--deflate"]));
    expect(plan.payload).toBe("fill");
    expect(warnings.join("\n")).toContain("--payload text sends JSON-like text");
    const text = resolvePlan(await parse(["ws://127.0.0.1:8080/ws", "--deflate", "--payload", "text"]));
    expect(text.plan.payload).toBe("text");
    expect(text.warnings.join("\n")).not.toContain("--payload text");
  });
});

describe("usage errors: one line naming the flag, exit 2", () => {
  const cases: [string, string[], RegExp][] = [
    ["bad number", ["load", "-addr", "127.0.0.1:1", "-con", "lots"], /--connections takes a whole number/],
    ["bad mode", ["load", "ws://127.0.0.1:1/ws", "--mode", "shout"], /--mode takes one of echo, send, receive, idle/],
    ["bad size", ["load", "ws://127.0.0.1:1/ws", "--size", "big"], /--size takes a size in bytes/],
    ["no target", ["load", "--connections", "10"], /no server to load: give ws:\/\/host:port\/path, -addr host:port or --targets/],
    ["bad targets", ["load", "--targets", "127.0.0.1-300:80"], /--targets: '127\.0\.0\.1-300:80'/],
    ["bad header", ["load", "ws://127.0.0.1:1/ws", "--header", "nocolon"], /--header takes Name:value/],
    ["not a WebSocket URL", ["load", "http://127.0.0.1:1/ws"], /the target URL must start with ws:\/\/ or wss:\/\//],
    ["unknown flag", ["load", "ws://127.0.0.1:1/ws", "--frobnicate"], /unknown option '--frobnicate'/],
  ];
  for (const [what, args, re] of cases) {
    test(what, async () => {
      const r = await runCli(args);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(re);
    }, 15_000);
  }
});

describe("the plan check refuses impossible plans before dialing (exit 2)", () => {
  test("more connections than one destination pair has ephemeral ports: says which --targets to use", async () => {
    const r = await runCli(["load", "ws://127.0.0.1:8080/ws", "--connections", "100000"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/ephemeral ports .* caps client at 28,232 of 100,000 connections; use --targets 127\.0\.0\.1-4:8080/);
  }, 15_000);

  test("a worker count that cannot stay under the open-files limit", async () => {
    const r = await runCli(["load", "--targets", "127.0.0.1-2:8080", "--connections", "30000", "--workers", "1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--workers 1: each worker would hold 30000 sockets but the open-files limit \(\d+\) allows \d+; use --workers 2 or --workers auto/);
  }, 15_000);

  test("source addresses with too few ports", async () => {
    const r = await runCli(["load", "ws://127.0.0.1:8080/ws", "--connections", "60000", "--source", "127.0.0.2", "--workers", "auto"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--source: 60000 connections per source address exceed its \d+ ephemeral ports/);
  }, 15_000);
});

describe("a run", () => {
  test("--json writes the complete report; plan met exits 0", async () => {
    const srv = bunEcho();
    stops.push(() => srv.stop(true));
    const dir = mkdtempSync(join(tmpdir(), "wsm-load-"));
    stops.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "r.json");
    const r = await runCli(["load", "-addr", `127.0.0.1:${srv.port}`, "-path", "/ws", "-con", "200", "-co", "50", "-time", "1", "-wait", "1", "-sendtick", "100", "-databyte", "100", "--json", file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Result: plan met (exit 0)");
    expect(r.stdout).toMatch(/server \/conns\s+200 open \(we count 200\)/);
    expect(r.stderr).toMatch(/open 200\/200/); // plain progress lines when not a terminal
    const j = JSON.parse(readFileSync(file, "utf8")) as LoadReport;
    expect(j.schema).toBe("wsmillion.load/1");
    expect(Object.keys(j).sort()).toEqual(["connections", "counters", "deflate", "drops", "endedAt", "errors", "generator", "kernel", "latency", "ourCloses", "outages", "plan", "samples", "schema", "server", "serverCloses", "startedAt", "traffic", "verdict", "warnings", "workers"]);
    expect(j.deflate).toBeNull();
    expect(j.connections).toMatchObject({ target: 200, opened: 200, failed: 0, closedByUs: 200 });
    expect(Object.keys(j.latency).sort()).toEqual(["connect", "handshake", "lateness", "loopLag", "push", "rtt", "tls"]);
    expect(j.latency.tls.count).toBe(0);
    // Without deflate the wire carries each payload plus its 6-byte masked header, and one 8-byte close frame per connection.
    expect(j.traffic.wireBytesOut).toBe(j.traffic.bytesOut + 6 * j.traffic.sent + 8 * 200);
    expect(j.latency.rtt.count).toBeGreaterThan(100);
    expect(j.latency.rtt.encoded.length).toBeGreaterThan(10);
    expect(j.traffic.offeredPerSec).toBe(2000);
    expect(j.samples.length).toBeGreaterThanOrEqual(2);
    expect(j.workers[0]!.rssPerConnectionBytes).toBeGreaterThan(0);
    expect(j.server.atRamp).toEqual({ conns: 200, closed: 0 });
    // The kernel's counters for each phase, read on this machine (their values are the whole box's).
    expect(Object.keys(j.kernel).sort()).toEqual(["notable", "phases", "scope", "unreadable"]);
    expect(Object.keys(j.kernel.phases)).toEqual(["ramp", "run", "close"]);
    expect(j.kernel.phases.ramp).toHaveProperty("TcpExtListenOverflows");
  }, 30_000);

  test("failed connections exit 1 with the cause explained", async () => {
    const r = await runCli(["load", `ws://127.0.0.1:${closedPort()}/ws`, "--connections", "5", "--duration", "0", "--quiet"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/5\s+ECONNREFUSED: nothing listening/);
    expect(r.stdout).toContain("plan NOT met (exit 1)");
  }, 15_000);
});
