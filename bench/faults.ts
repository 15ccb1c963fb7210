// The fault suite (issue #15): five bounded scenarios that break a running `wsmillion serve` on purpose
// and say what held and what was lost. Figures: docs/RELIABILITY.md. The small versions run in npm test
// (test/faults.test.ts calls the scenarios below with sizes in the hundreds).
//   worker-kill  [connections=100000]        kill -9 the busiest server worker under --reconnect clients
//   restart      [connections=100000]        kill -9 the whole server and start it again on the same port
//   drain        [connections=200000]        SIGTERM: every client gets close 1001 within --drain-timeout
//   slow-readers [connections=10000] [slow=1000]   broadcast while some clients never read, per policy
//   bad-clients  [healthy=50000] [half=10000] [garbage=10000]   half-sent upgrades and garbage frames
//                                             beside healthy echo clients
// Usage: bun bench/faults.ts [scenario [sizes...]]; no scenario: all five at full scale, one after another
// (several GB and several minutes: run it alone). Every scenario starts its own server (under setsid, so a
// crash is one kill of its process group) and stops everything it started, by PID. As root it raises
// net.core.netdev_max_backlog and net.ipv4.tcp_migrate_req as the demo does, and puts them back.
// Clients dial 127.0.0.1..N (loopbackTargets, pairsFor) so no address pair runs out of ephemeral ports.
import type { Subprocess } from "bun";
import { join } from "node:path";
import { runLoad } from "../src/load/coordinator.ts";
import { tallySum } from "../src/load/outages.ts";
import { completePlan, type LoadPlan } from "../src/load/plan.ts";
import type { LoadReport, ProgressSnapshot } from "../src/load/report.ts";
import type { ClusterStats } from "../src/server/stats.ts";
import { pairsFor } from "../src/system/capacity.ts";
import { applySysctls, describeChange, restoreSysctls, type Applied } from "../src/system/fixes.ts";
import { readLimits } from "../src/system/limits.ts";
import { loopbackTargets } from "../src/system/targets.ts";
import { count } from "../src/format.ts";
import { NOFILE, ROOT, finish } from "./load-lib.ts";
import { loadAverage } from "./serve-lib.ts";

const CLI = join(ROOT, "src", "cli.ts");
const CLIENTS = join(import.meta.dir, "faults-clients.py");
const MiB = 2 ** 20;

export interface Check {
  /** The issue's target. */
  what: string;
  ok: boolean;
  /** What was measured against it. */
  measured: string;
}

export interface FaultResult {
  scenario: string;
  checks: Check[];
  /** What the fault cost: connections, messages, dials. */
  lost: string[];
  figures: Record<string, unknown>;
}

export interface ScenarioOptions {
  /** Progress and result lines (default: stdout; tests pass a no-op). */
  log?: (line: string) => void;
}

// ---- processes we start ----

/** Every server still running, so an interrupted run can take them down (they lead their own sessions). */
const running = new Set<ServerProcess>();

export interface ServerProcess {
  port: number;
  pid: number;
  stats(): Promise<ClusterStats>;
  /** GET /conns: the count the supervisor pushes to every worker. */
  conns(): Promise<{ conns: number; closed: number }>;
  /**
   * kill -9 of the supervisor and every worker at once (the process group): what a crash or OOM kill does.
   * Resolves once every process of the group is gone (workers take a while to release thousands of sockets),
   * since until then the port is still theirs.
   */
  crash(): Promise<void>;
  /** SIGTERM to the supervisor: the drain. Resolves with the exit code and how long the drain took. */
  terminate(): Promise<{ code: number; ms: number }>;
  /** Everything it printed. */
  output(): string;
  /** What it said after its start-up banner (restarts, refusals, its last line): up to 20 lines. */
  said(): string[];
}

/** Resolves when no process of the group `pgid` is left (signal 0 to the group fails with ESRCH), or after 30 s. */
export async function groupGone(pgid: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return;
    }
    await Bun.sleep(20);
  }
}

