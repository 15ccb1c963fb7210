// wss:// against the `ws` package under Node over TLS (certificates made by openssl at test time): echoes
// through TLS with the handshake timed apart, and every way a TLS dial fails counted by its cause with the fix.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { runLoad } from "../src/load/coordinator.ts";
import type { TlsPlan } from "../src/load/plan.ts";
import type { LoadReport } from "../src/load/report.ts";
import { makeCerts, type TestCerts } from "./helpers/certs.ts";
import { bunEcho, local, plan, rawServer, runCli, wssServer, type NodeServer } from "./helpers/load.ts";

const stops: (() => unknown)[] = [];
let certs: TestCerts;
beforeAll(() => {
  certs = makeCerts();
  stops.push(() => certs.remove());
});
afterAll(async () => {
  for (const s of stops.reverse()) await s();
});

const tls = (t: Partial<TlsPlan> = {}): TlsPlan => ({ insecure: false, caFile: null, serverName: null, ...t });

async function server(cert: { cert: string; key: string }): Promise<NodeServer> {
  const srv = await wssServer({ tls: cert });
  stops.push(() => srv.stop());
  return srv;
}

async function conns(port: number): Promise<{ hosts: string[]; messages: number }> {
  const res = await fetch(`https://127.0.0.1:${port}/conns`, { tls: { rejectUnauthorized: false } });
  return (await res.json()) as { hosts: string[]; messages: number };
}

/** Every dial failed, all for `cause`, explained with `fix`; the first error Bun gave is kept as the example. */
function failedBy(r: LoadReport, cause: string, n: number, fix: RegExp, example: RegExp): void {
  expect(r.errors.map((e) => [e.cause, e.count])).toEqual([[cause, n]]);
  expect(r.errors[0]!.explanation).toMatch(fix);
  expect(r.errors[0]!.example ?? "").toMatch(example);
  expect(r.connections.openAtRamp).toBe(0);
  expect(r.verdict.exitCode).toBe(1);
}

describe("wss: echoes through TLS", () => {
  test("with --ca (a private CA): every connection opens, TLS is timed between the TCP connect and the upgrade, echoes come back whole", async () => {
    const srv = await server(certs.leaf);
    const r = await runLoad(plan(local(srv.port), { connections: 20, intervalMs: 50, tls: tls({ caFile: certs.ca }) }));
    expect(r.errors).toEqual([]);
    expect(r.connections.openAtRamp).toBe(20);
    for (const h of ["connect", "tls", "handshake"] as const) expect([h, r.latency[h].count]).toEqual([h, 20]);
    expect(r.latency.rtt.count).toBeGreaterThan(200);
    expect(r.counters.bytesIn).toBe(r.counters.msgsIn * 64);
    expect(r.counters.msgsIn).toBeGreaterThanOrEqual(r.counters.msgsOut * 0.95);
    expect((await conns(srv.port)).messages).toBe(r.counters.msgsOut);
    expect(r.verdict.met).toBe(true);
  }, 30_000);

  test("--insecure accepts a self-signed certificate, also one issued for another name", async () => {
    for (const cert of [certs.self, certs.other]) {
      const srv = await server(cert);
      const r = await runLoad(plan(local(srv.port), { connections: 10, tls: tls({ insecure: true }) }));
      expect(r.errors).toEqual([]);
      expect(r.connections.openAtRamp).toBe(10);
      expect(r.latency.rtt.count).toBeGreaterThan(50);
    }
  }, 30_000);

  test("--servername: the certificate is checked against that name, and the Host header carries it", async () => {
    const srv = await server(certs.self);
    const r = await runLoad(plan(local(srv.port), { connections: 5, tls: tls({ caFile: certs.self.cert, serverName: "localhost" }) }));
    expect(r.connections.openAtRamp).toBe(5);
    expect(new Set((await conns(srv.port)).hosts)).toEqual(new Set([`localhost:${srv.port}`]));
  }, 30_000);
});

