// How `wsmillion serve` starts: the liveness defaults that scale with --max-conns (and lose to the flags),
// and binds the machine refuses, each told as one line with the fix and exit code 2, never a stack trace.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { chooseLiveness, livenessLine, scaledLiveness } from "../src/server/config.ts";
import { readUntil } from "./helpers/read.ts";
import { CLI, serve } from "./helpers/serve.ts";

/** Runs the CLI to its end: exit code and what it printed. */
async function run(args: string[], wrap: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([...wrap, process.execPath, CLI, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** One line on stderr and nothing that looks like a stack frame; exit 2. */
function expectOneLine(r: { code: number; stderr: string }, line: string): void {
  expect(r.stderr.split("\n").filter((l) => /^\s+at /.test(l))).toEqual([]);
  expect(r.stderr).toBe(`${line}\n`);
  expect(r.code).toBe(2);
}

describe("ping interval and idle timeout from --max-conns", () => {
  test("the rule: 30 s up to 120,000 connections, then a round interval within the budget, idle timeout four intervals", () => {
    expect(scaledLiveness(50_000)).toEqual({ pingInterval: 30, idleTimeout: 120 });
    expect(scaledLiveness(200_000)).toEqual({ pingInterval: 60, idleTimeout: 240 });
    expect(scaledLiveness(1_000_000)).toEqual({ pingInterval: 300, idleTimeout: 1200 });
    // 2,500 s would do; the next round interval is the flag's maximum.
    expect(scaledLiveness(10_000_000)).toEqual({ pingInterval: 3600, idleTimeout: 14_400 });
  });

  test("a given flag wins; an idle timeout left to the rule is never shorter than four ping intervals", () => {
    expect(chooseLiveness(undefined, {})).toEqual({ pingInterval: 30, idleTimeout: 120 });
    expect(chooseLiveness(1_000_000, { pingInterval: 30 })).toEqual({ pingInterval: 30, idleTimeout: 1200 });
    expect(chooseLiveness(1_000_000, { idleTimeout: 600 })).toEqual({ pingInterval: 300, idleTimeout: 600 });
    expect(chooseLiveness(1_000_000, { pingInterval: 0, idleTimeout: 0 })).toEqual({ pingInterval: 0, idleTimeout: 0 });
    expect(chooseLiveness(undefined, { pingInterval: 600 })).toEqual({ pingInterval: 600, idleTimeout: 2400 });
  });

  test("the printed line", () => {
    expect(livenessLine(1_000_000, { pingInterval: 300, idleTimeout: 1200 })).toBe(
      "pings: every 300 s (1,000,000 connections at ≤ 3,334 pings/s), idle timeout 1,200 s; --ping-interval and --idle-timeout set them",
    );
    expect(livenessLine(50_000, { pingInterval: 0, idleTimeout: 120 })).toBe("pings: off, idle timeout 120 s; --ping-interval and --idle-timeout set them");
  });

  test("serve --max-conns 1000000 says what it chose; --ping-interval keeps its own", async () => {
    // One worker, so a million-connection cap starts nothing big.
    const chosen = await serve(["--workers", "1", "--max-conns", "1000000"]);
    try {
      const text = await readUntil(chosen.proc.stdout, /pings: .*\n/, 10_000);
      expect(text[0]).toBe("pings: every 300 s (1,000,000 connections at ≤ 3,334 pings/s), idle timeout 1,200 s; --ping-interval and --idle-timeout set them\n");
      expect(chosen.stdout()).toContain("ping every 300 s, idle timeout 1200 s");
    } finally {
      await chosen.stop();
    }
    const given = await serve(["--workers", "1", "--max-conns", "1000000", "--ping-interval", "45"]);
    try {
      await readUntil(given.proc.stdout, /endpoints: .*\n/, 10_000);
      expect(given.stdout()).toContain("ping every 45 s, idle timeout 1200 s");
      expect(given.stdout()).not.toContain("pings:");
    } finally {
      await given.stop();
    }
  }, 60_000);
});

describe("binds the machine refuses", () => {
  test("a port another program holds: one line, exit 2", async () => {
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "0.0.0.0", resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      expectOneLine(await run(["serve", "--port", String(port)]), `wsmillion serve: port ${port} on 0.0.0.0 is in use (another server?); pick another with --port, or --port 0 for a free one`);
    } finally {
      holder.close();
    }
  }, 30_000);

  test("a port another wsmillion serve holds (reusePort would share it silently): one line, exit 2", async () => {
    const first = await serve(["--workers", "1"]);
    try {
      expectOneLine(
        await run(["serve", "--port", String(first.port), "--host", "127.0.0.1"]),
        `wsmillion serve: port ${first.port} on 127.0.0.1 is in use (another server?); pick another with --port, or --port 0 for a free one`,
      );
    } finally {
      await first.stop();
    }
  }, 30_000);

  test("an address this machine does not have (TEST-NET 192.0.2.1): one line, exit 2", async () => {
    expectOneLine(
      await run(["serve", "--port", "0", "--host", "192.0.2.1"]),
      "wsmillion serve: 192.0.2.1 is not an address of this machine (EADDRNOTAVAIL); give one it has (ip -br addr) with --host, or --host 0.0.0.0 for all of them",
    );
  }, 30_000);

  test("a privileged port without the privilege: one line, exit 2", async () => {
    const unprivilegedFrom = Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8"));
    if (unprivilegedFrom === 0) throw new Error("net.ipv4.ip_unprivileged_port_start is 0 here: every port is unprivileged, so EACCES cannot be provoked");
    const port = Math.min(80, unprivilegedFrom - 1);
    // As root, drop to nobody for the run (setpriv, util-linux); otherwise we lack the privilege already.
    const wrap = process.getuid?.() === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    expectOneLine(
      await run(["serve", "--port", String(port)], wrap),
      `wsmillion serve: no permission to listen on port ${port} (EACCES): ports below 1024 need root or CAP_NET_BIND_SERVICE; pick another with --port, or --port 0 for a free one`,
    );
  }, 30_000);
});
