// The kernel TCP counters a load report carries: parsing /proc/net/{netstat,snmp,softnet_stat} as this
// machine prints them (test/fixtures/tcp-counters: `host` is the host's files, `before`/`after` a private
// network namespace around a load run against a listener with a full backlog), deltas, and the map from
// what moved to its likely cause and the doctor check whose fix applies.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { failedOrDropped, kernelSection } from "../src/report/load-report.ts";
import { kernelMarkdown } from "../src/report/sweep-md.ts";
import type { Limits } from "../src/system/limits.ts";
import { readLimits } from "../src/system/limits.ts";
import {
  COUNTERS, PhaseCounters, SOFTNET_DROPS, delta, kernelReport, parseNetstat, parseSoftnet, readTcpCounters, readings,
  type KernelPhase, type TcpDeltas,
} from "../src/system/tcp-counters.ts";
import type { LoadReport } from "../src/load/report.ts";

const FIXTURES = join(import.meta.dir, "fixtures", "tcp-counters");
const fixture = (dir: string, file: string) => readFileSync(join(FIXTURES, dir, "proc", "net", file), "utf8");
const DOCTOR_BASE = join(import.meta.dir, "fixtures", "doctor", "base");
const PLAN = { role: "both" as const, connections: 1000, targets: [{ host: "127.0.0.1", port: 8080 }] };

/** Phases where only `ramp` moved, by these amounts. */
const inRamp = (moved: TcpDeltas): Record<KernelPhase, TcpDeltas> => ({ ramp: moved, run: {}, close: {} });

/** kernelReport over the doctor's base fixture machine, counting how often the limits were read. */
function report(phases: Record<KernelPhase, TcpDeltas>, failures: boolean) {
  let reads = 0;
  const limits = (): Limits => {
    reads++;
    return readLimits(DOCTOR_BASE);
  };
  return { k: kernelReport(phases, { failures, unreadable: [], plan: PLAN, limits }), reads: () => reads };
}

describe("parsing", () => {
  test("netstat: header and value lines paired per section, names prefixed as nstat prints them", () => {
    const c = parseNetstat(fixture("host", "netstat"));
    expect(c.TcpExtSyncookiesSent).toBe(12033);
    expect(c.TcpExtListenOverflows).toBe(691);
    expect(c.TcpExtListenDrops).toBe(691);
    expect(c.TcpExtTCPSynRetrans).toBe(6655);
    expect(c.TcpExtTCPAbortOnData).toBe(28328);
    expect(c.TcpExtTCPMemoryPressures).toBe(0);
    // Other sections come through under their own prefix.
    expect(c.IpExtInNoECTPkts).toBeGreaterThan(0);
    expect(c.MPTcpExtMPCapableSYNRX).toBe(0);
  });

  test("snmp: the same two-line format; signed values stay signed", () => {
    const c = parseNetstat(fixture("host", "snmp"));
    expect(c.TcpOutRsts).toBe(249634);
    expect(c.TcpEstabResets).toBe(62864);
    expect(c.TcpAttemptFails).toBe(19415);
    expect(c.TcpMaxConn).toBe(-1);
    expect(c.UdpInDatagrams).toBeGreaterThan(0);
  });

  test("a header without its value line, or with another section's, is left out", () => {
    expect(parseNetstat("TcpExt: ListenOverflows ListenDrops\nIpExt: 1 2\nTcp: OutRsts\nTcp: 7\n")).toEqual({ TcpOutRsts: 7 });
    expect(parseNetstat("TcpExt: ListenOverflows\n")).toEqual({});
  });

  test("softnet_stat: hex columns, the second (dropped) summed over CPUs", () => {
    // Real lines: the third column (time_squeeze) is 3 on one CPU, and must not count.
    expect(parseSoftnet(fixture("host", "softnet_stat"))).toEqual({ [SOFTNET_DROPS]: 0 });
    // The same lines with drops written in (0x3e8 + 0x1a = 1000 + 26).
    const edited = fixture("host", "softnet_stat").split("\n").filter(Boolean).map((l, i) => l.replace(/^(\S+) \S+/, `$1 ${i === 0 ? "000003e8" : "0000001a"}`));
    expect(parseSoftnet(edited.join("\n"))).toEqual({ [SOFTNET_DROPS]: 1026 });
    expect(parseSoftnet("garbage\n")).toEqual({});
  });

  test("readTcpCounters keeps the counters the report uses, and names files it could not read", () => {
    const s = readTcpCounters(join(FIXTURES, "host"));
    expect(s.unreadable).toEqual([]);
    expect(Object.keys(s.counters).sort()).toEqual(COUNTERS.map((c) => c.name).sort());
    expect(s.counters.TcpExtSyncookiesSent).toBe(12033);
    expect(s.counters.TcpOutRsts).toBe(249634);
    expect(s.counters.IpExtInNoECTPkts).toBeUndefined();
    const none = readTcpCounters(join(FIXTURES, "absent"));
    expect(none).toEqual({ counters: {}, unreadable: ["/proc/net/netstat", "/proc/net/snmp", "/proc/net/softnet_stat"] });
  });
});