describe("TLS failures by cause, each with its fix", () => {
  test("TLS_UNKNOWN_ISSUER: a self-signed server, neither --ca nor --insecure", async () => {
    const srv = await server(certs.self);
    failedBy(await runLoad(plan(local(srv.port), { connections: 10, durationS: 0, tls: tls() })), "TLS_UNKNOWN_ISSUER", 10, /--ca FILE.*--insecure/, /self.signed/);
  }, 30_000);

  test("TLS_UNKNOWN_ISSUER: a leaf of a CA we were not given", async () => {
    const srv = await server(certs.leaf);
    failedBy(await runLoad(plan(local(srv.port), { connections: 10, durationS: 0, tls: tls() })), "TLS_UNKNOWN_ISSUER", 10, /--ca FILE/, /unable to verify the first certificate/);
  }, 30_000);

  test("TLS_NAME_MISMATCH: --servername names a host the certificate does not", async () => {
    const srv = await server(certs.leaf);
    const r = await runLoad(plan(local(srv.port), { connections: 10, durationS: 0, tls: tls({ caFile: certs.ca, serverName: "wrong.example" }) }));
    failedBy(r, "TLS_NAME_MISMATCH", 10, /--servername/, /wrong\.example/);
  }, 30_000);

  test("TLS_EXPIRED: the server's certificate expired", async () => {
    const srv = await server(certs.expired);
    failedBy(await runLoad(plan(local(srv.port), { connections: 10, durationS: 0, tls: tls({ caFile: certs.ca }) })), "TLS_EXPIRED", 10, /expired/, /expired/);
  }, 30_000);

  test("TLS_HANDSHAKE: the port does not speak TLS", async () => {
    const srv = bunEcho();
    stops.push(() => srv.stop(true));
    failedBy(await runLoad(plan(local(srv.port), { connections: 10, durationS: 0, tls: tls() })), "TLS_HANDSHAKE", 10, /speaking TLS/, /WRONG_VERSION_NUMBER/);
  }, 30_000);

  test("TLS_TIMEOUT: TCP connects, the server never answers the TLS hello", async () => {
    const srv = rawServer(null);
    stops.push(() => srv.stop(true));
    const r = await runLoad(plan(local(srv.port), { connections: 10, durationS: 0, handshakeTimeoutMs: 300, tls: tls() }));
    failedBy(r, "TLS_TIMEOUT", 10, /TLS handshake did not finish within --handshake-timeout/, /^$/);
  }, 30_000);

  test("CLOSED_DURING_TLS: the server hangs up on the TLS hello", async () => {
    const srv = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open() {}, data: (s) => void s.end() } });
    stops.push(() => srv.stop(true));
    const r = await runLoad(plan(local(srv.port), { connections: 10, durationS: 0, tls: tls() }));
    failedBy(r, "CLOSED_DURING_TLS", 10, /during the TLS handshake/, /before secure TLS connection was established/);
  }, 30_000);
});

describe("the command line", () => {
  const usage: [string, string[], RegExp][] = [
    ["--insecure without TLS", ["load", "ws://127.0.0.1:1/ws", "--insecure"], /--insecure is a TLS option: use a wss:\/\/ URL, or --tls/],
    ["--ca and --insecure", ["load", "wss://127.0.0.1:1/ws", "--insecure", "--ca", "/etc/hostname"], /either --ca FILE .* or --insecure/],
    ["--ca that is not PEM", ["load", "wss://127.0.0.1:1/ws", "--ca", "/etc/hostname"], /--ca \/etc\/hostname: no PEM certificate/],
    ["--ca missing", ["load", "wss://127.0.0.1:1/ws", "--ca", "/nonexistent.pem"], /--ca \/nonexistent\.pem: cannot read the file/],
    ["ws and wss mixed", ["load", "--targets", "ws://127.0.0.1:1,wss://127.0.0.2:1"], /mixes ws:\/\/ and wss:\/\//],
    ["--tls with a ws:// URL", ["load", "ws://127.0.0.1:1/ws", "--tls"], /--tls says wss:\/\/ but the URL says ws:\/\//],
    ["bad --servername", ["load", "wss://127.0.0.1:1/ws", "--servername", "a b"], /--servername takes the host name/],
  ];
  for (const [what, args, re] of usage) {
    test(`usage error: ${what}`, async () => {
      const r = await runCli(args);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(re);
    }, 15_000);
  }

  test("--tls with --addr and --ca: the report shows wss:// and the TLS handshake row", async () => {
    const srv = await server(certs.leaf);
    const r = await runCli(["load", "--addr", `127.0.0.1:${srv.port}`, "--tls", "--ca", certs.ca, "--connections", "10", "--duration", "1", "--interval", "100", "--quiet", "--status-url", "off"]);
    expect(r.stdout).toContain(`10 connections to wss://127.0.0.1:${srv.port}/ws`);
    expect(r.stdout).toMatch(/TLS handshake\s+10\s/);
    expect(r.code).toBe(0);
  }, 30_000);

  test("a TLS failure names its fix in the report and exits 1", async () => {
    const srv = await server(certs.self);
    const r = await runCli(["load", `wss://127.0.0.1:${srv.port}/ws`, "--connections", "5", "--duration", "0", "--quiet", "--status-url", "off"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/5\s+TLS_UNKNOWN_ISSUER: .*--ca FILE/);
  }, 30_000);
});
