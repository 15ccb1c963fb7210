// Shared pieces of the server benchmarks: `wsmillion serve` and the two baselines (a bare Bun.serve echo
// server, the `ws` server under Node) as child processes, what a process costs (src/system's /proc
// readers), and a lean raw client (our codec over Bun.connect, one shared handler set) that dials, holds
// and echoes the same way against all three.
import type { Socket, Subprocess } from "bun";
import { join } from "node:path";
import {
  MaskSource, OP_BINARY, RequestTemplate, headerEnd, parseFrames, writeMaskedFrame, type FrameSink, type ParserState,
} from "../src/protocol/index.ts";
import { readMeminfo } from "../src/system/meminfo.ts";
import { readCpuSplit, readLoadavg, readRss } from "../src/system/proc.ts";
import { ROOT, startServer } from "./load-lib.ts";

export { ROOT };

/** A server under test: its WebSocket port and the processes whose CPU and memory we charge to it. */
export interface ServerUnderTest {
  name: string;
  port: number;
  /** The process that holds the connections (for wsmillion: the worker, not the supervisor). */
  pid: number;
  /** Every process of the server (wsmillion: supervisor + workers). */
  pids: number[];
  stop(): Promise<void>;
}

async function stopProc(proc: Subprocess, graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await proc.exited;
  clearTimeout(timer);
}

/** Reads a child's stdout until `pattern` matches (or the deadline), then keeps draining it in the background. */
async function waitFor(proc: Subprocess<"ignore", "pipe", "inherit">, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray | null> {
  const reader = proc.stdout.getReader();
  let text = "";
  let m: RegExpExecArray | null = null;
  const deadline = Date.now() + timeoutMs;
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  while (!m && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    m = pattern.exec(text);
  }
  clearTimeout(timer);
  void (async () => {
    for (;;) if ((await reader.read()).done) break;
  })();
  return m;
}

export interface WsmillionServer extends ServerUnderTest {
  proc: Subprocess;
  /** GET /stats (cluster-wide, exact). */
  stats(): Promise<{ conns: number; total: Record<string, number>; workers: { pid: number; open: number; rssBytes: number; cpuSeconds: number }[] }>;
  conns(): Promise<{ conns: number; closed: number }>;
}

/** `wsmillion serve --port 0 ...args` from this tree; resolves once every worker has reported to /stats. */
export async function startWsmillion(args: string[], workers = 1): Promise<WsmillionServer> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "src", "cli.ts"), "serve", "--port", "0", "--host", "0.0.0.0", ...args], {
    cwd: ROOT, stdout: "pipe", stderr: "inherit", stdin: "ignore",
  });
  const m = await waitFor(proc, /listening on [^:]+:(\d+)/);
  if (!m) {
    await stopProc(proc);
    throw new Error("wsmillion serve did not start");
  }
  const port = Number(m[1]);
  const get = async <T>(path: string): Promise<T> => (await (await fetch(`http://127.0.0.1:${port}${path}`)).json()) as T;
  const stats = () => get<Awaited<ReturnType<WsmillionServer["stats"]>>>("/stats");
  let s = await stats();
  for (let i = 0; i < 100 && s.workers.length < workers; i++) {
    await Bun.sleep(100);
    s = await stats();
  }
  const workerPids = s.workers.map((w) => w.pid);
  return {
    name: "wsmillion serve",
    port,
    pid: workerPids[0]!,
    pids: [proc.pid, ...workerPids],
    proc,
    stats,
    conns: () => get("/conns"),
    // SIGTERM drains (close 1001 to every client, up to --drain-timeout).
    stop: () => stopProc(proc, 15_000),
  };
}

/** The floor: a bare Bun.serve echo server (bench/load-lib.ts), nothing of ours in it. */
export async function startBareBun(): Promise<ServerUnderTest> {
  const s = await startServer("echo");
  return { name: "bare Bun.serve", port: s.ws, pid: s.proc.pid, pids: [s.proc.pid], stop: () => s.stop() };
}

const WS_SERVER = `
import { WebSocketServer } from "ws";
const wss = new WebSocketServer({ host: "0.0.0.0", port: 0 }, () => console.log(JSON.stringify({ port: wss.address().port })));
wss.on("connection", (ws) => { ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })); });
`;

