// What the agent tests share: a private redis-server per test (free port, temporary directory, no
// persistence, stopped by PID), agents and coordinators as real CLI processes whose output is kept, and
// raw Redis commands for the tests' own looks at the keys. Everything started here is stopped by PID.
import type { Subprocess } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RedisClient } from "bun";
import { drain, type Sink } from "./read.ts";
import { eventually } from "./eventually.ts";
import { CLI } from "./load.ts";

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** Stops it (SIGTERM, then SIGKILL) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: no persistence). */
  start(): Promise<void>;
  /** One command on a fresh connection. */
  cmd(...args: string[]): Promise<unknown>;
  /** Removes its directory (after stop). */
  remove(): void;
}

/** A port nothing listens on right now (bound then released). */
export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

/** `bind`: the address it listens on (a lab's bridge address, for agents in network namespaces). */
export async function startRedis(extra: string[] = [], bind = "127.0.0.1"): Promise<RedisServer> {
  const port = freePort();
  const dir = mkdtempSync(join(tmpdir(), "wsm-redis-"));
  let proc: Subprocess | null = null;
  const url = `redis://${bind}:${port}`;
  const server: RedisServer = {
    port,
    url,
    dir,
    async start() {
      proc = Bun.spawn(["redis-server", "--port", String(port), "--bind", bind, "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", ...extra], {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
      });
      const pass = extra.includes("--requirepass") ? extra[extra.indexOf("--requirepass") + 1] : null;
      const started = proc;
      await eventually(
        async () => {
          const c = new RedisClient(pass ? `redis://:${pass}@${bind}:${port}` : url, { autoReconnect: false, connectionTimeout: 500 });
          try {
            await c.connect();
            return (await c.send("PING", [])) === "PONG";
          } finally {
            c.close();
          }
        },
        { timeoutMs: 10_000, what: `redis-server on port ${port}` },
      ).catch(async (err: unknown) => {
        // Not answering (or refusing us): it is stopped here, since the caller never gets its handle.
        started.kill("SIGKILL");
        await started.exited;
        throw err;
      });
    },
    async stop() {
      const p = proc;
      proc = null;
      if (!p || p.exitCode !== null) return;
      p.kill("SIGTERM");
      const timer = setTimeout(() => p.kill("SIGKILL"), 5000);
      await p.exited;
      clearTimeout(timer);
    },
    async cmd(...args: string[]) {
      const c = new RedisClient(url, { autoReconnect: false });
      try {
        await c.connect();
        return await c.send(args[0]!, args.slice(1));
      } finally {
        c.close();
      }
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}

export interface Cli {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  out: Sink;
  err: Sink;
  /** Everything it printed so far, stdout then stderr. */
  text(): string;
  /** Waits until its output matches (stdout and stderr together). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Signals it (default SIGTERM) and waits for its exit code; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number>;
  exited: Promise<number>;
}

/** `wsmillion <args>` as a process whose output is kept (for agents and coordinators alike); `wrap` runs it under another command (ip netns exec NS). */
export function cli(args: string[], cwd?: string, wrap: string[] = []): Cli {
  const proc = Bun.spawn([...wrap, process.execPath, CLI, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", cwd });
  const out: Sink = { text: "" };
  const err: Sink = { text: "" };
  drain(proc.stdout, out);
  drain(proc.stderr, err);
  const text = (): string => out.text + err.text;
  return {
    proc,
    out,
    err,
    text,
    exited: proc.exited,
    async waitFor(re, timeoutMs = 20_000) {
      await eventually(() => re.test(text()) || proc.exitCode !== null, { timeoutMs, what: `${re} from wsmillion ${args[0]}` });
      const m = re.exec(text());
      if (!m) throw new Error(`wsmillion ${args[0]} exited (${proc.exitCode}) before printing ${re}:\n${text()}`);
      return m;
    },
    async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 20_000) {
      if (proc.exitCode === null) proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await proc.exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** An agent, started and ready (its "waiting for work" line printed). */
export async function agent(redisUrl: string, name: string, extra: string[] = [], cwd?: string, wrap: string[] = []): Promise<Cli> {
  const a = cli(["agent", "--redis", redisUrl, "--name", name, ...extra], cwd, wrap);
  await a.waitFor(/waiting for work/);
  return a;
}

/** Stops every process and server given, even when some fail to stop. */
export async function stopAll(clis: Cli[], redis: RedisServer[]): Promise<void> {
  await Promise.allSettled(clis.map((c) => c.stop("SIGKILL", 5000)));
  await Promise.allSettled(redis.map(async (r) => {
    await r.stop();
    r.remove();
  }));
}

/** What one test started (commands, Redis servers, servers, temporary folders); `cleanup` ends and removes it all. */
export class Started {
  clis: Cli[] = [];
  redis: RedisServer[] = [];
  servers: { stop(force?: boolean): unknown }[] = [];
  dirs: string[] = [];

  track = (c: Cli): Cli => {
    this.clis.push(c);
    return c;
  };

  tmp(): string {
    const d = mkdtempSync(join(tmpdir(), "wsm-agents-"));
    this.dirs.push(d);
    return d;
  }

  async cleanup(): Promise<void> {
    await stopAll(this.clis, this.redis);
    for (const s of this.servers) await s.stop(true);
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
    this.clis = [];
    this.redis = [];
    this.servers = [];
    this.dirs = [];
  }
}
