// permessage-deflate against the `ws` package under Node (its own RFC 7692 implementation, with real sliding
// windows): echoes verified byte for byte by the server, the parameters each configuration negotiates,
// the compression ratio, and the ways a server can break RFC 7692 (a bad answer, a stream that does not
// inflate, a compression bomb), each failing only the connections it touches.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runLoad } from "../src/load/coordinator.ts";
import type { DeflateOffer } from "../src/protocol/deflate.ts";
import { acceptFor } from "../src/protocol/handshake.ts";
import type { LoadReport } from "../src/load/report.ts";
import { Payload, textPool } from "../src/load/payload.ts";
import { makeCerts, type TestCerts } from "./helpers/certs.ts";
import { local, plan, rawServer, runCli, wssServer, type NodeServer, type WssServerConfig } from "./helpers/load.ts";

const stops: (() => unknown)[] = [];
let dir: string;
/** JSON-like text the server checks every message against (after the 12-byte stamp). */
let doc: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "wsm-deflate-"));
  stops.push(() => rmSync(dir, { recursive: true, force: true }));
  doc = join(dir, "doc.json");
  writeFileSync(doc, textPool(3000));
});
afterAll(async () => {
  for (const s of stops.reverse()) await s();
});

const OFFER: DeflateOffer = { clientNoContextTakeover: false, serverNoContextTakeover: false, clientMaxWindowBits: null, serverMaxWindowBits: null };

async function server(config: WssServerConfig): Promise<NodeServer> {
  const srv = await wssServer(config);
  stops.push(() => srv.stop());
  return srv;
}

interface Seen {
  messages: number;
  expectOk: number;
  expectBad: number;
  extensions: (string | null)[];
}
async function seen(srv: NodeServer): Promise<Seen> {
  return (await (await fetch(`http://127.0.0.1:${srv.port}/conns`)).json()) as Seen;
}

/** Every echo came back whole, and everything the server received was the expected text. */
async function echoedWhole(r: LoadReport, srv: NodeServer, size: number): Promise<void> {
  expect(r.errors).toEqual([]);
  expect(r.ourCloses).toEqual([]);
  expect(r.latency.rtt.count).toBeGreaterThan(100);
  expect(r.counters.msgsIn).toBeGreaterThanOrEqual(r.counters.msgsOut * 0.95);
  expect(r.counters.bytesIn).toBe(r.counters.msgsIn * size);
  const s = await seen(srv);
  expect(s).toMatchObject({ messages: r.counters.msgsOut, expectOk: r.counters.msgsOut, expectBad: 0 });
}

