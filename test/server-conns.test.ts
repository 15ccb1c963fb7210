// /conns answers from the count the supervisor pushes to every worker: exact at rest through opens, closes,
// a killed worker and its restart, on every worker; and answered with no round trip, so it still answers
// while the supervisor and the other workers are frozen. Real processes, loopback only.
import { describe, expect, test } from "bun:test";
import { connect } from "node:net";
import type { ClusterStats } from "../src/server/stats.ts";
import { eventually, serve, type ServeHandle } from "./helpers/serve.ts";
import { openMany } from "./helpers/ws.ts";

interface Count {
  closed: number;
  conns: number;
}

/** One keep-alive HTTP connection to the port, on whichever worker the kernel hashes it to. */
function httpConnection(port: number) {
  const socket = connect({ port, host: "127.0.0.1" });
  socket.on("error", () => {});
  let buf = Buffer.alloc(0);
  let wake = (): void => {};
  socket.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake();
  });
  return {
    /** GET `path`: the answer's JSON body, or null when none came within `waitMs`. */
    async get(path: string, waitMs: number): Promise<unknown> {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      const deadline = Date.now() + waitMs;
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end >= 0) {
          const length = Number(/content-length: *(\d+)/i.exec(buf.subarray(0, end).toString())?.[1]);
          if (buf.length >= end + 4 + length) {
            const body = buf.subarray(end + 4, end + 4 + length).toString();
            buf = buf.subarray(end + 4 + length);
            return JSON.parse(body);
          }
        }
        const left = deadline - Date.now();
        if (left <= 0) return null;
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, left);
        });
      }
    },
    close: () => socket.destroy(),
  };
}

/**
 * What each worker answers to /conns, by worker index: fresh connections (each hashed to any worker) ask
 * /healthz who answers, then /conns on the same connection, until every worker of `indexes` has answered.
 */
async function connsByWorker(port: number, indexes: number[]): Promise<Map<number, Count>> {
  const seen = new Map<number, Count>();
  for (let attempt = 0; attempt < 60 && seen.size < indexes.length; attempt++) {
    const http = httpConnection(port);
    try {
      const health = (await http.get("/healthz", 2000)) as { worker: number } | null;
      if (health === null || seen.has(health.worker)) continue;
      const count = (await http.get("/conns", 2000)) as Count | null;
      if (count !== null) seen.set(health.worker, count);
    } finally {
      http.close();
    }
  }
  return seen;
}

const same = (a: Count, b: Count) => a.closed === b.closed && a.conns === b.conns;

describe("/conns", () => {
  test("exact at rest through opens, closes, a killed worker and its restart; every worker answers the same", async () => {
    const srv = await serve(["--workers", "2"]);
    const expectConns = async (want: Count, what: string) => {
      await eventually(srv.conns, (c) => same(c, want), 5000, `/conns ${JSON.stringify(want)}: ${what}`);
      // /stats sums fresh reports, /conns the pushed counts: at rest the two agree.
      const s = await srv.stats();
      expect({ closed: s.closed, conns: s.conns }).toEqual(want);
    };
    try {
      const clients = await openMany(srv.url, 120);
      await expectConns({ closed: 0, conns: 120 }, "120 opened");
      for (const c of clients.slice(0, 20)) c.close();
      await expectConns({ closed: 20, conns: 100 }, "20 closed");

      const before = await eventually(srv.stats, (s) => s.workers.length === 2 && s.workers.every((w) => w.open > 0), 5000, "both workers holding connections");
      const victim = before.workers[0]!;
      process.kill(victim.pid, "SIGKILL");
      // Its connections are lost: closed, no longer open.
      await expectConns({ closed: 20 + victim.open, conns: 100 - victim.open }, "a worker killed");
      await eventually(srv.stats, (s: ClusterStats) => s.workers.length === 2 && s.workers.every((w) => w.pid !== victim.pid), 8000, "the worker restarted");
      const fresh = await openMany(srv.url, 30);
      const want = { closed: 20 + victim.open, conns: 100 - victim.open + 30 };
      await expectConns(want, "30 more opened after the restart");
      // Each worker answers from its own copy, the restarted one included.
      const byWorker = await eventually(
        () => connsByWorker(srv.port, [0, 1]),
        (m) => m.size === 2 && [...m.values()].every((c) => same(c, want)),
        10_000,
        "both workers answering the same count",
      );
      expect(Object.fromEntries(byWorker)).toEqual({ 0: want, 1: want });

      for (const c of [...clients, ...fresh]) c.terminate();
      await expectConns({ closed: 150, conns: 0 }, "all gone");
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 60_000);

  test("answers with the last pushed figure while the supervisor and the other worker are stopped", async () => {
    const srv: ServeHandle = await serve(["--workers", "2"]);
    const stopped: number[] = [];
    try {
      const clients = await openMany(srv.url, 50);
      const want = { closed: 0, conns: 50 };
      await eventually(
        () => connsByWorker(srv.port, [0, 1]),
        (m) => m.size === 2 && [...m.values()].every((c) => same(c, want)),
        10_000,
        "both workers' copies at 50",
      );
      const s = await srv.stats();
      const frozen = s.workers[0]!;
      const awake = s.workers[1]!;
      // The supervisor (the serve process itself) and one worker: no round trip could be answered now.
      for (const pid of [srv.proc.pid, frozen.pid]) {
        process.kill(pid, "SIGSTOP");
        stopped.push(pid);
      }
      // A fresh connection may land on the frozen worker (no answer at all): try others until the awake one
      // says it is there, then ask it /conns on the same connection.
      let answer: unknown = "the awake worker was never reached";
      for (let attempt = 0; attempt < 30; attempt++) {
        const http = httpConnection(srv.port);
        try {
          const health = (await http.get("/healthz", 1000)) as { worker: number } | null;
          if (health?.worker !== awake.worker) continue;
          answer = await http.get("/conns", 5000);
          break;
        } finally {
          http.close();
        }
      }
      expect(answer).toEqual(want);
      for (const c of clients) c.terminate();
    } finally {
      for (const pid of stopped) process.kill(pid, "SIGCONT");
      expect(await srv.stop()).toBe(0);
    }
  }, 60_000);
});
