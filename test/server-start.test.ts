// How `wsmillion serve` starts: binds the machine refuses, each told as one line with the fix and exit code 2,
// never a stack trace.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
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