/** The `ws` echo server under Node, default options. */
export async function startWsNode(): Promise<ServerUnderTest> {
  const proc = Bun.spawn(["node", "--input-type=module", "-e", WS_SERVER], { cwd: ROOT, stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const m = await waitFor(proc, /"port":(\d+)/);
  if (!m) {
    await stopProc(proc);
    throw new Error("ws server did not start");
  }
  return { name: "ws under Node", port: Number(m[1]), pid: proc.pid, pids: [proc.pid], stop: () => stopProc(proc) };
}

// ---- what a process costs ----

/** A server process vanished mid-measurement: its figures would be silently short, so the run stops. */
function gone(pid: number): never {
  throw new Error(`process ${pid} is gone (no /proc/${pid})`);
}

/** [user, system] CPU seconds summed over processes, from /proc/<pid>/stat (10 ms resolution). */
export function cpuSplitOfAll(pids: number[]): [number, number] {
  let u = 0;
  let s = 0;
  for (const p of pids) {
    const c = readCpuSplit(p) ?? gone(p);
    u += c.userSeconds;
    s += c.systemSeconds;
  }
  return [u, s];
}

/** user + system CPU seconds summed over processes. */
export function cpuOfAll(pids: number[]): number {
  const [u, s] = cpuSplitOfAll(pids);
  return u + s;
}

/** MemAvailable from /proc/meminfo, bytes. */
export function memAvailable(): number {
  const m = readMeminfo();
  return m.totalBytes - m.usedBytes;
}

/** Kernel slab (sockets, their inodes and file objects), bytes. */
export function slabBytes(): number {
  return readMeminfo().slabBytes;
}

/** The 1, 5 and 15 minute load averages as /proc/loadavg prints them. */
export function loadAverage(): string {
  const l = readLoadavg();
  return l ? [l.load1, l.load5, l.load15].map((v) => v.toFixed(2)).join(" ") : "unknown";
}

/** Median of a few RSS readings a little apart (the allocator returns pages in the background). */
export async function settledRss(pid: number, readings = 5, apartMs = 400): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < readings; i++) {
    if (i > 0) await Bun.sleep(apartMs);
    xs.push(readRss(pid) ?? gone(pid));
  }
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)]!;
}

// ---- the lean raw client ----

/** One connection: socket plus the codec's parser state (protocol/parser.ts). Nothing else per connection. */
interface Raw extends ParserState {
  sock: Socket<Raw> | null;
  up: boolean;
  /** Upgrade response bytes of an incomplete header block (only until the 101 arrives). */
  head: Uint8Array | null;
  /** Echoes outstanding (sent, not yet back). */
  inflight: number;
  /** Bytes the socket did not take, written on drain. */
  pending: Uint8Array | null;
}

/** The key does not change the server's work, so every connection sends RFC 6455's sample key. */
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const UPGRADED = "HTTP/1.1 101";

export interface DialResult {
  open: number;
  failed: number;
  seconds: number;
  perSec: number;
}

/**
 * Lean raw client on the project's codec: a fixed upgrade request, a status-line check for the 101, and the
 * frame parser the load generator uses, counting the messages that come back. All connections share one
 * handler set.
 */
export class RawClient {
  readonly conns: Raw[] = [];
  echoes = 0;
  sent = 0;
  skipped = 0;
  closedByServer = 0;
  protocolErrors = 0;
  private onUp: ((c: Raw) => void) | null = null;
  private onFail: (() => void) | null = null;
  private readonly handlers;
  private readonly sink: FrameSink<Raw>;

  constructor() {
    const self = this;
    this.sink = {
      message(c) {
        self.echoes++;
        c.inflight--;
      },
      // Pings, pongs and the server's close frame need nothing from a client that is only measured: the
      // server closes the socket after its close frame, and close() below counts that.
      ping() {},
      pong() {},
      close() {},
      fail(c, code, reason) {
        // A server under test broke the protocol: its figures mean nothing, so say so (once) and drop it.
        if (self.protocolErrors++ === 0) console.error(`raw client: protocol error from the server (${code}): ${reason}`);
        c.sock?.terminate();
      },
    };
    this.handlers = {
      binaryType: "uint8array" as const,
      open(sock: Socket<Raw>) {
        sock.data.sock = sock;
      },
      data(sock: Socket<Raw>, buf: Uint8Array) {
        const c = sock.data;
        if (c.up) {
          parseFrames(c, buf, self.sink, Infinity);
          return;
        }
        let head = buf;
        if (c.head !== null) {
          head = new Uint8Array(c.head.byteLength + buf.byteLength);
          head.set(c.head, 0);
          head.set(buf, c.head.byteLength);
        }
        const end = headerEnd(head);
        if (end < 0) {
          // The read buffer is not ours to keep.
          c.head = head === buf ? buf.slice() : head;
          return;
        }
        c.head = null;
        // The status line only, not parseResponse: its Sec-WebSocket-Accept check is a SHA-1 per connection
        // (~10 µs measured), and this client shares the cores with the server whose accept rate it measures.
        if (Buffer.from(head.buffer, head.byteOffset, Math.min(head.byteLength, UPGRADED.length)).toString("latin1") !== UPGRADED) {
          sock.terminate();
          return;
        }
        c.up = true;
        self.onUp?.(c);
        if (end < head.byteLength) parseFrames(c, head.subarray(end), self.sink, Infinity);
      },
      drain(sock: Socket<Raw>) {
        const c = sock.data;
        const p = c.pending;
        if (p === null) return;
        c.pending = null;
        self.write(c, p);
      },
      close(sock: Socket<Raw>) {
        const c = sock.data;
        if (c.up && c.sock !== null) self.closedByServer++;
        const wasUp = c.up;
        c.sock = null;
        c.up = false;
        if (!wasUp) self.onFail?.();
      },
      connectError() {
        self.onFail?.();
      },
    };
  }