describe("deltas", () => {
  test("before and after a run against a full backlog: the overflows, SYN retransmits and resets it caused", () => {
    const d = delta(readTcpCounters(join(FIXTURES, "before")).counters, readTcpCounters(join(FIXTURES, "after")).counters);
    expect(d).toMatchObject({ TcpExtListenOverflows: 33, TcpExtListenDrops: 33, TcpExtTCPSynRetrans: 22, TcpOutRsts: 1, TcpEstabResets: 2, TcpExtTCPAbortOnData: 1 });
    expect(d.TcpExtSyncookiesSent).toBe(0);
    expect(d[SOFTNET_DROPS]).toBe(0);
  });

  test("only counters both snapshots know; a counter that went down (wrapped) gives no figure", () => {
    expect(delta({ TcpOutRsts: 5, TcpExtListenDrops: 9, TcpEstabResets: 1 }, { TcpOutRsts: 8, TcpExtListenDrops: 2, TcpExtListenOverflows: 4 })).toEqual({ TcpOutRsts: 3 });
  });

  test("PhaseCounters: one delta per phase, between consecutive snapshots", () => {
    const p = new PhaseCounters(join(FIXTURES, "host"));
    p.end("ramp");
    expect(p.phases.ramp.TcpExtListenOverflows).toBe(0);
    expect(p.phases.run).toEqual({});
    expect(p.unread()).toEqual([]);
    const q = new PhaseCounters(join(FIXTURES, "absent"));
    q.end("ramp");
    expect(q.unread()).toEqual(["/proc/net/netstat", "/proc/net/snmp", "/proc/net/softnet_stat"]);
  });
});

describe("what moved, why, and the fix", () => {
  test("listen overflows: the backlog check with its somaxconn fix; resets and SYN retransmits follow them", () => {
    const { k } = report({ ramp: { TcpExtListenOverflows: 27, TcpExtTCPSynRetrans: 27, TcpOutRsts: 0 }, run: { TcpEstabResets: 27 }, close: {} }, true);
    expect(k.notable.map((n) => [n.counter, n.delta, n.phases, n.explainedBy, n.check?.id])).toEqual([
      ["TcpExtListenOverflows", 27, ["ramp"], null, "backlog"],
      ["TcpExtTCPSynRetrans", 27, ["ramp"], "TcpExtListenOverflows", "backlog"],
      ["TcpEstabResets", 27, ["run"], "TcpExtListenOverflows", "backlog"],
    ]);
    const [overflow, , resets] = k.notable;
    expect(overflow!.likelyCause).toContain("net.core.somaxconn");
    expect(resets!.likelyCause).toBe(overflow!.likelyCause);
    // The check as the doctor shows it on the fixture machine, and the doctor's own fix and warning.
    expect(overflow!.check).toEqual({ id: "backlog", title: "accept and SYN backlog", value: "somaxconn 4096, tcp_max_syn_backlog 2048" });
    expect(overflow!.fix).toContain("sysctl -w net.core.somaxconn=4096");
    expect(overflow!.fix).toContain("sysctl -w net.ipv4.tcp_max_syn_backlog=4096");
    expect(overflow!.avoid.join(" ")).toContain("the kernel takes the smaller of the two");
    expect(k.scope).toBe("this machine (both ends if the server runs here)");
  });

  test("softnet drops point at netdev_max_backlog, memory pressure at tcp_mem (doubled, up to half of RAM)", () => {
    const net = report(inRamp({ [SOFTNET_DROPS]: 17, TcpExtTCPSynRetrans: 4 }), false).k;
    expect(net.notable.map((n) => [n.counter, n.check?.id])).toEqual([[SOFTNET_DROPS, "netdev_backlog"], ["TcpExtTCPSynRetrans", "netdev_backlog"]]);
    expect(net.notable[0]!.fix).toContain("sysctl -w net.core.netdev_max_backlog=65536");
    const mem = report(inRamp({ TcpExtTCPMemoryPressures: 2, TcpExtTCPAbortOnMemory: 5 }), true).k;
    expect(mem.notable.map((n) => n.check?.id)).toEqual(["tcp_mem", "tcp_mem"]);
    // The fixture's tcp_mem is 287901 383868 575802 pages with 24 GiB of RAM: max doubles, pressure at 3/4 of it.
    expect(mem.notable[0]!.fix).toContain('sysctl -w net.ipv4.tcp_mem="287901 863703 1151604"');
  });

  test("memory pressure on a machine whose tcp_mem cannot be read: the check says so, and there is no setting to raise", () => {
    const k = kernelReport(inRamp({ TcpExtTCPMemoryPressures: 1 }), { failures: false, unreadable: [], plan: PLAN, limits: () => readLimits(join(FIXTURES, "absent")) });
    expect(k.notable.map((n) => [n.counter, n.check?.id, n.check?.value, n.fix])).toEqual([["TcpExtTCPMemoryPressures", "tcp_mem", "unknown (absent)", []]]);
  });

  test("resets are notable only when connections failed or dropped, and unexplained without a root", () => {
    const resets = inRamp({ TcpOutRsts: 3, TcpEstabResets: 3 });
    const quiet = report(resets, false);
    expect(quiet.k.notable).toEqual([]);
    expect(quiet.reads()).toBe(0);
    const failed = report(resets, true);
    expect(failed.k.notable.map((n) => [n.counter, n.check, n.fix, n.explainedBy])).toEqual([
      ["TcpOutRsts", null, [], null],
      ["TcpEstabResets", null, [], null],
    ]);
    expect(failed.k.notable[0]!.likelyCause).toContain("no queue, memory or softnet counter moved");
    // No check to name: this machine's limits were never read.
    expect(failed.reads()).toBe(0);
  });

  test("readings: roots first, a symptom takes the first root's cause; nothing moved, nothing notable", () => {
    const r = readings(inRamp({ TcpExtSyncookiesSent: 9, TcpExtListenDrops: 1, TcpExtTCPSynRetrans: 2 }), false);
    expect(r.map((x) => [x.counter, x.explainedBy])).toEqual([["TcpExtListenDrops", null], ["TcpExtSyncookiesSent", null], ["TcpExtTCPSynRetrans", "TcpExtListenDrops"]]);
    expect(r[1]!.likelyCause).toContain("tcp_max_syn_backlog");
    expect(readings(inRamp({ TcpExtListenOverflows: 0 }), true)).toEqual([]);
  });
});