/** A port nothing listens on now (bound, then released). */
export function freePort(): number {
  const l = Bun.listen({ hostname: "0.0.0.0", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/** Reads a child's output to its end, chunk by chunk, into `onText`. */
async function readAll(stream: ReadableStream<Uint8Array>, onText: (text: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(decoder.decode(value, { stream: true }));
  }
}

/** `wsmillion serve --port PORT --host 0.0.0.0 ...args` leading its own process group; resolves once it listens. */
export async function startServe(port: number, args: string[]): Promise<ServerProcess> {
  const proc = Bun.spawn(["setsid", process.execPath, CLI, "serve", "--port", String(port), "--host", "0.0.0.0", ...args], {
    cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe",
  });
  const out = { text: "" };
  void readAll(proc.stdout, (t) => (out.text += t));
  void readAll(proc.stderr, (t) => (out.text += t));
  const deadline = Date.now() + 60_000;
  while (!/listening on/.test(out.text)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`wsmillion serve did not start:\n${out.text}`);
    }
    await Bun.sleep(20);
  }
  const server: ServerProcess = {
    port,
    pid: proc.pid,
    stats: async () => (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as ClusterStats,
    conns: async () => (await (await fetch(`http://127.0.0.1:${port}/conns`)).json()) as { conns: number; closed: number },
    async crash() {
      running.delete(server);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      process.kill(-proc.pid, "SIGKILL");
      await proc.exited;
      await groupGone(proc.pid);
    },
    async terminate() {
      const t0 = performance.now();
      proc.kill("SIGTERM");
      // The drain is bounded by --drain-timeout; a supervisor still there a minute later is a finding, not a wait.
      const timer = setTimeout(() => process.kill(-proc.pid, "SIGKILL"), 60_000);
      const code = await proc.exited;
      clearTimeout(timer);
      running.delete(server);
      return { code, ms: Math.round(performance.now() - t0) };
    },
    output: () => out.text,
    said: () => out.text.slice(out.text.indexOf("\n", out.text.indexOf("endpoints:")) + 1).split("\n").filter((l) => l !== "").slice(0, 20),
  };
  running.add(server);
  return server;
}

/** What bench/faults-clients.py reports (every second, and last when its stdin closes). */
export interface ClientFigures {
  mode: string;
  opened: number;
  failed: number;
  upgraded: number;
  refused: number;
  closedByServer: number;
  pending: number;
  closeCodes: Record<string, number>;
  /** Data frames received (slow readers, once draining). */
  messages: number;
  open: number;
  last: boolean;
  perConnection?: { min: number; max: number };
  heldSeconds?: { count: number; min: number; max: number; mean: number };
}

export interface ClientsProcess {
  latest(): ClientFigures | null;
  /** Resolves with the first report that satisfies `ok`, or null after timeoutMs. */
  until(ok: (f: ClientFigures) => boolean, timeoutMs: number): Promise<ClientFigures | null>;
  /** Slow readers: start reading what the server still delivers. */
  drain(): void;
  /** Closes its stdin: it reports a last time and exits. The same promise every time. */
  stop(): Promise<ClientFigures | null>;
}

/** Misbehaving clients in a Python process of their own (see bench/faults-clients.py). */
export function startClients(mode: "slow" | "half" | "garbage", port: number, n: number, hosts: number, seconds = 0): ClientsProcess {
  const proc: Subprocess<"pipe", "pipe", "inherit"> = Bun.spawn(["python3", CLIENTS, mode, String(port), String(n), String(hosts), String(seconds)], {
    stdin: "pipe", stdout: "pipe", stderr: "inherit",
  });
  let latest: ClientFigures | null = null;
  let stopped: Promise<ClientFigures | null> | null = null;
  let buffered = "";
  const read = readAll(proc.stdout, (text) => {
    buffered += text;
    let nl = buffered.indexOf("\n");
    while (nl >= 0) {
      latest = JSON.parse(buffered.slice(0, nl)) as ClientFigures;
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf("\n");
    }
  });
  return {
    latest: () => latest,
    async until(ok, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && proc.exitCode === null) {
        if (latest !== null && ok(latest)) return latest;
        await Bun.sleep(100);
      }
      return latest !== null && ok(latest) ? latest : null;
    },
    drain() {
      void proc.stdin.write("drain\n");
      void proc.stdin.flush();
    },
    stop() {
      stopped ??= (async () => {
        void proc.stdin.end();
        const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await proc.exited;
        await read;
        clearTimeout(timer);
        return latest;
      })();
      return stopped;
    },
  };
}

// ---- helpers ----

/** Polls `get` until `ok` holds: the value and when it held (performance.now), or null after timeoutMs. */
async function until<T>(get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number, intervalMs = 50): Promise<{ value: T; at: number } | null> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const value = await get();
      if (ok(value)) return { value, at: performance.now() };
    } catch {
      // A worker just killed can reset one request; the next poll asks again.
    }
    if (performance.now() >= deadline) return null;
    await Bun.sleep(intervalMs);
  }
}

/** A load plan over loopback pairs enough for n connections, reporting the server's /conns. */
function loadPlan(port: number, n: number, over: Partial<LoadPlan>): LoadPlan {
  return completePlan(
    {
      targets: loopbackTargets(pairsFor(n, readLimits()), port), connections: n, concurrency: Math.min(2000, n), mode: "idle",
      handshakeTimeoutMs: 30_000, maxMessage: 1 << 20, statusUrl: `http://127.0.0.1:${port}/conns`, ...over,
    },
    NOFILE,
  );
}

/** A progress line every 5 s of a load run. */
function progress(log: (line: string) => void, name: string): (s: ProgressSnapshot) => void {
  let last = -Infinity;
  return (s) => {
    if (s.t - last < 5) return;
    last = s.t;
    log(`  [${name}] t=${s.t.toFixed(0)}s ${s.phase}: open ${count(s.open)}/${count(s.target)}, failed ${count(s.failed)}, dropped ${count(s.dropped)}`);
  };
}

