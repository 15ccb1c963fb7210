// Helpers for the load tests: servers to aim at (a `ws` server under Node, bare Bun servers, raw TCP
// peers that misbehave on purpose) and a CLI runner. Loopback only, free ports, everything stopped by PID.
import type { Subprocess, TCPSocketListener } from "bun";
import { join } from "node:path";
import { completePlan, type LoadPlan } from "../../src/load/plan.ts";
import type { Target } from "../../src/system/targets.ts";
import { readUntil } from "./read.ts";

export const ROOT = join(import.meta.dir, "..", "..");
export const CLI = join(ROOT, "src", "cli.ts");

export interface NodeServer {
  port: number;
  proc: Subprocess<"pipe", "pipe", "inherit">;
  stop(): Promise<void>;
}

/** Runs a Node script in test/helpers/ that prints {"port":N}; it exits when its stdin closes, or by PID on stop(). */
export async function nodeServer(script: string, args: string[] = []): Promise<NodeServer> {
  const proc = Bun.spawn(["node", join(import.meta.dir, script), ...args], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  let port: number;
  try {
    port = (JSON.parse((await readUntil(proc.stdout, /^(.*)\n/, 10_000))[1]!) as { port: number }).port;
  } catch (e) {
    proc.kill("SIGKILL");
    throw new Error(`${script} did not print its port: ${(e as Error).message}`);
  }
  return {
    port,
    proc,
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/** The `ws` package server under Node: echo | push <ms> | close <code> | ping | fragment. */
export function wsServer(mode: string, arg?: string): Promise<NodeServer> {
  return nodeServer("load-ws-server.mjs", arg === undefined ? [mode] : [mode, arg]);
}

/** What test/helpers/load-wss-server.mjs takes: TLS files, ws's perMessageDeflate options, a misbehaviour. */
export interface WssServerConfig {
  tls?: { cert: string; key: string };
  deflate?: Record<string, unknown> | false;
  mode?: "echo" | "corrupt" | "bomb";
  every?: number;
  bombBytes?: number;
  expect?: string;
}

/** The `ws` package server under Node over TLS and/or with permessage-deflate (see load-wss-server.mjs). */
export function wssServer(config: WssServerConfig): Promise<NodeServer> {
  return nodeServer("load-wss-server.mjs", [JSON.stringify(config)]);
}

/** A Bun server listening on TCP: unlike a unix-socket one, it always has a port. */
export type TcpServer = ReturnType<typeof Bun.serve> & { readonly port: number };

/** A bare Bun.serve WebSocket echo server with /conns, in this process. */
export function bunEcho(port = 0, hostname = "127.0.0.1"): TcpServer {
  let closed = 0;
  const srv: ReturnType<typeof Bun.serve> = Bun.serve({
    port,
    hostname,
    fetch(req, s) {
      const path = new URL(req.url).pathname;
      if (path === "/conns") return Response.json({ closed, conns: srv.pendingWebSockets });
      if (path !== "/ws") return new Response("not here", { status: 404 });
      return s.upgrade(req, { data: undefined }) ? undefined : new Response("upgrade required", { status: 400 });
    },
    websocket: {
      message(ws, m) {
        ws.send(m);
      },
      close() {
        closed++;
      },
    },
  });
  return srv as TcpServer;
}

/** A raw TCP server that answers each connection's first bytes with `reply` (null: say nothing). */
export function rawServer(reply: ((request: string) => string | null) | null, after: "keep" | "close" = "keep"): TCPSocketListener<{ buf: string }> {
  return Bun.listen<{ buf: string }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { buf: "" };
      },
      data(s, d) {
        s.data.buf += new TextDecoder().decode(d);
        if (!s.data.buf.includes("\r\n\r\n") || reply === null) return;
        const r = reply(s.data.buf);
        if (r !== null) s.write(r);
        if (after === "close") s.end();
      },
    },
  });
}

/** A port with nothing listening on it (bound then released). */
export function closedPort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

/** A small plan for tests: one worker, short, no status URL. */
export function plan(targets: Target[], over: Partial<LoadPlan> = {}): LoadPlan {
  return completePlan(
    { targets, connections: 100, concurrency: 100, durationS: 1, intervalMs: 100, size: 64, handshakeTimeoutMs: 5000, workers: 1, maxMessage: 1 << 20, statusUrl: null, ...over },
    20_000,
  );
}

export const local = (port: number): Target[] => [{ host: "127.0.0.1", port }];

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `wsmillion <args>` (optionally under a wrapper such as prlimit), bounded in time. */
export async function runCli(args: string[], opts: { prefix?: string[]; timeoutMs?: number } = {}): Promise<CliResult> {
  const proc = Bun.spawn([...(opts.prefix ?? []), process.execPath, CLI, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}
