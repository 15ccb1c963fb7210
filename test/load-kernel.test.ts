// The kernel TCP counters in the load report, provoked for real: a listener that never accepts overflows
// its accept queue, and the report says so with the doctor's fix. Each run has a private network namespace
// (unshare -n), whose /proc/net counters only its own traffic moves, so the box's other programs cannot
// add to them or hide them.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LoadReport } from "../src/load/report.ts";
import type { SweepReport } from "../src/sweep/schema.ts";
import { SOFTNET_DROPS } from "../src/system/tcp-counters.ts";
import { CLI, type CliResult } from "./helpers/load.ts";

const dir = mkdtempSync(join(tmpdir(), "wsm-kernel-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PORT = 7200;
const wsm = `${process.execPath} ${JSON.stringify(CLI)}`;

/** Waits for a listener on PORT without dialing it (a probe would move the counters): polls the socket table. */
const awaitListener = `i=0; until ss -Hltn 'sport = :${PORT}' | grep -q LISTEN; do i=$((i+1)); if [ $i -gt 200 ]; then echo 'nothing listened' >&2; kill $srv; exit 3; fi; sleep 0.05; done`;

/** A listener with the smallest backlog that never accepts: past one queued connection the kernel drops SYNs. */
const fullBacklog = `python3 -c 'import socket,time
s=socket.socket();s.bind(("127.0.0.1",${PORT}));s.listen(0);time.sleep(60)' & srv=$!`;

/** Runs `script` under sh in a fresh network namespace with its loopback up; the listener ($srv) is killed after. */
async function inNamespace(lines: string[], timeoutMs: number): Promise<CliResult> {
  const script = ["ip link set lo up", ...lines, "code=$?; kill $srv; exit $code"].join("\n");
  const proc = Bun.spawn(["unshare", "-n", "sh", "-c", script], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

describe("kernel TCP counters, provoked in a private network namespace", () => {
  test("load against a full accept queue: ListenOverflows in the ramp, the backlog check and its somaxconn fix", async () => {
    const json = join(dir, "overflow.json");
    const r = await inNamespace(
      [fullBacklog, awaitListener, `${wsm} load ws://127.0.0.1:${PORT}/ws --connections 12 --duration 0 --handshake-timeout 2 --quiet --no-check --status-url off --json ${json}`],
      30_000,
    );
    expect(r.code).toBe(1);
    const k = (JSON.parse(readFileSync(json, "utf8")) as LoadReport).kernel;
    expect(k.scope).toBe("this machine (both ends if the server runs here)");
    expect(k.unreadable).toEqual([]);
    expect(k.phases.ramp.TcpExtListenOverflows).toBeGreaterThan(0);
    const overflow = k.notable.find((n) => n.counter === "TcpExtListenOverflows");
    expect(overflow?.delta).toBeGreaterThan(0);
    expect(overflow?.phases).toContain("ramp");
    expect(overflow?.check?.id).toBe("backlog");
    expect(overflow?.fix.join("\n")).toContain("sysctl -w net.core.somaxconn=");
    // The SYNs the queue dropped were sent again after a second (the handshake timeout is two).
    const retrans = k.notable.find((n) => n.counter === "TcpExtTCPSynRetrans");
    expect(retrans?.explainedBy).toBe("TcpExtListenOverflows");
    // The text report shows the same beside the failures, before the latency.
    const text = r.stdout;
    expect(text).toMatch(/Failed dials by cause[\s\S]*Kernel TCP counters[\s\S]*Latency/);
    expect(text).toMatch(/TcpExtListenOverflows\s+[1-9]\d*\s/);
    expect(text).toContain("fix: the doctor's check backlog (accept and SYN backlog: somaxconn");
    expect(text).toMatch(/Result: plan NOT met \(exit 1\): 12 of 12 dials failed/);
  }, 40_000);

  test("a clean run moves none of them, and the report has no kernel section", async () => {
    const json = join(dir, "clean.json");
    const server = `${process.execPath} -e 'const s=Bun.serve({port:${PORT},hostname:"127.0.0.1",fetch:(r,x)=>x.upgrade(r)?undefined:new Response("",{status:400}),websocket:{message(w,m){w.send(m)}}});setTimeout(()=>s.stop(true),30000)' & srv=$!`;
    const r = await inNamespace([server, awaitListener, `${wsm} load ws://127.0.0.1:${PORT}/ws --connections 200 --duration 1 --interval 100 --quiet --no-check --status-url off --json ${json}`], 30_000);
    expect(r.code).toBe(0);
    const k = (JSON.parse(readFileSync(json, "utf8")) as LoadReport).kernel;
    // Read, and zero: the namespace's counters saw 200 connections open, talk and close, and no trouble.
    expect(k.phases.ramp.TcpExtListenOverflows).toBe(0);
    // softnet_stat alone is shared by every namespace: the box's other programs may move it (and what it drops).
    expect(k.notable.filter((n) => n.counter !== SOFTNET_DROPS && n.explainedBy !== SOFTNET_DROPS)).toEqual([]);
    expect(r.stdout.includes("Kernel TCP counters")).toBe(k.notable.length > 0);
    expect(r.stdout).toContain("Result: plan met (exit 0)");
  }, 40_000);

  test("sweep: each round's kernel counters in report.json, the notable ones in report.md", async () => {
    const out = join(dir, "sweep");
    const r = await inNamespace(
      [fullBacklog, awaitListener, `${wsm} sweep --target ws://127.0.0.1:${PORT}/ws --connections 12 --interval 1000 --duration 1 --cooldown 0 --out ${out} --quiet`],
      60_000,
    );
    expect(r.stderr).not.toContain("nothing listened");
    const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as SweepReport;
    expect(report.rounds).toHaveLength(1);
    const k = report.rounds[0]!.load.kernel;
    expect(k.notable.find((n) => n.counter === "TcpExtListenOverflows")?.check?.id).toBe("backlog");
    const md = readFileSync(join(out, "report.md"), "utf8");
    expect(md).toMatch(/## Kernel TCP counters[\s\S]*- R1 \(.*\): TcpExtListenOverflows \+[1-9]/);
    expect(md).toContain("sysctl -w net.core.somaxconn=");
  }, 70_000);
});