const causes = (t: Record<string, number>): string => {
  const list = Object.entries(t).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${count(v)}`);
  return list.length > 0 ? list.join(", ") : "none";
};
const dropTally = (r: LoadReport): Record<string, number> => Object.fromEntries(r.drops.map((d) => [d.cause, d.count]));
const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

/** The load's once-a-second samples from `fromMs` on (wall clock): [seconds since fromMs, open, failed dials so far]. */
function curve(r: LoadReport, fromMs: number, untilMs: number): [number, number, number][] {
  return r.samples
    .filter((s) => wallOf(r, s.t) >= fromMs - 1000 && wallOf(r, s.t) <= untilMs + 1000)
    .map((s) => [Math.round((wallOf(r, s.t) - fromMs) / 100) / 10, s.open, s.failed]);
}
/** Wall-clock ms of a report time (seconds since the run started). */
const wallOf = (r: LoadReport, t: number): number => Date.parse(r.startedAt) + t * 1000;

function verdictLine(r: LoadReport): string {
  return r.verdict.met ? `plan met${r.verdict.summary ? `: ${r.verdict.summary}` : ""}` : `plan NOT met: ${r.verdict.reasons.join("; ")}`;
}

// ---- 1. one worker killed ----

export interface WorkerKillOptions extends ScenarioOptions {
  /** Server workers (default: what --max-conns sizes). */
  serverWorkers?: number;
  durationS?: number;
}

/**
 * kill -9 of the server worker holding the most connections while --reconnect clients hold n: /conns must
 * be exact within 1 s (what the others hold, plus what they accepted since), the supervisor must restart
 * the worker, and the clients must restore the full count.
 */
export async function workerKill(n: number, o: WorkerKillOptions = {}) {
  const log = o.log ?? console.log;
  const port = freePort();
  const server = await startServe(port, ["--max-conns", String(n), ...(o.serverWorkers ? ["--workers", String(o.serverWorkers)] : [])]);
  try {
    const kills: Promise<Awaited<ReturnType<typeof killBusiest>>>[] = [];
    const r = await runLoad(loadPlan(port, n, { reconnect: true, durationS: o.durationS ?? 30 }), {
      onProgress: progress(log, "worker-kill"),
      onPhase: (p) => {
        if (p === "run") kills.push(killBusiest(server, n));
      },
    });
    const k = await kills[0]!;
    const o1 = r.outages.recoveries[0];
    const lost = tallySum(dropTally(r));
    return {
      scenario: "worker-kill",
      checks: [
        {
          what: "/conns exact within 1 s of the kill",
          ok: k.seen !== null && k.seen.ms <= 1000 && k.exact,
          measured: k.seen
            ? `${k.seen.ms} ms after the kill /conns read ${count(k.seen.conns)} = ${count(k.before)} - ${count(k.victimOpen)} held by the dead worker + ${count(k.seen.acceptedSince)} reconnects accepted since; ` +
              `closed grew by ${count(k.seen.closedJump)} (${k.exact ? "exact" : `NOT exact: /stats counted ${count(k.seen.acceptedBy)} accepted by just after`})`
            : "the dead worker's connections were never taken off /conns",
        },
        {
          what: "the supervisor restarts the worker",
          ok: k.backMs !== null,
          measured: k.backMs !== null ? `worker ${k.victimIndex} back ${k.backMs} ms after the kill (restarts: ${k.restarts})` : "not back within 15 s",
        },
        {
          what: "--reconnect clients restore the full count",
          ok: r.outages.count === 1 && o1 !== undefined && o1.recoveredT !== null && r.connections.openAtEnd === n && r.server.atEnd?.conns === n,
          measured: o1
            ? `${r.outages.count} outage; ${o1.recoveredT !== null ? `all ${count(n)} back ${o1.seconds!.toFixed(2)} s after the first drop` : "not back by the end"}; open at the end ${count(r.connections.openAtEnd)}, server /conns ${r.server.atEnd ? count(r.server.atEnd.conns) : "n/a"}`
            : "no outage seen",
        },
        {
          what: "the clients lost exactly what the dead worker held",
          ok: lost === k.victimOpen,
          measured: `clients saw ${count(lost)} drops; the worker held ${count(k.victimOpen)}`,
        },
      ],
      lost: [
        `${count(lost)} connections of worker ${k.victimIndex} (${causes(dropTally(r))})`,
        `${count(o1?.refusedDials ?? 0)} reconnects refused while they came back (${causes(o1?.refusedByCause ?? {})})`,
      ],
      figures: {
        connections: n, serverWorkers: k.workers, victimOpen: k.victimOpen, othersOpen: k.before - k.victimOpen, detectMs: k.seen?.ms ?? null,
        connsAtDetect: k.seen?.conns ?? null, acceptedSinceKill: k.seen?.acceptedSince ?? null, connsExact: k.exact, workerBackMs: k.backMs,
        serverFullAgainMs: k.fullMs, outages: r.outages.count, recoverySeconds: o1?.seconds ?? null, refusedDials: o1?.refusedDials ?? null,
        refusedByCause: o1?.refusedByCause ?? {}, openAtEnd: r.connections.openAtEnd, serverConnsAtEnd: r.server.atEnd?.conns ?? null,
        verdict: verdictLine(r), serverSaid: server.said(),
      },
    };
  } finally {
    await server.crash();
  }
}

async function killBusiest(server: ServerProcess, n: number) {
  const full = await until(() => server.stats(), (s) => s.conns === n, 30_000);
  const before = full?.value ?? (await server.stats());
  const victim = before.workers.reduce((a, b) => (b.open > a.open ? b : a));
  const t0 = performance.now();
  process.kill(victim.pid, "SIGKILL");
  // The supervisor retires a dead worker's connections as closed. /conns (a count pushed to every worker) is
  // exact when its `closed` grew by exactly what the worker held, and every connection the server ever
  // accepted is either open or closed in it: conns + closed grew by the reconnects accepted since, which
  // /stats, asked right after, bounds from above.
  const seen = await until(() => server.conns(), (c) => c.closed - before.closed >= victim.open, 10_000, 10);
  const acceptedBy = seen ? (await server.stats()).total.accepted - before.total.accepted : 0;
  const grown = seen ? seen.value.conns + seen.value.closed - (before.conns + before.closed) : 0;
  const back = await until(() => server.stats(), (s) => s.workers.some((w) => w.worker === victim.worker && w.pid !== victim.pid), 15_000);
  const fullAgain = await until(() => server.stats(), (s) => s.conns === n, 60_000, 100);
  return {
    before: before.conns,
    workers: before.workers.length,
    victimOpen: victim.open,
    victimIndex: victim.worker,
    seen: seen ? { ms: Math.round(seen.at - t0), conns: seen.value.conns, closedJump: seen.value.closed - before.closed, acceptedSince: grown, acceptedBy } : null,
    exact: seen !== null && seen.value.closed - before.closed === victim.open && grown >= 0 && grown <= acceptedBy,
    backMs: back ? Math.round(back.at - t0) : null,
    restarts: back?.value.workers.find((w) => w.worker === victim.worker)?.restarts ?? 0,
    fullMs: fullAgain ? Math.round(fullAgain.at - t0) : null,
  };
}

// ---- 2. the whole server restarted ----

export interface RestartOptions extends ScenarioOptions {
  durationS?: number;
}

/**
 * kill -9 of the whole server (supervisor and workers) under n --reconnect clients, then the same command
 * on the same port: every client must be back within 10 s of the restart, none giving up.
 */
export async function restart(n: number, o: RestartOptions = {}) {
  const log = o.log ?? console.log;
  const port = freePort();
  const args = ["--max-conns", String(n)];
  let server = await startServe(port, args);
  try {
    const faults: Promise<{ killAt: number; spawnAt: number; listenAt: number; serverBackAt: number | null; rejected: Record<string, number> }>[] = [];
    const r = await runLoad(loadPlan(port, n, { reconnect: true, durationS: o.durationS ?? 40 }), {
      onProgress: progress(log, "restart"),
      onPhase: (p) => {
        if (p !== "run") return;
        faults.push(
          (async () => {
            await until(() => server.stats(), (s) => s.conns === n, 30_000);
            const killAt = Date.now();
            await server.crash();
            // The same command again, once the old processes are gone (a new supervisor refuses a port they still hold).
            const spawnAt = Date.now();
            server = await startServe(port, args);
            const listenAt = Date.now();
            const back = await until(() => server.stats(), (s) => s.conns === n, 60_000, 100);
            return { killAt, spawnAt, listenAt, serverBackAt: back ? Date.now() : null, rejected: (back?.value ?? (await server.stats())).total.rejected };
          })(),
        );
      },
    });
    const f = await faults[0]!;
    const o1 = r.outages.recoveries[0];
    const backMs = o1 !== undefined && o1.recoveredT !== null ? wallOf(r, o1.recoveredT) - f.spawnAt : null;
    const refused = o1?.refusedByCause ?? {};
    const timedOut = (refused.ETIMEDOUT ?? 0) + (refused.HANDSHAKE_TIMEOUT ?? 0);
    return {
      scenario: "restart",
      checks: [
        {
          what: "all connections back within 10 s of the restart",
          ok: backMs !== null && backMs <= 10_000,
          measured: backMs !== null
            ? `all ${count(n)} back ${secs(backMs)} after the new server was started (${secs(wallOf(r, o1!.recoveredT!) - f.listenAt)} after it listened; it took ${secs(f.listenAt - f.spawnAt)} to start); below target ${o1!.seconds!.toFixed(2)} s in all`
            : `not back by the end (${count(r.connections.openAtEnd)} open)`,
        },
        {
          what: "no client gives up",
          ok: r.connections.openAtEnd === n && r.verdict.met,
          measured: `${count(r.connections.openAtEnd)} of ${count(n)} open at the end; ${verdictLine(r)}`,
        },
        {
          what: "the storm is absorbed: refusals are quick (refused connects, 503s), no dial times out",
          ok: timedOut === 0,
          measured: `reconnects refused: ${causes(refused)}; the new server answered ${count(f.rejected["503 full"] ?? 0)} upgrades with 503 + Retry-After`,
        },
      ],
      lost: [
        `${count(o1?.dropped ?? 0)} connections dropped by the crash (${causes(dropTally(r))})`,
        `${count(o1?.refusedDials ?? 0)} reconnects refused while the server was down or starting`,
      ],
      figures: {
        connections: n, firstDropMs: o1 ? wallOf(r, o1.startT) - f.killAt : null, downMs: f.spawnAt - f.killAt, startMs: f.listenAt - f.spawnAt, backAfterRestartMs: backMs,
        // The pace of the reopening against the pace of the first ramp: both are new connections on this box.
        reopenPerSec: backMs !== null ? Math.round(n / ((backMs - (f.listenAt - f.spawnAt)) / 1000)) : null, rampPerSec: r.connections.dialsPerSecond,
        serverBackAfterRestartMs: f.serverBackAt !== null ? f.serverBackAt - f.spawnAt : null, outageSeconds: o1?.seconds ?? null,
        refusedDials: o1?.refusedDials ?? null, refusedByCause: refused, served503: f.rejected["503 full"] ?? 0,
        openAtEnd: r.connections.openAtEnd, verdict: verdictLine(r),
        /** [s since the kill, open, failed dials so far], once a second. */
        curve: curve(r, f.killAt, f.serverBackAt ?? f.killAt + 60_000),
        serverSaid: server.said(),
      },
    };
  } finally {
    await server.crash();
  }
}

// ---- 3. SIGTERM: the drain ----

export interface DrainOptions extends ScenarioOptions {
  /** The server's --drain-timeout (its default, 10 s, unless given). */
  drainTimeoutS?: number;
}

/**
 * SIGTERM to a server holding n connections (clients without --reconnect): every client must see close
 * 1001 within --drain-timeout, the server must exit 0, and the counts must be exact on both sides.
 */
export async function drain(n: number, o: DrainOptions = {}) {
  const log = o.log ?? console.log;
  const timeoutS = o.drainTimeoutS ?? 10;
  const asked = 120;
  const port = freePort();
  const server = await startServe(port, ["--max-conns", String(n), "--drain-timeout", String(timeoutS)]);
  try {
    const terms: Promise<{ connsBefore: number | null; termAt: number; code: number; ms: number }>[] = [];
    const r = await runLoad(loadPlan(port, n, { durationS: asked }), {
      onProgress: progress(log, "drain"),
      onPhase: (p) => {
        if (p !== "run") return;
        terms.push(
          (async () => {
            const full = await until(() => server.stats(), (s) => s.conns === n, 30_000);
            const termAt = Date.now();
            return { connsBefore: full?.value.conns ?? null, termAt, ...(await server.terminate()) };
          })(),
        );
      },
    });
    const t = await terms[0]!;
    const stopped = /stopped: ([\d,]+) accepted, ([\d,]+) closed/.exec(server.output());
    const accepted = stopped ? Number(stopped[1]!.replaceAll(",", "")) : null;
    const closed = stopped ? Number(stopped[2]!.replaceAll(",", "")) : null;
    // The coordinator says when the last connection went (its warning, 0.1 s resolution).
    const goneT = /every connection was closed by the server at t=([\d.]+)s/.exec(r.warnings.join("\n"));
    const clientsDoneMs = goneT ? wallOf(r, Number(goneT[1])) - t.termAt : null;
    const drops = dropTally(r);
    return {
      scenario: "drain",
      checks: [
        {
          what: "every client sees close 1001",
          ok: drops.CLOSE_1001 === n && r.connections.dropped === n,
          measured: `drops by cause: ${causes(drops)}`,
        },
        {
          what: `within --drain-timeout (${timeoutS} s)`,
          ok: t.ms <= timeoutS * 1000 && clientsDoneMs !== null && clientsDoneMs <= timeoutS * 1000,
          measured: `the server had every connection closed and exited ${secs(t.ms)} after SIGTERM; the clients' last close came ${clientsDoneMs !== null ? secs(clientsDoneMs) : "never"} after it`,
        },
        { what: "the server exits 0", ok: t.code === 0, measured: `exit ${t.code}` },
        {
          what: "counts exact",
          ok: t.connsBefore === n && r.connections.openAtRamp === n && accepted === n && closed === n,
          measured: `/conns ${t.connsBefore === null ? "n/a" : count(t.connsBefore)} before SIGTERM, the clients held ${count(r.connections.openAtRamp)}; the server's last line: ${stopped ? stopped[0] : "missing"}`,
        },
        {
          what: "the load run ends when nothing is left open (not at --duration)",
          ok: goneT !== null && r.traffic.runSeconds < asked / 2,
          measured: `traffic phase ${r.traffic.runSeconds.toFixed(1)} s of the ${asked} s asked`,
        },
      ],
      lost: [`${count(r.connections.dropped)} connections closed by the drain, as asked (${causes(drops)})`],
      figures: {
        connections: n, drainTimeoutS: timeoutS, serverExitMs: t.ms, clientsDoneMs, exitCode: t.code, connsBeforeTerm: t.connsBefore,
        openAtRamp: r.connections.openAtRamp, serverAccepted: accepted, serverClosed: closed, drops, runSeconds: r.traffic.runSeconds,
        /** [s since SIGTERM, open, failed dials so far], once a second. */
        curve: curve(r, t.termAt, t.termAt + t.ms),
      },
    };
  } finally {
    await server.crash();
  }
}