describe("the report's section", () => {
  const overflow = report({ ramp: { TcpExtListenOverflows: 27, TcpOutRsts: 0 }, run: {}, close: { TcpExtListenOverflows: 2 } }, true).k;

  test("per-phase rises with their meaning, the cause once per group, each check's fix once", () => {
    const text = kernelSection(overflow, true).join("\n");
    expect(text).toContain("Kernel TCP counters: this machine (both ends if the server runs here); system-wide");
    expect(text).toMatch(/TcpExtListenOverflows\s+27\s+0\s+2\s+a SYN or a handshake's last ACK reached a listener whose accept queue was full/);
    // Counters that did not move are not listed.
    expect(text).not.toContain("TcpOutRsts");
    expect(text).toContain("likely cause of TcpExtListenOverflows: the accept queue was too short");
    expect(text).toContain("fix: the doctor's check backlog (accept and SYN backlog: somaxconn 4096, tcp_max_syn_backlog 2048)");
    expect(text.match(/sysctl -w net\.core\.somaxconn=4096/g)).toHaveLength(1);
  });

  test("shown when connections failed even if nothing moved; absent for a clean run", () => {
    const still = report({ ramp: { TcpExtListenOverflows: 0 }, run: {}, close: {} }, true).k;
    expect(kernelSection(still, true).join("\n")).toContain("none moved on this machine");
    expect(kernelSection(still, false)).toEqual([]);
    const unread = kernelReport({ ramp: {}, run: {}, close: {} }, { failures: true, unreadable: ["/proc/net/netstat"], plan: PLAN, limits: () => readLimits(DOCTOR_BASE) });
    expect(kernelSection(unread, true).join("\n")).toContain("could not read /proc/net/netstat");
    expect(failedOrDropped({ connections: { failed: 0, dropped: 1 } } as LoadReport)).toBe(true);
    expect(failedOrDropped({ connections: { failed: 0, dropped: 0 } } as LoadReport)).toBe(false);
  });

  test("sweep report.md: notable counters per round, each check's fix once", () => {
    const clean = report(inRamp({}), false).k;
    const md = kernelMarkdown([
      { index: 1, label: "100 x 100 B every 100 ms", kernel: clean },
      { index: 2, label: "200 x 100 B every 100 ms", kernel: overflow },
      { index: 3, label: "400 x 100 B every 100 ms", kernel: overflow },
    ]).join("\n");
    expect(md).toContain("## Kernel TCP counters");
    expect(md).not.toContain("R1 ");
    expect(md).toContain("- R2 (200 x 100 B every 100 ms): TcpExtListenOverflows +29 (ramp, close). Likely cause: the accept queue");
    expect(md).toContain("- R3 (400 x 100 B every 100 ms): TcpExtListenOverflows +29");
    expect(md.match(/sysctl -w net\.core\.somaxconn=4096/g)).toHaveLength(1);
    expect(kernelMarkdown([{ index: 1, label: "clean", kernel: clean }])).toEqual([]);
  });
});
