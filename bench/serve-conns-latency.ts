// How fast `/conns` (and `/healthz`) answer while a multi-worker `wsmillion serve` takes a big ramp, both
// ends of it saturating the box's cores: a monitor (or the load generator's own status poll) must not go
// blind exactly when the server is busiest. A separate process polls both endpoints every 100 ms two ways:
// a new connection per poll (as curl would: it lands on any worker, behind the dials queued ahead of it),
// and kept-alive connections (as a dashboard or a scraper would: the endpoint's own path and the worker's
// event loop, no accept queue); it gives up on a poll after 2 s. The server is `wsmillion serve --workers
// auto --max-conns N`; the ramp is our load generator (runLoad, idle mode) over enough loopback destination
// addresses that no pair's port range gets crowded. Reports p50, p99 and max per series and the polls not
// answered within 2 s (counted at 2 s in the percentiles), for the ramp and, as the baseline, for the same
// polls while the N connections are held at rest; then whether /conns equals the generator's count at rest.
// Ratio: /conns p99 over /healthz p99 during the ramp, both on new connections: /healthz never leaves the
// worker, so it is the floor any endpoint of a busy worker meets, and 1 means /conns costs nothing beyond
// it (the ratio to the rest figures is in the JSON too; it moves with the rest p99, which is a few ms).
// Target: /conns and /healthz p99 <= 100 ms during a 200,000-connection ramp. Heavy at full scale (about
// 3 GB of RAM, 30-70 s of ramp on 2 cores): run it alone.
// Usage: bun bench/serve-conns-latency.ts [connections=200000] [concurrency=2000]
import type { Subprocess } from "bun";
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { pairsFor } from "../src/system/capacity.ts";
import { readLimits } from "../src/system/limits.ts";
import { loopbackTargets } from "../src/system/targets.ts";
import { finish, NOFILE, ROOT } from "./load-lib.ts";
import { loadAverage, memAvailable, startWsmillion } from "./serve-lib.ts";

const N = Number(process.argv[2] ?? 200_000);
const CONCURRENCY = Number(process.argv[3] ?? 2000);
const HOSTS = pairsFor(N, readLimits());
const POLL_MS = 100;
const GIVE_UP_MS = 2000;
/** The connections are held this long after the ramp; the rest window skips its first REST_SKIP_MS (the last opens settling). */
const HOLD_S = 10;
const REST_SKIP_MS = 2000;
const TARGET_P99_MS = 100;
const MiB = 2 ** 20;

/** One poll: when it started (ms since the epoch), how long the answer took (null: none within GIVE_UP_MS), what /conns said. */
interface Poll {
  /** The path, and "new" (a connection per poll) or "kept" (kept-alive connections). */
  series: string;
  at: number;
  ms: number | null;
  conns?: number;
}

interface PollerResult {
  polls: Poll[];
  /** How late the poller's own 10 ms timer fired, by when (ms since the epoch). */
  lags: { at: number; ms: number }[];
}

const POLLER = `
const [base, every, giveUp] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const polls = [];
const poll = async (path, fresh) => {
  const at = Date.now();
  const t0 = performance.now();
  const p = { series: path + (fresh ? " new" : " kept"), at, ms: null };
  polls.push(p);
  try {
    // "Connection: close" keeps the pool from reusing the socket: the next poll dials anew.
    const res = await fetch(base + path, { headers: fresh ? { Connection: "close" } : {}, signal: AbortSignal.timeout(giveUp) });
    const body = await res.json();
    p.ms = performance.now() - t0;
    if (typeof body.conns === "number") p.conns = body.conns;
  } catch {}
};
const timer = setInterval(() => { for (const fresh of [true, false]) { void poll("/conns", fresh); void poll("/healthz", fresh); } }, every);
// The poller's own lateness (a 10 ms timer): when the box starves the poller too, its waits are not the server's.
const lags = [];
let last = performance.now();
const lagTimer = setInterval(() => { const now = performance.now(); lags.push({ at: Date.now(), ms: now - last - 10 }); last = now; }, 10);
process.on("message", async (m) => {
  if (m !== "stop") return;
  clearInterval(timer);
  clearInterval(lagTimer);
  await new Promise((r) => setTimeout(r, giveUp + 100));
  // No exit here: a large message is lost when its sender exits right after sending it. The parent ends us.
  process.send({ polls, lags });
});
process.send("ready");
`;

/** The poller in its own process, so the figures are what any client on the box would see. */
async function startPoller(port: number): Promise<{ stop(): Promise<PollerResult> }> {
  let ready!: () => void;
  let done!: (p: PollerResult) => void;
  const started = new Promise<void>((r) => (ready = r));
  const result = new Promise<PollerResult>((r) => (done = r));
  const proc: Subprocess = Bun.spawn([process.execPath, "-e", POLLER, `http://127.0.0.1:${port}`, String(POLL_MS), String(GIVE_UP_MS)], {
    cwd: ROOT,
    stdio: ["ignore", "inherit", "inherit"],
    ipc(m) {
      if (m === "ready") ready();
      else done(m as PollerResult);
    },
  });
  await started;
  return {
    async stop() {
      proc.send("stop");
      const r = await result;
      proc.kill();
      await proc.exited;
      return r;
    },
  };
}

interface Latency {
  polls: number;
  unanswered: number;
  p50: number;
  p99: number;
  max: number;
}

const SERIES = ["/conns new", "/healthz new", "/conns kept", "/healthz kept"] as const;
type Series = (typeof SERIES)[number];