// ---- 4. slow readers under broadcast ----

export interface SlowReadersOptions extends ScenarioOptions {
  /** Seconds of publishing. */
  seconds?: number;
  /** Messages per second the one publisher sends (each goes to every connection). */
  rate?: number;
  size?: number;
  /** The server's --max-buffered. */
  maxBuffered?: number;
  policies?: ("close" | "drop")[];
  /**
   * Run the same broadcast without slow readers before and after the others, to compare delivery and
   * latency against (their mean; two of them show how much the shared box alone moves the figures).
   */
  baseline?: boolean;
}

interface BroadcastRun {
  policy: "close" | "drop" | "none";
  receivers: number;
  slow: number;
  published: number;
  /** Messages each healthy receiver should have got: published ones, all of them. */
  expected: number;
  received: number;
  publishSeconds: number;
  deliveredPerSec: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  healthyDropped: number;
  baseRss: number;
  peakRss: number;
  peakBuffered: number;
  serverDropped: number;
  slowStillOpen: number;
  slowFigures: ClientFigures | null;
}

/**
 * Broadcast to `total` connections of which `slow` never read (raw sockets that upgrade, then stop): the
 * server's memory must stay under --max-buffered x slow plus its base, the slow ones must be handled per
 * --backpressure (close: closed; drop: their messages dropped), and the healthy ones' delivery rate and
 * latency must stay within 1.2x of a run without slow readers.
 */