  write(c: Raw, buf: Uint8Array): void {
    const sock = c.sock;
    if (sock === null) return;
    if (c.pending !== null) {
      const p = new Uint8Array(c.pending.byteLength + buf.byteLength);
      p.set(c.pending, 0);
      p.set(buf, c.pending.byteLength);
      c.pending = p;
      return;
    }
    const n = sock.write(buf);
    if (n >= 0 && n < buf.byteLength) c.pending = buf.slice(n);
  }

  /** Opens n connections over `hosts` destination addresses (127.0.0.1..N), at most `concurrency` in flight. */
  dial(port: number, n: number, concurrency: number, hosts: number, path = "/ws", timeoutMs = 60_000): Promise<DialResult> {
    const reqs = Array.from({ length: hosts }, (_, h) => Buffer.from(new RequestTemplate({ host: `127.0.0.${h + 1}:${port}`, path }).render(KEY)));
    let next = 0;
    let open = 0;
    let failed = 0;
    const t0 = performance.now();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        const seconds = (performance.now() - t0) / 1000;
        resolve({ open, failed, seconds, perSec: Math.round(open / seconds) });
      }
      const more = (): void => {
        if (open + failed >= n) return done();
        if (next < n) one();
      };
      this.onUp = () => {
        open++;
        more();
      };
      this.onFail = () => {
        failed++;
        more();
      };
      const one = (): void => {
        const i = next++;
        const h = i % hosts;
        const c: Raw = { sock: null, up: false, head: null, pbuf: null, fragOp: 0, fragParts: null, fragLen: 0, pdone: false, fragComp: false, pmd: null, inflight: 0, pending: null };
        this.conns.push(c);
        Bun.connect<Raw>({ hostname: `127.0.0.${h + 1}`, port, data: c, socket: this.handlers }).then(
          (sock) => {
            sock.write(reqs[h]!);
          },
          () => {},
        );
      };
      for (let k = 0; k < Math.min(concurrency, n); k++) one();
    });
  }

  /**
   * Open-loop echo traffic: `rate` messages/s of `size` bytes spread evenly over the open connections, sent
   * every `tickMs` (a connection's messages for one tick go in one write), for `seconds`. A connection with
   * more than `window` echoes outstanding skips its turn (counted), so a saturated server is not buried.
   */
  async echo(rate: number, size: number, seconds: number, tickMs = 10, window = 64, onStart?: () => void): Promise<{ sent: number; echoes: number; seconds: number; skipped: number }> {
    const open = this.conns.filter((c) => c.up);
    const masks = new MaskSource();
    const payload = new Uint8Array(size).fill(120);
    const frameLen = writeMaskedFrame(new Uint8Array(size + 14), 0, OP_BINARY, payload, size, masks);
    // A pool of pre-masked frames (fresh keys), so a write is a subarray, not an encode.
    const POOL = 4096;
    const pool = new Uint8Array(frameLen * POOL);
    for (let i = 0; i < POOL; i++) writeMaskedFrame(pool, i * frameLen, OP_BINARY, payload, size, masks);
    let at = 0;
    let owed = 0;
    let cursor = 0;
    const sent0 = this.sent;
    const echoes0 = this.echoes;
    const skipped0 = this.skipped;
    onStart?.();
    const t0 = performance.now();
    let last = t0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const now = performance.now();
        if (now - t0 >= seconds * 1000) {
          clearInterval(timer);
          return resolve();
        }
        owed += (rate * (now - last)) / 1000;
        last = now;
        const total = Math.floor(owed);
        owed -= total;
        // Spread this tick's messages over the connections round robin: k each, the remainder to the next ones.
        const per = Math.floor(total / open.length);
        let extra = total - per * open.length;
        for (let j = 0; j < open.length; j++) {
          const c = open[cursor]!;
          cursor = cursor + 1 === open.length ? 0 : cursor + 1;
          let k = per;
          if (extra > 0) {
            k++;
            extra--;
          }
          if (k === 0) break; // per is 0 and the remainder is spent
          if (c.inflight + k > window || c.sock === null) {
            this.skipped += k;
            continue;
          }
          if (at + k > POOL) at = 0;
          this.write(c, pool.subarray(at * frameLen, (at + k) * frameLen));
          at += k;
          c.inflight += k;
          this.sent += k;
        }
      }, tickMs);
    });
    const elapsed = (performance.now() - t0) / 1000;
    return { sent: this.sent - sent0, echoes: this.echoes - echoes0, seconds: elapsed, skipped: this.skipped - skipped0 };
  }

  /** Waits until every echo sent has come back (or the timeout). */
  async settle(timeoutMs = 3000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.echoes < this.sent && performance.now() < deadline) await Bun.sleep(20);
  }

  get openCount(): number {
    let n = 0;
    for (const c of this.conns) if (c.up) n++;
    return n;
  }

  /** Drops every connection (RST-free close of the TCP socket; servers see 1006). */
  async closeAll(): Promise<void> {
    for (const c of this.conns) c.sock?.end();
    const deadline = performance.now() + 5000;
    while (this.conns.some((c) => c.sock !== null) && performance.now() < deadline) await Bun.sleep(20);
    for (const c of this.conns) c.sock?.terminate();
    this.conns.length = 0;
  }
}

