// The upgrade path under pressure: --handshake-timeout held by the worker itself (Bun alone gives a socket
// without a complete request 8 to 12 s whatever its idle timeout says), what half-sent requests and garbage
// leave for everyone else, the accept queues and upgrade times /stats and /metrics report, and the kernel
// settings `serve` warns about at start.
import { afterEach, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { listenQueues } from "../src/server/listen-queues.ts";
import type { ClusterStats } from "../src/server/stats.ts";
import { UPGRADE } from "./helpers/raw.ts";
import { CLI, eventually, serve, type ServeHandle } from "./helpers/serve.ts";
import { echo, wsOpen } from "./helpers/ws.ts";

const HALF_SENT = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n";

interface Raw {
  socket: Socket;
  /** Everything the server sent. */
  got(): string;
  /** Milliseconds from connected to closed by the server. */
  closed: Promise<number>;
  isClosed(): boolean;
}

/** A raw connection that writes `bytes` once connected; resolves once connected. */
function dial(port: number, bytes: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let got = "";
    let done = false;
    let connectedAt = 0;
    const closed = new Promise<number>((r) =>
      socket.on("close", () => {
        done = true;
        r(performance.now() - connectedAt);
      }),
    );
    socket.on("data", (d: Buffer) => (got += d.toString("latin1")));
    socket.on("error", reject);
    socket.on("connect", () => {
      connectedAt = performance.now();
      socket.write(bytes);
      resolve({ socket, got: () => got, closed, isClosed: () => done });
    });
  });
}