export async function slowReaders(total: number, slow: number, o: SlowReadersOptions = {}) {
  const log = o.log ?? console.log;
  // 16 KB/s per connection: a slow reader's kernel buffers and --max-buffered fill in about 20 s, and the
  // fan-out (160 MB/s to 10,000 connections) leaves the box some room, so latency is not all queueing.
  const opts = { seconds: o.seconds ?? 40, rate: o.rate ?? 2, size: o.size ?? 8192, maxBuffered: o.maxBuffered ?? 64 * 1024 };
  const runs: BroadcastRun[] = [];
  const baseline = o.baseline ?? true;
  if (baseline) runs.push(await broadcastRun(total - slow, 0, "close", opts, log));
  for (const policy of o.policies ?? ["close", "drop"]) runs.push(await broadcastRun(total - slow, slow, policy, opts, log));
  if (baseline) runs.push(await broadcastRun(total - slow, 0, "close", opts, log));
  const bases = runs.filter((r) => r.policy === "none");
  const mean = (f: (r: BroadcastRun) => number): number => bases.reduce((n, r) => n + f(r), 0) / bases.length;
  const base = bases.length > 0
    ? { deliveredPerSec: mean((r) => r.deliveredPerSec), latencyP50Ms: mean((r) => r.latencyP50Ms), latencyP99Ms: mean((r) => r.latencyP99Ms), growth: mean((r) => r.peakRss - r.baseRss) }
    : null;
  const each = (f: (r: BroadcastRun) => number, unit: string): string => bases.map((r) => `${f(r)}${unit}`).join(" and ");
  const checks: Check[] = [];
  const lost: string[] = [];
  const bound = opts.maxBuffered * slow;
  for (const r of runs.filter((x) => x.policy !== "none")) {
    const growth = r.peakRss - r.baseRss;
    checks.push({
      what: `--backpressure ${r.policy}: server memory under --max-buffered x slow connections plus the base`,
      ok: growth <= bound,
      measured: `RSS ${(r.baseRss / MiB).toFixed(0)} MiB before publishing, peak ${(r.peakRss / MiB).toFixed(0)} MiB: +${(growth / MiB).toFixed(1)} MiB against ${(bound / MiB).toFixed(1)} MiB (${count(slow)} x ${count(opts.maxBuffered)} B)` +
        (base ? `; without slow readers +${(base.growth / MiB).toFixed(1)} MiB` : "") + `; /stats bufferedBytes peak ${count(r.peakBuffered)} B`,
    });
    const perSlow = r.slowFigures?.perConnection;
    if (r.policy === "close") {
      checks.push({
        what: "--backpressure close: the slow ones are closed",
        ok: r.slowStillOpen === 0 && (r.slowFigures?.closedByServer ?? 0) === slow,
        measured: `server: ${count(slow - r.slowStillOpen)} of ${count(slow)} closed; the slow readers, reading at last, found ${count(r.slowFigures?.closedByServer ?? 0)} closed (codes: ${causes(r.slowFigures?.closeCodes ?? {})}) after ${perSlow ? `${perSlow.min}-${perSlow.max}` : "?"} of ${r.published} messages`,
      });
    } else {
      checks.push({
        what: "--backpressure drop: the slow ones stay open, their messages dropped and counted",
        ok: r.slowStillOpen === slow && perSlow !== undefined && perSlow.max < r.published && r.serverDropped > 0,
        measured: `${count(r.slowStillOpen)} of ${count(slow)} still open; each slow reader got ${perSlow ? `${perSlow.min}-${perSlow.max}` : "?"} of ${r.published} messages; ` +
          `the server counted ${count(r.serverDropped)} dropped (/stats total.dropped)`,
      });
      if (perSlow) lost.push(`drop: ${count(slow * r.published - (r.slowFigures?.messages ?? 0))} messages never reached the slow readers (${r.published - perSlow.max}-${r.published - perSlow.min} each)`);
    }
    checks.push({
      what: `--backpressure ${r.policy}: every healthy receiver gets every message`,
      ok: r.received === r.expected && r.healthyDropped === 0,
      measured: `${count(r.received)} of ${count(r.expected)} delivered; ${r.healthyDropped} healthy connections dropped`,
    });
    if (base) {
      const rate = base.deliveredPerSec / Math.max(1, r.deliveredPerSec);
      const p50 = r.latencyP50Ms / Math.max(0.001, base.latencyP50Ms);
      const p99 = r.latencyP99Ms / Math.max(0.001, base.latencyP99Ms);
      checks.push({
        what: `--backpressure ${r.policy}: healthy delivery rate and latency within 1.2x of a run without slow readers`,
        ok: rate <= 1.2 && p50 <= 1.2 && p99 <= 1.2,
        measured: `${count(r.deliveredPerSec)} msg/s delivered (without slow readers ${count(base.deliveredPerSec)}: ${rate.toFixed(2)}x); ` +
          `push latency p50 ${r.latencyP50Ms} ms (${p50.toFixed(2)}x of ${each((x) => x.latencyP50Ms, " ms")}), p99 ${r.latencyP99Ms} ms (${p99.toFixed(2)}x of ${each((x) => x.latencyP99Ms, " ms")})`,
      });
    }
    if (r.policy === "close") lost.push(`close: ${count(slow - r.slowStillOpen)} slow connections closed by the server, as asked`);
  }
  return { scenario: "slow-readers", checks, lost, figures: { total, slow, ...opts, runs } };
}