/** Percentiles over one series' polls in [from, to); an unanswered poll counts as GIVE_UP_MS. */
function latency(polls: Poll[], series: Series, from: number, to: number): Latency {
  const mine = polls.filter((p) => p.series === series && p.at >= from && p.at < to);
  const ms = mine.map((p) => p.ms ?? GIVE_UP_MS).sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.ceil(q * ms.length) - 1)] ?? 0;
  const round = (v: number) => Math.round(v * 10) / 10;
  return { polls: ms.length, unanswered: mine.filter((p) => p.ms === null).length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(ms.at(-1) ?? 0) };
}

function window(polls: Poll[], from: number, to: number): Record<Series, Latency> {
  return Object.fromEntries(SERIES.map((s) => [s, latency(polls, s, from, to)])) as Record<Series, Latency>;
}

const show = (name: string, l: Latency) =>
  `${name.padEnd(14)} p50 ${l.p50} ms, p99 ${l.p99} ms, max ${l.max} ms; ${l.unanswered} of ${l.polls} polls unanswered within ${GIVE_UP_MS} ms`;

// Refuse to start a run the box cannot hold (12 KiB per connection all in, plus a margin), as serve-hold does.
const need = N * 12 * 1024 + 1024 * MiB;
if (memAvailable() < need) {
  console.error(`serve-conns-latency: ${N} connections need about ${Math.round(need / MiB)} MiB; ${Math.round(memAvailable() / MiB)} MiB available`);
  process.exit(1);
}

console.log(`/conns and /healthz latency during a ramp: ${N} connections over ${HOSTS} destination addresses, ${CONCURRENCY} dials in flight, a poll of each every ${POLL_MS} ms; load average ${loadAverage()}`);
const server = await startWsmillion(["--workers", "auto", "--max-conns", String(N)], 0);
try {
  // The supervisor answers once every worker it sized is ready; their first reports follow within 250 ms.
  await Bun.sleep(1000);
  const serverWorkers = (await server.stats()).workers.length;
  const poller = await startPoller(server.port);
  let rampStart = 0;
  let rampEnd = 0;
  const r = await runLoad(
    completePlan(
      {
        targets: loopbackTargets(HOSTS, server.port), connections: N, concurrency: CONCURRENCY, durationS: HOLD_S,
        intervalMs: 0, size: 0, mode: "idle", handshakeTimeoutMs: 30_000, maxMessage: 1 << 20, statusUrl: null,
      },
      NOFILE,
    ),
    {
      onPhase(p) {
        if (p === "ramp") rampStart = Date.now();
        if (p === "run") rampEnd = Date.now();
      },
      onProgress(s) {
        if (s.phase === "ramp" && Math.round(s.t) % 5 === 0) console.log(`  t=${s.t}s open ${s.open} (${s.dialsPerSec}/s), failed ${s.failed}`);
      },
    },
  );
  const { polls, lags } = await poller.stop();
  const restFrom = rampEnd + REST_SKIP_MS;
  const restTo = rampEnd + HOLD_S * 1000;
  const ramp = window(polls, rampStart, rampEnd);
  const rest = window(polls, restFrom, restTo);
  const rampLags = lags.filter((l) => l.at >= rampStart && l.at < rampEnd).map((l) => l.ms);
  const pollerLagMaxMs = Math.round(Math.max(0, ...rampLags));
  const open = r.connections.openAtRamp;
  // At rest every answer should be the generator's count: the figure is exact once the last change has propagated.
  const restAnswers = polls.filter((p) => p.series.startsWith("/conns") && p.at >= restFrom && p.at < restTo && p.conns !== undefined);
  const exactAtRest = restAnswers.length > 0 && restAnswers.every((p) => p.conns === open);
  console.log(`ramp: ${open} of ${N} open in ${r.connections.rampSeconds} s (${r.connections.dialsPerSecond}/s), ${r.connections.failed} failed; ${serverWorkers} server workers, ${r.workers.length} load workers`);
  for (const [name, w] of [["during the ramp:", ramp], ["at rest:", rest]] as const) {
    SERIES.forEach((s, i) => console.log(`${(i === 0 ? name : "").padEnd(17)}${show(s, w[s])}`));
  }
  const overHealthz = ramp["/conns new"].p99 / Math.max(0.1, ramp["/healthz new"].p99);
  console.log(`/conns over /healthz during the ramp (new connections): p99 ${overHealthz.toFixed(2)}x, p50 ${(ramp["/conns new"].p50 / Math.max(0.1, ramp["/healthz new"].p50)).toFixed(2)}x`);
  console.log(`the poller's own worst lateness during the ramp: ${pollerLagMaxMs} ms (a wait that long is the box's, not the server's)`);
  console.log(`/conns at rest equals the generator's count (${open}): ${exactAtRest} (${restAnswers.length} answers)`);
  const met = SERIES.every((s) => ramp[s].p99 <= TARGET_P99_MS);
  console.log(`target: /conns and /healthz p99 <= ${TARGET_P99_MS} ms during the ramp: ${met ? "met" : "NOT met"}`);
  finish(
    "serve-conns-latency",
    {
      connections: N, concurrency: CONCURRENCY, addresses: HOSTS, serverWorkers, loadWorkers: r.workers.length,
      openAtRamp: open, failed: r.connections.failed, rampSeconds: r.connections.rampSeconds,
      pollMs: POLL_MS, giveUpMs: GIVE_UP_MS, ramp, rest, pollerLagMaxMs, exactAtRest, targetP99Ms: TARGET_P99_MS, met,
      rampOverRestP99: ramp["/conns new"].p99 / Math.max(0.1, rest["/conns new"].p99),
    },
    overHealthz,
  );
} finally {
  await server.stop();
}