describe("echoes with permessage-deflate against ws: each configuration's answer, every message whole both ways", () => {
  const cases: { what: string; offer: Partial<DeflateOffer>; ws: Record<string, unknown>; answer: string }[] = [
    { what: "bare offer: context takeover both ways", offer: {}, ws: {}, answer: "permessage-deflate" },
    { what: "we ask for server_no_context_takeover", offer: { serverNoContextTakeover: true }, ws: {}, answer: "permessage-deflate; server_no_context_takeover" },
    { what: "the server adds server_no_context_takeover unasked", offer: {}, ws: { serverNoContextTakeover: true }, answer: "permessage-deflate; server_no_context_takeover" },
    { what: "the server forces client_no_context_takeover", offer: {}, ws: { clientNoContextTakeover: true }, answer: "permessage-deflate; client_no_context_takeover" },
    { what: "we offer client_no_context_takeover", offer: { clientNoContextTakeover: true }, ws: {}, answer: "permessage-deflate; client_no_context_takeover" },
    {
      what: "window bits both ways (we offer client_max_window_bits bare and server_max_window_bits=10; the server picks 9 for us)",
      offer: { clientMaxWindowBits: true, serverMaxWindowBits: 10 },
      ws: { clientMaxWindowBits: 9 },
      answer: "permessage-deflate; client_max_window_bits=9; server_max_window_bits=10",
    },
  ];
  for (const c of cases) {
    test(c.what, async () => {
      const srv = await server({ deflate: c.ws, expect: doc });
      const size = 700;
      const r = await runLoad(plan(local(srv.port), { connections: 10, intervalMs: 20, size, payload: `file:${doc}`, deflate: { ...OFFER, ...c.offer } }));
      await echoedWhole(r, srv, size);
      expect(r.deflate?.answers).toEqual([{ response: c.answer, count: 10 }]);
      // The same document every message: far smaller on the wire both ways, even without context takeover.
      expect(r.traffic.wireBytesOut).toBeLessThan(r.traffic.bytesOut / 2);
      expect(r.traffic.wireBytesIn).toBeLessThan(r.traffic.bytesIn / 2);
    }, 30_000);
  }

  test("the server sends small messages uncompressed (ws's threshold, which it applies without context takeover): RSV1 clear is read as is", async () => {
    const srv = await server({ deflate: { threshold: 1024, serverNoContextTakeover: true }, expect: doc });
    const r = await runLoad(plan(local(srv.port), { connections: 10, intervalMs: 20, size: 200, payload: `file:${doc}`, deflate: OFFER }));
    await echoedWhole(r, srv, 200);
    // Ours compressed, its echoes not: the frames coming in are the payload plus 2-byte headers.
    expect(r.traffic.wireBytesOut).toBeLessThan(r.traffic.bytesOut);
    expect(r.traffic.wireBytesIn).toBeGreaterThan(r.traffic.bytesIn);
  }, 30_000);

  test("the server declines: 'none', and messages go uncompressed", async () => {
    const srv = await server({ deflate: false, expect: doc });
    const r = await runLoad(plan(local(srv.port), { connections: 10, intervalMs: 20, size: 200, payload: `file:${doc}`, deflate: OFFER }));
    await echoedWhole(r, srv, 200);
    expect(r.deflate?.answers).toEqual([{ response: "none", count: 10 }]);
    expect(r.traffic.wireBytesOut).toBeGreaterThan(r.traffic.bytesOut);
  }, 30_000);

  test("--payload text compresses (ratio above 1 both ways); --payload random does not", async () => {
    const srv = await server({ deflate: {} });
    const text = await runLoad(plan(local(srv.port), { connections: 10, intervalMs: 20, size: 1000, payload: "text", deflate: OFFER }));
    expect(text.errors).toEqual([]);
    expect(text.traffic.bytesOut / text.traffic.wireBytesOut).toBeGreaterThan(1.5);
    expect(text.traffic.bytesIn / text.traffic.wireBytesIn).toBeGreaterThan(1.5);
    const random = await runLoad(plan(local(srv.port), { connections: 10, intervalMs: 20, size: 1000, payload: "random", deflate: OFFER }));
    expect(random.errors).toEqual([]);
    expect(random.traffic.wireBytesOut).toBeGreaterThan(random.traffic.bytesOut);
    expect(random.latency.rtt.count).toBeGreaterThan(100);
  }, 30_000);
});

describe("against Bun.serve (uWS, another RFC 7692 implementation)", () => {
  const modes: [string, "dedicated" | "shared", string][] = [
    ["dedicated compressors: context takeover both ways", "dedicated", "permessage-deflate"],
    ["shared compressors: no context takeover either way", "shared", "permessage-deflate; client_no_context_takeover; server_no_context_takeover"],
  ];
  for (const [what, mode, answer] of modes) {
    test(what, async () => {
      const body = new Uint8Array(await Bun.file(doc).arrayBuffer());
      const checked = { ok: 0, bad: 0 };
      const srv = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: (req, s) => (s.upgrade(req, { data: undefined }) ? undefined : new Response("", { status: 400 })),
        websocket: {
          perMessageDeflate: { compress: mode, decompress: mode },
          message(ws, m) {
            const b = m as Buffer;
            let same = true;
            for (let i = 12; i < b.length && same; i++) same = b[i] === body[(i - 12) % body.length];
            checked[same ? "ok" : "bad"]++;
            ws.send(m, true);
          },
        },
      });
      stops.push(() => srv.stop(true));
      const r = await runLoad(plan(local(srv.port!), { connections: 10, intervalMs: 20, size: 700, payload: `file:${doc}`, deflate: OFFER }));
      expect(r.errors).toEqual([]);
      expect(r.ourCloses).toEqual([]);
      expect(r.deflate?.answers).toEqual([{ response: answer, count: 10 }]);
      expect(r.latency.rtt.count).toBeGreaterThan(100);
      expect(r.counters.bytesIn).toBe(r.counters.msgsIn * 700);
      expect(checked).toEqual({ ok: r.counters.msgsOut, bad: 0 });
      expect(r.traffic.wireBytesIn).toBeLessThan(r.traffic.bytesIn / 2);
    }, 30_000);
  }
});