async function broadcastRun(
  healthy: number,
  slow: number,
  policy: "close" | "drop",
  o: { seconds: number; rate: number; size: number; maxBuffered: number },
  log: (line: string) => void,
): Promise<BroadcastRun> {
  const port = freePort();
  const server = await startServe(port, ["--mode", "broadcast", "--max-conns", String(healthy + slow), "--max-buffered", String(o.maxBuffered), "--backpressure", policy]);
  const receivers = healthy - 1;
  const stop = new AbortController();
  const label = slow > 0 ? `slow-readers ${policy}` : "slow-readers baseline";
  try {
    const sides: Promise<Omit<BroadcastRun, "received" | "deliveredPerSec" | "latencyP50Ms" | "latencyP99Ms" | "healthyDropped" | "expected" | "policy" | "receivers" | "slow">>[] = [];
    const recv = await runLoad(loadPlan(port, receivers, { mode: "receive", durationS: o.seconds + 120 }), {
      signal: stop.signal,
      onProgress: progress(log, label),
      onPhase: (p) => {
        if (p !== "run") return;
        sides.push(
          (async () => {
            const slowClients = slow > 0 ? startClients("slow", port, slow, pairsFor(slow, readLimits())) : null;
            try {
              await slowClients?.until((f) => f.upgraded + f.failed + f.refused >= slow, 60_000);
              const ready = await until(() => server.stats(), (s) => s.conns === receivers + slow, 30_000);
              const baseRss = (ready?.value ?? (await server.stats())).total.rssBytes;
              let peakRss = baseRss;
              let peakBuffered = 0;
              const sampler = setInterval(() => {
                server.stats().then((s) => {
                  peakRss = Math.max(peakRss, s.total.rssBytes);
                  peakBuffered = Math.max(peakBuffered, s.total.bufferedBytes);
                }, () => {});
              }, 250);
              const pub = await runLoad(loadPlan(port, 1, { mode: "send", intervalMs: 1000 / o.rate, size: o.size, durationS: o.seconds, statusUrl: null, workers: 1 }));
              // The last messages are still on their way to some of the receivers.
              await Bun.sleep(1000);
              clearInterval(sampler);
              const end = await server.stats();
              slowClients?.drain();
              // Reading at last, the slow ones take what the server and the kernel still hold for them, then
              // see any close: done when their count stops moving.
              let before = -1;
              while (slowClients && slowClients.latest()?.messages !== before) {
                before = slowClients.latest()?.messages ?? 0;
                await Bun.sleep(1500);
              }
              return {
                published: pub.counters.msgsOut, publishSeconds: pub.traffic.runSeconds, baseRss, peakRss, peakBuffered, serverDropped: end.total.dropped,
                slowStillOpen: end.conns - receivers, slowFigures: slowClients ? await slowClients.stop() : null,
              };
            } finally {
              await slowClients?.stop();
              stop.abort();
            }
          })(),
        );
      },
    });
    const side = await sides[0]!;
    const received = recv.counters.msgsIn;
    return {
      policy: slow > 0 ? policy : "none", receivers, slow, ...side, expected: receivers * side.published, received,
      deliveredPerSec: Math.round(received / Math.max(0.001, side.publishSeconds)), latencyP50Ms: recv.latency.push.p50Ms, latencyP99Ms: recv.latency.push.p99Ms,
      healthyDropped: recv.connections.dropped,
    };
  } finally {
    await server.crash();
  }
}

