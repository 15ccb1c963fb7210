// Starts `wsmillion serve` as a real process on a free port and tears it down by PID.
import type { Subprocess } from "bun";
import { join } from "node:path";
import type { ClusterStats } from "../../src/server/stats.ts";

export const CLI = join(import.meta.dir, "..", "..", "src", "cli.ts");

export interface ServeHandle {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  url: string;
  http: string;
  stdout: () => string;
  stats(): Promise<ClusterStats>;
  conns(): Promise<{ closed: number; conns: number }>;
  stop(signal?: NodeJS.Signals): Promise<number>;
}

async function readUntil(stream: ReadableStream<Uint8Array>, sink: { text: string }, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      const m = pattern.exec(sink.text);
      if (m) return m;
      const { value, done } = await Promise.race([reader.read(), Bun.sleep(deadline - Date.now()).then(() => ({ value: undefined, done: true }))]);
      if (done) break;
      sink.text += decoder.decode(value);
    }
    const m = pattern.exec(sink.text);
    if (m) return m;
    throw new Error(`serve did not print ${pattern} in time; got:\n${sink.text}`);
  } finally {
    reader.releaseLock();
    // Keep draining so the child never blocks on a full pipe.
    void (async () => {
      for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) sink.text += decoder.decode(chunk);
    })().catch(() => {});
  }
}

/** `wrap` runs the server under another command, e.g. ["prlimit", "--nofile=600:600"]. */
export async function serve(args: string[] = [], wrap: string[] = []): Promise<ServeHandle> {
  const proc = Bun.spawn([...wrap, process.execPath, CLI, "serve", "--port", "0", "--host", "127.0.0.1", ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = { text: "" };
  const err = { text: "" };
  void (async () => {
    for await (const chunk of proc.stderr as unknown as AsyncIterable<Uint8Array>) err.text += new TextDecoder().decode(chunk);
  })().catch(() => {});
  let port: number;
  try {
    port = Number((await readUntil(proc.stdout, out, /listening on [^:]+:(\d+)/, 20_000))[1]);
  } catch (e) {
    proc.kill("SIGKILL");
    throw new Error(`${(e as Error).message}\nstderr:\n${err.text}`);
  }
  const http = `http://127.0.0.1:${port}`;
  const path = /--path/.test(args.join(" ")) ? args[args.indexOf("--path") + 1]! : "/ws";
  return {
    proc,
    port,
    url: `ws://127.0.0.1:${port}${path}`,
    http,
    stdout: () => out.text + err.text,
    stats: () => fetch(`${http}/stats`).then((r) => r.json() as Promise<ClusterStats>),
    conns: () => fetch(`${http}/conns`).then((r) => r.json() as Promise<{ closed: number; conns: number }>),
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null) proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      const code = await proc.exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/**
 * Polls until `check` holds (or throws with the last value after `timeoutMs`). A failed `get` counts as not
 * yet: an HTTP keep-alive connection to a worker that was just killed is reset once.
 */
export async function eventually<T>(get: () => Promise<T> | T, check: (v: T) => boolean, timeoutMs = 10_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | Error = new Error("never answered");
  for (;;) {
    try {
      last = await get();
      if (check(last)) return last;
    } catch (err) {
      last = err as Error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await Bun.sleep(50);
  }
}