/** What one dialing process reports: wall-clock start and end (ms since the epoch), results, its CPU. */
export interface DialShare {
  t0: number;
  t1: number;
  open: number;
  failed: number;
  cpuUs: number;
}

const DIALER = `
const { RawClient } = await import(process.argv[1]);
const [port, n, conc, hosts] = process.argv.slice(2).map(Number);
const client = new RawClient();
process.on("message", async (m) => {
  if (m === "go") {
    const c0 = process.cpuUsage();
    const t0 = Date.now();
    const d = await client.dial(port, n, conc, hosts);
    const t1 = Date.now();
    const c = process.cpuUsage(c0);
    process.send({ t0, t1, open: d.open, failed: d.failed, cpuUs: c.user + c.system });
  } else if (m === "close") {
    await client.closeAll();
    process.exit(0);
  }
});
process.send("ready");
`;

/**
 * The raw client spread over `procs` processes (a single-threaded client tops out near one core), started
 * together: dials n connections in all, then holds them until close() is called.
 */
export async function dialFromProcesses(port: number, n: number, concurrency: number, hosts: number, procs: number): Promise<{ shares: DialShare[]; close(): Promise<void> }> {
  const kids: { proc: Subprocess; share: Promise<DialShare>; ready: Promise<void> }[] = [];
  for (let i = 0; i < procs; i++) {
    let ready!: () => void;
    let done!: (s: DialShare) => void;
    const kid = {
      ready: new Promise<void>((r) => (ready = r)),
      share: new Promise<DialShare>((r) => (done = r)),
      proc: Bun.spawn(
        [process.execPath, "-e", DIALER, join(import.meta.dir, "serve-lib.ts"), String(port), String(Math.floor(n / procs) + (i < n % procs ? 1 : 0)), String(Math.ceil(concurrency / procs)), String(hosts)],
        {
          cwd: ROOT, stdio: ["ignore", "inherit", "inherit"],
          ipc(m) {
            if (m === "ready") ready();
            else done(m as DialShare);
          },
        },
      ),
    };
    kids.push(kid);
  }
  const killer = setTimeout(() => kids.forEach((k) => k.proc.kill("SIGKILL")), 120_000);
  await Promise.all(kids.map((k) => k.ready));
  for (const k of kids) k.proc.send("go");
  const shares = await Promise.all(kids.map((k) => k.share));
  return {
    shares,
    async close() {
      for (const k of kids) k.proc.send("close");
      await Promise.all(kids.map((k) => k.proc.exited));
      clearTimeout(killer);
    },
  };
}

export function kib(bytes: number): string {
  return (bytes / 1024).toFixed(2);
}