// ---- 5. half-sent upgrades and garbage beside healthy clients ----

export interface BadClientsOptions extends ScenarioOptions {
  durationS?: number;
  /** Each healthy connection sends every intervalMs. */
  intervalMs?: number;
  /** A second clean run after the one with bad clients: two show how much the shared box alone moves the figures. */
  cleanAfter?: boolean;
}

interface EchoRun {
  report: LoadReport;
  half: ClientFigures | null;
  garbage: ClientFigures | null;
  server: ClusterStats | null;
}

/**
 * `half` connections that send half an upgrade request and hang (reopened when dropped) and `garbage`
 * connections that upgrade and send a frame no server may accept (spread over the traffic), beside
 * `healthy` echo clients: the healthy ones must be unaffected (round trips within 1.2x of a clean run).
 */
export async function badClients(healthy: number, half: number, garbage: number, o: BadClientsOptions = {}) {
  const log = o.log ?? console.log;
  const d = { durationS: o.durationS ?? 20, intervalMs: o.intervalMs ?? 5000 };
  const clean = await echoRun(healthy, 0, 0, d, log);
  const bad = await echoRun(healthy, half, garbage, d, log);
  const cleans = [clean.report, ...((o.cleanAfter ?? true) ? [(await echoRun(healthy, 0, 0, d, log)).report] : [])];
  const c = clean.report;
  const b = bad.report;
  const mean = (f: (r: LoadReport) => number): number => cleans.reduce((n, r) => n + f(r), 0) / cleans.length;
  const each = (f: (r: LoadReport) => number): string => cleans.map((r) => `${f(r)} ms`).join(" and ");
  const p50 = b.latency.rtt.p50Ms / Math.max(0.001, mean((r) => r.latency.rtt.p50Ms));
  const p99 = b.latency.rtt.p99Ms / Math.max(0.001, mean((r) => r.latency.rtt.p99Ms));
  const gFig = bad.garbage;
  const hFig = bad.half;
  const held = hFig?.heldSeconds;
  return {
    scenario: "bad-clients",
    checks: [
      {
        what: "the healthy ones all connect and none is dropped",
        ok: b.connections.openAtRamp === healthy && b.connections.failed === 0 && b.connections.dropped === 0,
        measured: `${count(b.connections.openAtRamp)} of ${count(healthy)} open, ${count(b.connections.failed)} failed, ${count(b.connections.dropped)} dropped; ${verdictLine(b)}`,
      },
      {
        what: "healthy round trips within 1.2x of a clean run",
        ok: p50 <= 1.2 && p99 <= 1.2,
        measured: `rtt p50 ${b.latency.rtt.p50Ms} ms vs ${each((r) => r.latency.rtt.p50Ms)} clean (${p50.toFixed(2)}x their mean), ` +
          `p99 ${b.latency.rtt.p99Ms} ms vs ${each((r) => r.latency.rtt.p99Ms)} (${p99.toFixed(2)}x); ${count(b.traffic.achievedPerSec)} vs ${count(c.traffic.achievedPerSec)} msg/s achieved`,
      },
      {
        what: "every garbage connection is failed by the server (close 1002)",
        ok: gFig !== null && gFig.upgraded === garbage && (gFig.closeCodes["1002"] ?? 0) === garbage,
        measured: gFig ? `${count(gFig.upgraded)} of ${count(garbage)} upgraded; the server ended them with: ${causes(gFig.closeCodes)}` : "no figures",
      },
      {
        what: "half-sent upgrades are dropped by --handshake-timeout (10 s)",
        ok: held !== undefined && held.max <= 11,
        measured: held
          ? `${count(held.count)} dropped during the run after ${held.min}-${held.max} s (mean ${held.mean} s); ${count(hFig?.pending ?? 0)} pending at the end`
          : `none dropped during the run; ${count(hFig?.pending ?? 0)} pending at the end`,
      },
    ],
    lost: [`${count(gFig?.closedByServer ?? 0)} garbage and ${count(held?.count ?? 0)} half-sent connections ended by the server, as they should be; healthy: ${count(b.connections.dropped)}`],
    figures: {
      healthy, half, garbage, ...d,
      clean: cleans.map((x) => ({ met: x.verdict.met, rttP50Ms: x.latency.rtt.p50Ms, rttP99Ms: x.latency.rtt.p99Ms, rttP999Ms: x.latency.rtt.p999Ms, achievedPerSec: x.traffic.achievedPerSec, rampSeconds: x.connections.rampSeconds })),
      withBad: { met: b.verdict.met, rttP50Ms: b.latency.rtt.p50Ms, rttP99Ms: b.latency.rtt.p99Ms, rttP999Ms: b.latency.rtt.p999Ms, achievedPerSec: b.traffic.achievedPerSec, rampSeconds: b.connections.rampSeconds },
      p50Ratio: Math.round(p50 * 100) / 100, p99Ratio: Math.round(p99 * 100) / 100, halfClients: hFig, garbageClients: gFig,
      serverRejected: bad.server?.total.rejected ?? null, serverClosedByCode: bad.server?.total.closedByCode ?? null,
    },
  };
}