describe("a server that breaks RFC 7692", () => {
  const keyOf = (req: string): string => /Sec-WebSocket-Key: (\S+)/i.exec(req)![1]!;
  const upgrade = (ext: string) => (req: string) =>
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(keyOf(req))}\r\nSec-WebSocket-Extensions: ${ext}\r\n\r\n`;

  const bad: [string, string, string][] = [
    ["an extension we did not offer", "x-webkit-deflate-frame", "which we did not offer"],
    ["a parameter out of range", "permessage-deflate; server_max_window_bits=16", "a value from 8 to 15"],
    ["client_max_window_bits we did not offer", "permessage-deflate; client_max_window_bits=10", "we did not offer it"],
  ];
  for (const [what, ext, rule] of bad) {
    test(`BAD_EXTENSION: ${what}`, async () => {
      const srv = rawServer(upgrade(ext));
      stops.push(() => srv.stop(true));
      const r = await runLoad(plan(local(srv.port), { connections: 5, durationS: 0, deflate: OFFER }));
      expect(r.errors.map((e) => [e.cause, e.count])).toEqual([["BAD_EXTENSION", 5]]);
      expect(r.errors[0]!.example).toContain(rule);
      expect(r.errors[0]!.explanation).toContain("RFC 7692");
    }, 20_000);
  }

  test("a compressed frame that does not inflate fails that connection with 1007; the others echo on", async () => {
    const srv = await server({ deflate: {}, mode: "corrupt", every: 2, expect: doc });
    const r = await runLoad(plan(local(srv.port), { connections: 10, intervalMs: 20, size: 300, payload: `file:${doc}`, deflate: OFFER }));
    expect(r.ourCloses).toEqual([{ code: 1007, count: 5, meaning: "invalid payload data (e.g. text that is not UTF-8)", example: expect.stringContaining("does not inflate") }]);
    expect(r.counters.failedByUs).toBe(5);
    expect(r.connections.openAtEnd).toBe(5);
    expect(r.errors).toEqual([]);
    expect(r.drops).toEqual([]);
    expect(r.latency.rtt.count).toBeGreaterThan(100);
    expect((await seen(srv)).expectBad).toBe(0);
  }, 30_000);

  test("a compression bomb (4 KiB inflating to 4 MiB) closes with 1009 at --max-message, having held no more", async () => {
    const srv = await server({ deflate: {}, mode: "bomb", every: 1, bombBytes: 4 << 20 });
    const r = await runLoad(plan(local(srv.port), { connections: 5, intervalMs: 100, maxMessage: 64 << 10, deflate: OFFER }));
    expect(r.ourCloses).toEqual([{ code: 1009, count: 5, meaning: "message too big", example: "compressed message inflates past 65536 bytes (--max-message)" }]);
    expect(r.counters.bytesIn).toBe(0);
  }, 30_000);
});

describe("the command line", () => {
  let certs: TestCerts;
  beforeAll(() => {
    certs = makeCerts();
    stops.push(() => certs.remove());
  });

  test("wss + --deflate with every parameter: the offer on the wire, the server's answer and the ratio in the report", async () => {
    const srv = await server({ tls: certs.leaf, deflate: { clientMaxWindowBits: 10 } });
    const r = await runCli([
      "load", `wss://127.0.0.1:${srv.port}/ws`, "--ca", certs.ca, "--connections", "5", "--duration", "1", "--interval", "50", "--size", "1000", "--payload", "text",
      "--deflate-client-no-context-takeover", "--deflate-server-no-context-takeover", "--deflate-client-max-window-bits", "--deflate-server-max-window-bits", "11",
      "--quiet", "--status-url", "off",
    ]);
    expect(r.stdout).toContain("offered 'permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits; server_max_window_bits=11'");
    expect(r.stdout).toMatch(/ {8}5 {2}permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits=10; server_max_window_bits=11/);
    const ratio = /payload\/wire (\d+\.\d+)x out, (\d+\.\d+)x in/.exec(r.stdout);
    expect(ratio).not.toBeNull();
    expect(Number(ratio![1])).toBeGreaterThan(1);
    expect(Number(ratio![2])).toBeGreaterThan(1);
    expect(r.code).toBe(0);
    const offered = (await (await fetch(`https://127.0.0.1:${srv.port}/conns`, { tls: { rejectUnauthorized: false } })).json()) as Seen;
    expect(new Set(offered.extensions)).toEqual(new Set(["permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits; server_max_window_bits=11"]));
  }, 30_000);

  const usage: [string, string[], RegExp][] = [
    ["window bits out of range", ["--deflate-server-max-window-bits", "16"], /--deflate-server-max-window-bits takes a whole number from 8 to 15/],
    ["an unknown payload", ["--payload", "lorem"], /--payload takes fill, random, text or file:PATH, got 'lorem'/],
    ["a payload file that is not there", ["--payload", "file:/nonexistent"], /--payload file:\/nonexistent: cannot read the file/],
    ["Sec-WebSocket-Extensions by hand", ["--header", "Sec-WebSocket-Extensions: x"], /set by the client itself; use --deflate/],
  ];
  for (const [what, args, re] of usage) {
    test(`usage error: ${what}`, async () => {
      const r = await runCli(["load", "ws://127.0.0.1:1/ws", ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(re);
    }, 15_000);
  }
});