const servers: ServeHandle[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function start(args: string[]): Promise<ServeHandle> {
  const s = await serve(args);
  servers.push(s);
  return s;
}

describe("--handshake-timeout", () => {
  test("a half-sent upgrade request is dropped by the server 1 to 4 s after it connected (timeout 2 s), and counted", async () => {
    const srv = await start(["--workers", "1", "--handshake-timeout", "2"]);
    const half = await dial(srv.port, HALF_SENT);
    sockets.push(half.socket);
    const ms = await half.closed;
    expect(ms).toBeGreaterThanOrEqual(1000);
    expect(ms).toBeLessThan(4000);
    expect(half.got()).toBe("");
    await eventually(srv.stats, (s) => s.total.handshakeTimeouts === 1, 5000, "one handshake timeout counted");
  }, 20_000);

  test("200 half-sent requests do not keep a ws client from upgrading; they are dropped, the client stays", async () => {
    const srv = await start(["--workers", "1", "--handshake-timeout", "2"]);
    const halves = await Promise.all(Array.from({ length: 200 }, () => dial(srv.port, HALF_SENT)));
    sockets.push(...halves.map((h) => h.socket));
    const ws = await wsOpen(srv.url);
    expect(await echo(ws, "through")).toBe("through");
    const times = await Promise.all(halves.map((h) => h.closed));
    expect(Math.max(...times)).toBeLessThan(4000);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(1000);
    // The guard goes by what the server sent on a socket: an upgraded one, even a quiet one, is never its business.
    expect(ws.readyState).toBe(ws.OPEN);
    expect(await echo(ws, "still here")).toBe("still here");
    const s = await srv.stats();
    expect(s.total.handshakeTimeouts).toBe(200);
    expect(s.conns).toBe(1);
    ws.close();
  }, 30_000);

  test("garbage instead of a request: that socket gets 400 and is closed; a ws client and a half-sent request are untouched", async () => {
    const srv = await start(["--workers", "1", "--handshake-timeout", "5"]);
    const ws = await wsOpen(srv.url);
    const half = await dial(srv.port, HALF_SENT);
    const garbage = await dial(srv.port, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP at all\r\n\r\n");
    sockets.push(half.socket, garbage.socket);
    await garbage.closed;
    expect(garbage.got()).toStartWith("HTTP/1.1 400");
    expect(await echo(ws, "fine")).toBe("fine");
    expect(half.isClosed()).toBe(false);
    expect((await srv.stats()).total.handshakeTimeouts).toBe(0);
    ws.close();
  }, 20_000);
});

/** GET `path` on a kept-alive raw connection; resolves with the body (Content-Length framed). */
function get(socket: Socket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const onData = (d: Buffer): void => {
      buf += d.toString("utf8");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = Number(/content-length:\s*(\d+)/i.exec(buf.slice(0, end))?.[1] ?? Number.NaN);
      if (Buffer.byteLength(buf.slice(end + 4)) < length) return;
      socket.off("data", onData);
      resolve(buf.slice(end + 4));
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  });
}

describe("where an upgrade waits", () => {
  test("a stopped worker's accept queue shows in /stats and /metrics (read from the kernel by the supervisor); upgrade times merge", async () => {
    const srv = await start(["--workers", "2"]);
    const ready = await eventually(srv.stats, (s) => s.workers.length === 2 && s.workers.every((w) => w.listenInode > 0), 10_000, "both workers listening");
    // A kept-alive connection to worker 0: the one that will answer while worker 1 is stopped.
    let keep: Socket | undefined;
    for (let i = 0; i < 64 && !keep; i++) {
      const c = (await dial(srv.port, "")).socket;
      sockets.push(c);
      if ((JSON.parse(await get(c, "/healthz")) as { worker: number }).worker === 0) keep = c;
    }
    if (!keep) throw new Error("no connection reached worker 0 in 64 tries");
    const stopped = ready.workers.find((w) => w.worker === 1)!;
    process.kill(stopped.pid, "SIGSTOP");
    try {
      const dials = await Promise.all(Array.from({ length: 40 }, () => dial(srv.port, UPGRADE())));
      sockets.push(...dials.map((d) => d.socket));
      const answered = () => dials.filter((d) => d.got().startsWith("HTTP/1.1 101")).length;
      // The kernel's own count for the stopped worker's listener; what worker 0 answers must match it.
      const queued = () => listenQueues(srv.port).get(stopped.listenInode) ?? -1;
      await eventually(() => answered() + queued() === 40, { timeoutMs: 10_000, what: "every dial upgraded by worker 0 or queued for worker 1" });
      const waiting = queued();
      expect(waiting).toBeGreaterThan(0);
      const s = JSON.parse(await get(keep, "/stats")) as ClusterStats;
      expect(s.workers.find((w) => w.worker === 1)!.acceptQueue).toBe(waiting);
      expect(s.workers.find((w) => w.worker === 0)!.acceptQueue).toBe(0);
      expect(s.handshakes!.acceptQueue).toBe(waiting);
      expect(typeof s.handshakes!.listenOverflows).toBe("number");
      const metrics = await get(keep, "/metrics");
      expect(metrics).toContain(`wsmillion_accept_queue{worker="1"} ${waiting}`);
      expect(metrics).toContain(`wsmillion_upgrade_seconds_count{worker="0"} ${40 - waiting}`);
      expect(metrics).toMatch(/^wsmillion_listen_overflows_total \d+$/m);
    } finally {
      process.kill(stopped.pid, "SIGCONT");
    }
    const s = await eventually(srv.stats, (x) => x.handshakes?.upgrade.count === 40, 10_000, "all 40 upgraded once worker 1 runs again");
    expect(s.workers.reduce((n, w) => n + w.upgrade.count, 0)).toBe(40);
    expect(s.handshakes!.upgrade.maxMs).toBeGreaterThanOrEqual(s.handshakes!.upgrade.p50Ms);
    expect(s.handshakes!.acceptQueue).toBe(0);
  }, 40_000);
});

describe("kernel settings at start", () => {
  /** `serve` on a fixed port in a private network namespace with the given sysctls; its stderr and its listener's backlog. */
  async function serveIn(sysctls: string): Promise<{ stderr: string; backlog: number }> {
    const script = [
      "ip link set lo up",
      `sysctl -qw ${sysctls}`,
      "dir=$(mktemp -d)",
      `${process.execPath} ${CLI} serve --port 7000 --host 127.0.0.1 --workers 2 >$dir/out 2>$dir/err & srv=$!`,
      // serve says where it listens once every worker has listened (and set its backlog).
      "i=0; until grep -q 'listening on' $dir/out; do i=$((i+1)); if [ $i -gt 400 ]; then kill $srv; cat $dir/err >&2; exit 3; fi; sleep 0.05; done",
      "ss -Hltn 'sport = :7000' | awk '{print \"backlog\", $3}'",
      "kill $srv; wait $srv; cat $dir/err >&2; rm -r $dir",
    ].join("\n");
    const proc = Bun.spawn(["unshare", "-n", "sh", "-c", script], { stdout: "pipe", stderr: "pipe" });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 25_000);
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    if (code !== 0) throw new Error(`namespace script failed (${code}): ${err}\n${out}`);
    const backlogs = [...out.matchAll(/^backlog (\d+)$/gm)].map((m) => Number(m[1]));
    expect(backlogs.length).toBe(2);
    expect(new Set(backlogs).size).toBe(1);
    return { stderr: err, backlog: backlogs[0]! };
  }

  test("a short somaxconn and no tcp_migrate_req: one warning each, with the sysctl that fixes it", async () => {
    const { stderr, backlog } = await serveIn("net.core.somaxconn=128 net.ipv4.tcp_migrate_req=0");
    const lines = stderr.split("\n").filter((l) => l.startsWith("warning: kernel:"));
    expect(lines.find((l) => l.includes("somaxconn 128"))).toContain("fix: sysctl -w net.core.somaxconn=4096");
    expect(lines.find((l) => l.includes("tcp_migrate_req is 0"))).toContain("fix: sysctl -w net.ipv4.tcp_migrate_req=1");
    expect(backlog).toBe(128);
  }, 30_000);

  test("with both set: neither warning; each worker's accept queue takes somaxconn, past Bun's own 512", async () => {
    const { stderr, backlog } = await serveIn("net.core.somaxconn=4096 net.ipv4.tcp_migrate_req=1");
    expect(stderr).not.toContain("somaxconn");
    expect(stderr).not.toContain("tcp_migrate_req");
    expect(backlog).toBe(4096);
  }, 30_000);
});
