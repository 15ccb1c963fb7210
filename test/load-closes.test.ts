// How open connections end, against scripted servers (raw node:net, test/load-stall-server.mjs): every
// frame we write stays whole (RFC 6455 §5.4: a control frame never goes inside another frame), and every
// drop is counted by its cause and by who ended it (the server, the network, or us).
import { afterAll, describe, expect, test } from "bun:test";
import { runLoad } from "../src/load/coordinator.ts";
import { local, nodeServer, plan, type NodeServer } from "./helpers/load.ts";

const stops: (() => unknown)[] = [];
afterAll(async () => { for (const s of stops.reverse()) await s(); });

interface Seen {
  frames: number;
  last: { opcode: number; code: number | null } | null;
  trailing: number;
  bad: string | null;
}

/** The server's verdict on the bytes one connection sent it, printed when that connection ended. */
async function nextVerdict(srv: NodeServer, timeoutMs = 10_000): Promise<Seen> {
  const reader = srv.proc.stdout.getReader();
  const timer = setTimeout(() => reader.cancel(), timeoutMs);
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the server printed no verdict: '${text}'`);
      text += new TextDecoder().decode(value);
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
  return JSON.parse(text.slice(0, text.indexOf("\n"))) as Seen;
}

async function stallServer(mode: string): Promise<NodeServer> {
  const srv = await nodeServer("load-stall-server.mjs", [mode]);
  stops.push(() => srv.stop());
  return srv;
}

/** One connection sending 256 KiB every 5 ms: far more than a peer that stopped reading takes. */
const flood = { connections: 1, mode: "send" as const, size: 256 << 10, intervalMs: 5, durationS: 3, maxMessage: 1 << 20 };

describe("RFC 6455 §5.4/§5.5: our close frame queues behind a half-written data frame", () => {
  test("answering the server's close 1001 while our sends are backed up", async () => {
    const srv = await stallServer("close");
    const r = await runLoad(plan(local(srv.port), flood));
    const seen = await nextVerdict(srv);
    // Sends were really skipped for backpressure: the close had to wait behind a pending frame.
    expect(r.counters.sendsSkipped).toBeGreaterThan(0);
    expect(seen.bad).toBeNull();
    expect(seen.trailing).toBe(0);
    expect(seen.frames).toBeGreaterThan(1);
    expect(seen.last).toEqual({ opcode: 8, code: 1001 });
    expect(r.serverCloses).toEqual([{ code: 1001, count: 1, meaning: "going away (server shutting down or page left)" }]);
    expect(r.drops.map((d) => [d.cause, d.by, d.count])).toEqual([["CLOSE_1001", "server", 1]]);
    expect(r.counters.failedByUs).toBe(0);
  }, 30_000);

  test("failing the connection with 1002 (a masked server frame) while our sends are backed up", async () => {
    const srv = await stallServer("masked");
    const r = await runLoad(plan(local(srv.port), flood));
    const seen = await nextVerdict(srv);
    expect(r.counters.sendsSkipped).toBeGreaterThan(0);
    expect(seen.bad).toBeNull();
    expect(seen.trailing).toBe(0);
    expect(seen.last).toEqual({ opcode: 8, code: 1002 });
    expect(r.ourCloses.map((c) => [c.code, c.count])).toEqual([[1002, 1]]);
    expect(r.serverCloses).toEqual([]);
  }, 30_000);
});

describe("every drop by its cause", () => {
  test("a reset mid-run is ECONNRESET, by the network, explained; not a close code", async () => {
    const srv = await stallServer("reset");
    const r = await runLoad(plan(local(srv.port), { connections: 5, intervalMs: 100, durationS: 2 }));
    expect(r.connections.dropped).toBe(5);
    expect(r.drops.map((d) => [d.cause, d.by, d.count])).toEqual([["ECONNRESET", "network", 5]]);
    expect(r.drops[0]!.explanation).toContain("reset");
    expect(r.serverCloses).toEqual([]);
    expect(r.verdict.reasons.join("; ")).toContain("5 open connections were dropped by the server or the network (ECONNRESET 5)");
  }, 30_000);

  test("TCP ended without a close frame is EOF, by the network", async () => {
    const srv = await stallServer("eof");
    const r = await runLoad(plan(local(srv.port), { connections: 5, intervalMs: 100, durationS: 2 }));
    expect(r.drops.map((d) => [d.cause, d.by, d.count])).toEqual([["EOF", "network", 5]]);
    expect(r.drops[0]!.explanation).toContain("without a close frame");
    expect(r.serverCloses).toEqual([]);
  }, 30_000);
});
