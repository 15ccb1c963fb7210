// RFC 6455 behaviour of `wsmillion serve`, through raw sockets (what no library would send) and through
// the `ws` package as an independent client.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closePayload, exchange, frame, rawConnect, UPGRADE } from "./helpers/raw.ts";
import { eventually } from "./helpers/eventually.ts";
import { serve, type ServeHandle } from "./helpers/serve.ts";
import { echo, wsOpen } from "./helpers/ws.ts";

let srv: ServeHandle;
beforeAll(async () => {
  srv = await serve(["--workers", "1", "--max-payload", "1024", "--idle-timeout", "0"]);
}, 30_000);
afterAll(async () => {
  expect(await srv.stop()).toBe(0);
}, 30_000);

describe("handshake (RFC 6455 4.2)", () => {
  test("101 with the right Sec-WebSocket-Accept", async () => {
    const c = await rawConnect(srv.port, UPGRADE());
    expect(c.head).toStartWith("HTTP/1.1 101");
    // The RFC's own example key and accept value.
    expect(c.head).toContain("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    c.socket.destroy();
  });

  test("another path: 404", async () => {
    const c = await rawConnect(srv.port, UPGRADE("/nope"));
    expect(c.head).toStartWith("HTTP/1.1 404");
    c.socket.destroy();
  });

  test("another version: 426 with Sec-WebSocket-Version: 13", async () => {
    const req = UPGRADE().replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    const c = await rawConnect(srv.port, req);
    expect(c.head).toStartWith("HTTP/1.1 426");
    expect(c.head.toLowerCase()).toContain("sec-websocket-version: 13");
    c.socket.destroy();
  });

  test("malformed upgrades: 400", async () => {
    for (const req of [
      UPGRADE().replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
      UPGRADE().replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
      UPGRADE().replace("Connection: Upgrade", "Connection: keep-alive"),
    ]) {
      const c = await rawConnect(srv.port, req);
      expect(c.head).toStartWith("HTTP/1.1 400");
      c.socket.destroy();
    }
  });

  test("POST to the WebSocket path: 405", async () => {
    const c = await rawConnect(srv.port, UPGRADE().replace("GET", "POST"));
    expect(c.head).toStartWith("HTTP/1.1 405");
    c.socket.destroy();
  });

  test("oversized request headers: 431", async () => {
    const c = await rawConnect(srv.port, UPGRADE("/ws", `X-Big: ${"a".repeat(200_000)}\r\n`));
    expect(c.head).toStartWith("HTTP/1.1 431");
    c.socket.destroy();
  });

  test("refusals are counted by reason", async () => {
    // Workers report every 250 ms. Each refusal above counted once under its reason: the two bad keys, the
    // missing Connection: Upgrade, the wrong path, version and method (the 431 is Bun's own, before ours).
    const want = { "400 connection": 1, "400 key": 2, "404 path": 1, "405 method": 1, "426 version": 1 };
    const s = await eventually(srv.stats, (s) => Object.keys(s.total.rejected).length >= Object.keys(want).length, 5000, "refusals reported");
    expect(s.total.rejected).toEqual(want);
  });
});

describe("frames (RFC 6455 5)", () => {
  test("text and binary echo, then the client's close code echoed", async () => {
    const got = await exchange(srv.port, [frame(1, "héllo"), frame(2, new Uint8Array([0, 1, 2, 255])), frame(8, closePayload(4000, "bye"))]);
    expect(got.map((f) => f.opcode)).toEqual([1, 2, 8]);
    expect(got[0]!.payload.toString()).toBe("héllo");
    expect([...got[1]!.payload]).toEqual([0, 1, 2, 255]);
    expect(got[2]!.code).toBe(4000);
  });

  test("fragmented message with a ping in the middle: pong first, then the whole message", async () => {
    const got = await exchange(srv.port, [frame(1, "ab", { fin: false }), frame(9, "p"), frame(0, "cd"), frame(8, closePayload(1000))]);
    expect(got.map((f) => f.opcode)).toEqual([10, 1, 8]);
    expect(got[0]!.payload.toString()).toBe("p");
    expect(got[1]!.payload.toString()).toBe("abcd");
  });

  const cases: [string, Buffer[], number][] = [
    ["unmasked client frame", [frame(1, "hi", { mask: false })], 1002],
    ["reserved bit without an extension", [frame(1, "hi", { rsv: 4 })], 1002],
    ["unknown opcode", [frame(3, "hi")], 1002],
    ["continuation without a start", [frame(0, "cd")], 1002],
    ["new message inside a fragmented one", [frame(1, "ab", { fin: false }), frame(1, "cd")], 1002],
    ["fragmented control frame", [frame(9, "p", { fin: false })], 1002],
    ["control frame over 125 bytes", [frame(9, new Uint8Array(126))], 1002],
    ["close frame with a 1-byte payload", [frame(8, new Uint8Array([3]))], 1002],
    ["close code 1005 on the wire", [frame(8, closePayload(1005))], 1002],
    ["close code 999", [frame(8, closePayload(999))], 1002],
    ["invalid UTF-8 in a text frame", [frame(1, new Uint8Array([0xc3, 0x28]))], 1007],
    ["invalid UTF-8 split across fragments", [frame(1, new Uint8Array([0x61, 0xc3]), { fin: false }), frame(0, new Uint8Array([0x28]))], 1007],
    ["invalid UTF-8 in a close reason", [frame(8, Buffer.concat([closePayload(1000), Buffer.from([0xc3, 0x28])]))], 1007],
    ["message over --max-payload", [frame(2, new Uint8Array(2000))], 1009],
    ["fragmented message over --max-payload", [frame(2, new Uint8Array(800), { fin: false }), frame(0, new Uint8Array(800))], 1009],
  ];
  for (const [name, frames, code] of cases) {
    test(`${name}: closed with ${code}, others unharmed`, async () => {
      const bystander = await wsOpen(srv.url);
      const got = await exchange(srv.port, frames);
      expect(got.at(-1)?.opcode).toBe(8);
      expect(got.at(-1)?.code).toBe(code);
      expect(await echo(bystander, "still here")).toBe("still here");
      bystander.close();
    });
  }
});

describe("through the ws package", () => {
  test("echo text, binary and a 1,000-byte message (under --max-payload 1024)", async () => {
    const ws = await wsOpen(srv.url);
    const replies: (string | Buffer)[] = [];
    ws.on("message", (m, isBinary) => replies.push(isBinary ? (m as Buffer) : String(m)));
    ws.send("text");
    ws.send(Buffer.from([1, 2, 3]));
    ws.send(Buffer.alloc(1000, 7));
    await eventually(() => replies.length >= 3, { timeoutMs: 3000, what: "3 echoes" });
    expect(replies).toHaveLength(3);
    expect(replies[0]).toBe("text");
    expect([...(replies[1] as Buffer)]).toEqual([1, 2, 3]);
    expect((replies[2] as Buffer).length).toBe(1000);
    ws.close();
  });

  test("ping answered with pong", async () => {
    const ws = await wsOpen(srv.url);
    const pong = new Promise<string>((r) => ws.once("pong", (d) => r(String(d))));
    ws.ping("are you there");
    expect(await pong).toBe("are you there");
    ws.close();
  });

  test("oversized message: ws sees close 1009", async () => {
    const ws = await wsOpen(srv.url);
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    ws.send(Buffer.alloc(5000));
    expect(await closed).toBe(1009);
  });

  test("permessage-deflate is off unless --deflate", async () => {
    const ws = await wsOpen(srv.url, { perMessageDeflate: true });
    expect(ws.extensions).toBe("");
    ws.close();
  });
});

describe("endpoints", () => {
  test("/conns answers exactly {closed, conns}", async () => {
    const ws = await wsOpen(srv.url);
    // Earlier tests' sockets may still be closing, and workers report every 250 ms: wait for ours alone.
    let body = "";
    await eventually(
      async () => {
        body = await fetch(`${srv.http}/conns`).then((r) => r.text());
        return JSON.parse(body).conns === 1;
      },
      { timeoutMs: 5000, what: "/conns to count our one connection" },
    );
    expect(body).toMatch(/^\{"closed":\d+,"conns":1\}$/);
    ws.close();
  });

  test("/metrics is Prometheus text with the cluster figures", async () => {
    const res = await fetch(`${srv.http}/metrics`);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toContain("# TYPE wsmillion_connections_open gauge");
    expect(text).toMatch(/wsmillion_messages_in_total\{worker="0"\} \d+/);
    expect(text).toMatch(/wsmillion_upgrades_rejected_total\{reason="404 path"\} \d+/);
  });

  test("/healthz and /stats", async () => {
    expect(await fetch(`${srv.http}/healthz`).then((r) => r.json())).toEqual({ ok: true, worker: 0 });
    const s = await srv.stats();
    expect(s.workers).toHaveLength(1);
    expect(s.workers[0]!.rssBytes).toBeGreaterThan(1e6);
    expect(s.total.messagesIn).toBeGreaterThan(0);
  });
});
