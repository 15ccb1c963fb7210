// Every failure cause the load generator names, provoked for real on loopback and explained.
import { afterAll, describe, expect, test } from "bun:test";
import { runLoad } from "../src/load/coordinator.ts";
import type { LoadReport } from "../src/load/report.ts";
import { acceptFor } from "../src/protocol/handshake.ts";
import { bunEcho, closedPort, local, nodeServer, plan, rawServer, runCli } from "./helpers/load.ts";
import { readUntil } from "./helpers/read.ts";

const stops: (() => unknown)[] = [];
afterAll(async () => { for (const s of stops.reverse()) await s(); });

function only(r: LoadReport, cause: string, count: number): void {
  expect(r.errors.map((e) => [e.cause, e.count])).toEqual([[cause, count]]);
  expect(r.errors[0]!.explanation.length).toBeGreaterThan(20);
  expect(r.connections.failed).toBe(count);
  expect(r.verdict.exitCode).toBe(1);
}

const keyOf = (req: string): string => /Sec-WebSocket-Key: (\S+)/i.exec(req)![1]!;

describe("dial failures by cause", () => {
  test("ECONNREFUSED: nothing listening", async () => {
    only(await runLoad(plan(local(closedPort()), { connections: 20, durationS: 0 })), "ECONNREFUSED", 20);
  }, 20_000);

  test("HTTP_404 and HTTP_503: upgrade refused with a status", async () => {
    const srv = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => new Response("no", { status: new URL(req.url).pathname === "/full" ? 503 : 404 }) });
    stops.push(() => srv.stop(true));
    only(await runLoad(plan(local(srv.port!), { connections: 10, durationS: 0 })), "HTTP_404", 10);
    const r = await runLoad(plan(local(srv.port!), { connections: 10, durationS: 0, path: "/full" }));
    only(r, "HTTP_503", 10);
    expect(r.errors[0]!.explanation).toContain("full");
  }, 20_000);

  test("BAD_ACCEPT: a 101 with the wrong Sec-WebSocket-Accept", async () => {
    const srv = rawServer(() => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor("wrong")}\r\n\r\n`);
    stops.push(() => srv.stop(true));
    only(await runLoad(plan(local(srv.port), { connections: 10, durationS: 0 })), "BAD_ACCEPT", 10);
  }, 20_000);

  test("BAD_RESPONSE: garbage instead of HTTP", async () => {
    const srv = rawServer(() => "SSH-2.0-OpenSSH_9.6\r\n\r\n");
    stops.push(() => srv.stop(true));
    only(await runLoad(plan(local(srv.port), { connections: 10, durationS: 0 })), "BAD_RESPONSE", 10);
  }, 20_000);

  test("CLOSED_DURING_HANDSHAKE: the server hangs up on the upgrade", async () => {
    // An empty reply, then the socket is ended: no answer to the upgrade.
    const srv = rawServer(() => "", "close");
    stops.push(() => srv.stop(true));
    only(await runLoad(plan(local(srv.port), { connections: 10, durationS: 0 })), "CLOSED_DURING_HANDSHAKE", 10);
  }, 20_000);

  test("HANDSHAKE_TIMEOUT: connected, but no answer to the upgrade", async () => {
    const srv = rawServer(null);
    stops.push(() => srv.stop(true));
    const r = await runLoad(plan(local(srv.port), { connections: 10, durationS: 0, handshakeTimeoutMs: 300 }));
    only(r, "HANDSHAKE_TIMEOUT", 10);
  }, 20_000);

  test("ETIMEDOUT: the TCP connect never completes (listener with a full backlog)", async () => {
    // A Python listener that never accepts: once its backlog is full the kernel drops further SYNs.
    const py = Bun.spawn(["python3", "-c", "import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()"], { stdin: "pipe", stdout: "pipe" });
    stops.push(() => { py.kill(); });
    const port = Number((await readUntil(py.stdout, /^(\d+)\n/, 10_000))[1]);
    const r = await runLoad(plan(local(port), { connections: 12, durationS: 0, handshakeTimeoutMs: 500 }));
    // The first couple fit in the backlog (TCP connects, no upgrade answer); the rest time out in connect.
    const by = Object.fromEntries(r.errors.map((e) => [e.cause, e.count]));
    expect(by.ETIMEDOUT).toBeGreaterThanOrEqual(8);
    expect((by.ETIMEDOUT ?? 0) + (by.HANDSHAKE_TIMEOUT ?? 0)).toBe(12);
  }, 20_000);

  test("ECONNRESET: the server resets the connection", async () => {
    const rst = await nodeServer("load-rst-server.mjs");
    stops.push(() => rst.stop());
    only(await runLoad(plan(local(rst.port), { connections: 10, durationS: 0 })), "ECONNRESET", 10);
  }, 20_000);

  test("PROTOCOL_ERROR: a masked frame from the server fails the connection with 1002", async () => {
    const srv = Bun.listen<{ buf: string }>({
      hostname: "127.0.0.1", port: 0,
      socket: {
        open(s) { s.data = { buf: "" }; },
        data(s, d) {
          s.data.buf += new TextDecoder().decode(d);
          if (!s.data.buf.includes("\r\n\r\n") || s.data.buf === "sent") return;
          const key = keyOf(s.data.buf);
          s.data.buf = "sent";
          s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`);
          s.write(new Uint8Array([0x82, 0x81, 1, 2, 3, 4, 5]));
        },
      },
    });
    stops.push(() => srv.stop(true));
    const r = await runLoad(plan(local(srv.port), { connections: 5, durationS: 0 }));
    // Our close, not the server's: counted apart, and the verdict does not blame the server's closes.
    expect(r.errors).toEqual([]);
    expect(r.counters.failedByUs).toBe(5);
    expect(r.ourCloses).toEqual([{ code: 1002, count: 5, meaning: "protocol error", example: "server frames must not be masked" }]);
    expect(r.serverCloses).toEqual([]);
    expect(r.drops).toEqual([]);
    expect(r.verdict.reasons.join("; ")).toContain("5 connections were failed by us because the server broke RFC 6455 (close 1002 5)");
    expect(r.verdict.reasons.join("; ")).not.toContain("dropped");
  }, 20_000);
});

