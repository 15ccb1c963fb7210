// Starts `wsmillion serve` as a real process on a free port and tears it down by PID.
import type { Subprocess } from "bun";
import { join } from "node:path";
import type { ClusterStats } from "../../src/server/stats.ts";
import { drain, readUntil } from "./read.ts";

// Older tests import `eventually` from here; it lives in eventually.ts.
export { eventually } from "./eventually.ts";

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

/** `wrap` runs the server under another command, e.g. ["prlimit", "--nofile=600:600"]. */
export async function serve(args: string[] = [], wrap: string[] = []): Promise<ServeHandle> {
  const proc = Bun.spawn([...wrap, process.execPath, CLI, "serve", "--port", "0", "--host", "127.0.0.1", ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = { text: "" };
  const err = { text: "" };
  drain(proc.stderr, err);
  let port: number;
  try {
    port = Number((await readUntil(proc.stdout, /listening on [^:]+:(\d+)/, 20_000, out))[1]);
  } catch (e) {
    proc.kill("SIGKILL");
    throw new Error(`serve did not say where it listens: ${(e as Error).message}\nstderr:\n${err.text}`);
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