describe("payloads (--payload)", () => {
  test("fill is 'x' after the stamp and never changes", () => {
    const p = new Payload("fill", 40);
    expect(p.varies).toBe(false);
    expect([...p.bytes.subarray(12)].every((b) => b === 0x78)).toBe(true);
  });
  test("text is JSON records from a fixed seed, and the next message is a different stretch", () => {
    const a = new Payload("text", 500);
    const b = new Payload("text", 500);
    expect(a.bytes).toEqual(b.bytes);
    const first = new TextDecoder().decode(a.bytes.subarray(12));
    const line = first.split("\n")[1]!;
    expect(JSON.parse(line)).toMatchObject({ type: expect.any(String), symbol: expect.any(String), ts: expect.any(Number) });
    a.next();
    expect(new TextDecoder().decode(a.bytes.subarray(12))).not.toBe(first);
  });
  test("random changes on every next()", () => {
    const p = new Payload("random", 64);
    const before = p.bytes.slice();
    p.next();
    expect(p.varies).toBe(true);
    expect(p.bytes).not.toEqual(before);
  });
  test("file: the file's bytes repeated and cut to the size, after the stamp", async () => {
    const path = `${import.meta.dir}/../package.json`;
    const src = new Uint8Array(await Bun.file(path).arrayBuffer());
    const size = 12 + src.byteLength * 2 + 10;
    const p = new Payload(`file:${path}`, size);
    expect(p.bytes.subarray(12, 12 + src.byteLength)).toEqual(src);
    expect(p.bytes.subarray(12 + 2 * src.byteLength)).toEqual(src.subarray(0, 10));
  });
});