describe("limits, provoked in the CLI", () => {
  test("EMFILE: more connections than the worker's open-files limit", async () => {
    const srv = bunEcho();
    stops.push(() => srv.stop(true));
    const r = await runCli(["load", `ws://127.0.0.1:${srv.port}/ws`, "--connections", "400", "--workers", "1", "--duration", "0", "--no-check", "--quiet"], { prefix: ["prlimit", "--nofile=300:300"] });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/\d+\s+EMFILE: open-files limit of the load worker reached/);
    expect(r.stderr).toContain("open-files limit (300)");
  }, 30_000);

  test("EADDRNOTAVAIL: ephemeral ports exhausted for one destination (50-port range in a private network namespace)", async () => {
    // unshare -n gives a private loopback whose port range we may narrow without touching the host.
    const script = [
      "ip link set lo up",
      "sysctl -qw net.ipv4.ip_local_port_range='40000 40049'",
      `${process.execPath} -e 'const s=Bun.serve({port:7000,hostname:"127.0.0.1",fetch:(r,x)=>x.upgrade(r)?undefined:new Response("",{status:400}),websocket:{message(){}}});setTimeout(()=>s.stop(true),20000)' & srv=$!`,
      // Wait for the listener without dialing it (a probe would spend one of the 50 ports): poll the socket table.
      "i=0; until ss -Hltn 'sport = :7000' | grep -q LISTEN; do i=$((i+1)); if [ $i -gt 200 ]; then echo 'the server never listened' >&2; kill $srv; exit 3; fi; sleep 0.05; done",
      `${process.execPath} ${JSON.stringify(require.resolve("../src/cli.ts"))} load ws://127.0.0.1:7000/ws --connections 80 --duration 0 --quiet --no-check --status-url off`,
      "code=$?; kill $srv; exit $code",
    ].join("\n");
    const proc = Bun.spawn(["unshare", "-n", "sh", "-c", script], { stdout: "pipe", stderr: "pipe" });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 25_000);
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    expect(err).toContain("ephemeral ports");
    expect(code).toBe(1);
    expect(out).toMatch(/\s30\s+EADDRNOTAVAIL: ephemeral ports exhausted/);
    expect(out).toMatch(/opened \(ramp\)\s+50 /);
  }, 30_000);
});