async function echoRun(healthy: number, half: number, garbage: number, d: { durationS: number; intervalMs: number }, log: (line: string) => void): Promise<EchoRun> {
  const port = freePort();
  const server = await startServe(port, ["--max-conns", String(healthy + half + garbage)]);
  const hosts = pairsFor(half + garbage, readLimits());
  const halfClients = half > 0 ? startClients("half", port, half, hosts) : null;
  let garbageClients: ClientsProcess | null = null;
  try {
    await halfClients?.until((f) => f.pending + f.failed >= half, 60_000);
    const r = await runLoad(loadPlan(port, healthy, { mode: "echo", intervalMs: d.intervalMs, size: 100, durationS: d.durationS }), {
      onProgress: progress(log, half + garbage > 0 ? "bad-clients" : "bad-clients clean"),
      onPhase: (p) => {
        // Garbage arrives throughout the traffic phase, not in one burst before it.
        if (p === "run" && garbage > 0) garbageClients = startClients("garbage", port, garbage, hosts, d.durationS);
      },
    });
    const stats = await server.stats().catch(() => null);
    const g = garbageClients as ClientsProcess | null;
    await g?.until((f) => f.upgraded + f.failed + f.refused >= garbage && f.open === 0, 15_000);
    return { report: r, half: (await halfClients?.stop()) ?? null, garbage: (await g?.stop()) ?? null, server: stats };
  } finally {
    await halfClients?.stop();
    await (garbageClients as ClientsProcess | null)?.stop();
    await server.crash();
  }
}

// ---- the command line ----

type Scenario = (sizes: number[]) => Promise<FaultResult>;

const SCENARIOS: Record<string, Scenario> = {
  "worker-kill": ([n]) => workerKill(n ?? 100_000),
  restart: ([n]) => restart(n ?? 100_000),
  drain: ([n]) => drain(n ?? 200_000),
  "slow-readers": ([n, slow]) => slowReaders(n ?? 10_000, slow ?? 1_000),
  "bad-clients": ([healthy, half, garbage]) => badClients(healthy ?? 50_000, half ?? 10_000, garbage ?? 10_000),
};

export function printResult(r: FaultResult, log: (line: string) => void = console.log): void {
  log(`== ${r.scenario}`);
  for (const c of r.checks) log(`  ${c.ok ? "held  " : "MISSED"}  ${c.what}: ${c.measured}`);
  for (const l of r.lost) log(`  lost    ${l}`);
}

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  if (name !== undefined && !(name in SCENARIOS)) {
    console.error(`usage: bun bench/faults.ts [${Object.keys(SCENARIOS).join("|")} [sizes...]]`);
    process.exit(2);
  }
  const sizes = rest.map(Number);
  // The demo's loopback settings: both ends' packets share the per-CPU backlog, and full server workers
  // leave the port group (a queued connection moves to another worker instead of being reset).
  const applied: Applied[] = process.getuid?.() === 0
    ? applySysctls([{ key: "net.core.netdev_max_backlog", value: "65536" }, { key: "net.ipv4.tcp_migrate_req", value: "1" }])
    : [];
  for (const a of applied) console.log(`sysctl ${describeChange(a)}`);
  const cleanUp = async (): Promise<void> => {
    for (const s of [...running]) await s.crash();
    for (const r of restoreSysctls(applied)) console.log(`sysctl restored ${describeChange(r)}`);
  };
  const interrupted = (): void => {
    void cleanUp().then(() => process.exit(130));
  };
  process.on("SIGINT", interrupted);
  process.on("SIGTERM", interrupted);
  const results: FaultResult[] = [];
  try {
    for (const s of name ? [name] : Object.keys(SCENARIOS)) {
      // The box is shared: the load around a run is part of its figures.
      const before = loadAverage();
      console.log(`\n== fault scenario ${s}${name ? ` ${sizes.join(" ")}` : ""}; load average ${before}`);
      const r = await SCENARIOS[s]!(name ? sizes : []);
      printResult(r);
      const held = r.checks.filter((c) => c.ok).length;
      finish(`faults-${r.scenario}`, { ...r.figures, loadAverageBefore: before, loadAverageAfter: loadAverage() }, held / r.checks.length);
      results.push(r);
    }
  } finally {
    await cleanUp();
  }
  const all = results.flatMap((r) => r.checks);
  finish("faults", Object.fromEntries(results.map((r) => [r.scenario, r.checks.map((c) => `${c.ok ? "held" : "MISSED"}: ${c.what}`)])), all.filter((c) => c.ok).length / all.length);
}

if (import.meta.main) await main();
