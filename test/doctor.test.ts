// `wsmillion doctor`: limit reads (fixtures and this machine), the advice text, the CLI end to end, and
// --apply / --persist (on fixture trees always; on the real kernel as root, restoring what it changed).
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { checkPlan, parseTargets } from "../src/system/capacity.ts";
import { readLimits } from "../src/system/limits.ts";
import { applySysctls, persistSysctls, restoreSysctls, sysctlCommand } from "../src/system/fixes.ts";
import { renderTable } from "../src/report/table.ts";
import { CASES, cleanupFixtures, fixtureRoot } from "./fixtures/doctor/fixture.ts";

afterAll(cleanupFixtures);

const CLI = join(import.meta.dir, "..", "src", "cli.ts");
const isRoot = process.getuid?.() === 0;

function doctor(args: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync([process.execPath, CLI, "doctor", ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

interface JsonFinding {
  id: string;
  status: string;
  value: string;
  source: string;
  fix?: string[];
  sysctls?: { key: string; value: string }[];
}
interface JsonReport {
  plan: { role: string; connections: number; targets: string[]; targetsAssumed: boolean };
  fits: boolean;
  capacity: { server: { max: number | string; binding: string }; client: { max: number | string }; both: { max: number | string }; processes: { total: number } };
  findings: JsonFinding[];
  applied?: { key: string; before: string | null; after: string | null; ok: boolean; error?: string }[];
  persisted?: { path: string; ok: boolean; content: string };
  limits: { nofile: { soft: number; hard: number } };
}

function doctorJson(args: string[]): { code: number; report: JsonReport; stderr: string } {
  const r = doctor(["--json", ...args]);
  return { code: r.code, report: JSON.parse(r.stdout) as JsonReport, stderr: r.stderr };
}

describe("readLimits on fixtures", () => {
  test("base: every figure with its logical source", () => {
    const l = readLimits(fixtureRoot("base"));
    expect(l.nofile).toEqual({ soft: 20000, hard: 20000, source: "/proc/self/limits" });
    expect(l.nproc.value).toEqual({ soft: 96365, hard: 96365 });
    expect(l.uid.value).toBe(0);
    expect(l.capSysResource.value).toBe(false); // CapEff 1fffeffffff lacks bit 24
    expect(l.nrOpen).toEqual({ value: 1048576, source: "/proc/sys/fs/nr_open" });
    expect(l.fileNr.value).toEqual({ allocated: 416, free: 0, max: 2466186 });
    expect(l.portRange.value).toEqual({ low: 32768, high: 60999 });
    expect(l.reservedPorts.value).toEqual([]);
    expect(l.twReuse.value).toBe(2);
    expect(l.twRecycle).toEqual({ value: null, source: "/proc/sys/net/ipv4/tcp_tw_recycle", missing: "absent" });
    expect(l.tcpMem.value).toEqual({ low: 287901, pressure: 383868, high: 575802 });
    expect(l.sockstat.value).toEqual({ inuse: 1, orphan: 0, timeWait: 0, alloc: 1, memPages: 0 });
    expect(l.memAvailable.value).toBe(24000000 * 1024);
    expect(l.cgroupVersion.value).toBe(2);
    expect(l.memoryMax).toEqual({ value: { limit: Infinity, current: 104857600 }, source: "/sys/fs/cgroup/user.slice/test.scope/memory.max" });
    expect(l.pidsMax.value).toEqual({ limit: Infinity, current: 12 });
    expect(l.cores.value).toBe(2);
    expect(l.cpuQuota.value).toBe(Infinity);
    expect(l.kernel.value).toBe("6.1.0-18-amd64");
  });

  test("cgroup v1 (hybrid): the tightest ancestor limit, usage at that level", () => {
    const l = readLimits(fixtureRoot("cgroup-v1"));
    expect(l.cgroupVersion.value).toBe(1);
    expect(l.memoryMax).toEqual({ value: { limit: 1073741824, current: 268435456 }, source: "/sys/fs/cgroup/memory/app/memory.limit_in_bytes" });
    expect(l.pidsMax).toEqual({ value: { limit: 200, current: 20 }, source: "/sys/fs/cgroup/pids/app/job/pids.max" });
    expect(l.cpuQuota.value).toBe(1.5);
    expect(l.cpuQuota.source).toBe("/sys/fs/cgroup/cpu,cpuacct/app/job/cpu.cfs_quota_us");
  });

  test("an empty tree: everything absent, nothing thrown", () => {
    const l = readLimits(fixtureRoot("empty"));
    expect(l.nofile.missing).toContain("assumed 1024");
    for (const r of [l.nrOpen, l.fileMax, l.portRange, l.tcpMem, l.sockstat, l.memAvailable, l.conntrackMax, l.cores, l.kernel]) {
      expect(r.value).toBeNull();
      expect(r.missing).toBe("absent");
    }
    expect(l.memoryMax.value).toBeNull();
  });

  test("an unparsable file is reported as such", () => {
    const root = fixtureRoot("base");
    writeFileSync(join(root, "proc/sys/net/ipv4/ip_local_port_range"), "banana\n");
    const r = readLimits(root).portRange;
    expect(r.value).toBeNull();
    expect(r.missing).toStartWith("unparsable");
  });

  test("every fixture reads", () => {
    for (const name of CASES) expect(() => readLimits(fixtureRoot(name))).not.toThrow();
  });
});

describe("readLimits on this machine", () => {
  const l = readLimits();
  test("the open-files limit matches this process's own", () => {
    const own = /^Max open files\s+(\d+)\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"))!;
    expect(l.nofile.soft).toBe(Number(own[1]));
    expect(l.nofile.hard).toBe(Number(own[2]));
    expect(l.nofile.soft).toBeLessThanOrEqual(l.nofile.hard);
  });

  test("kernel figures are present and sane", () => {
    expect(l.nrOpen.value!).toBeGreaterThanOrEqual(l.nofile.hard);
    expect(l.portRange.value!.low).toBeLessThanOrEqual(l.portRange.value!.high);
    expect(l.fileNr.value!.allocated).toBeGreaterThan(0);
    expect(l.memAvailable.value!).toBeGreaterThan(0);
    expect(l.memAvailable.value!).toBeLessThanOrEqual(l.memTotal.value!);
    expect(l.tcpMem.value!.low).toBeLessThanOrEqual(l.tcpMem.value!.high);
    expect(l.cores.value).toBe(cpus().length);
    expect(l.runtime.bun).toBe(Bun.version);
  });

  test("the TCP socket count includes this process's own connections", async () => {
    const N = 20;
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const clients = await Promise.all(Array.from({ length: N }, () => Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {} } })));
    try {
      // Both ends of every connection are ours and stay open while we read, whatever other processes do;
      // a parser that took another field of the TCP line (orphan, tw) would read far fewer.
      expect(readLimits().sockstat.value!.inuse).toBeGreaterThanOrEqual(2 * N);
    } finally {
      for (const c of clients) c.end();
      server.stop(true);
    }
  });

  test("the plan check runs on it", () => {
    const { findings, capacity } = checkPlan({ role: "server", connections: 1000 }, l);
    expect(findings.find((f) => f.status === "fail")).toBeUndefined();
    expect(capacity.server.max).toBeGreaterThan(1000);
  });
});

describe("advice", () => {
  test("never recommends tcp_tw_recycle, for any fixture and role", () => {
    for (const name of [...CASES, "empty" as const]) {
      const l = readLimits(fixtureRoot(name));
      for (const role of ["server", "client", "both"] as const) {
        for (const f of checkPlan({ role, connections: 1_000_000 }, l).findings) {
          for (const line of f.fix ?? []) expect(line).not.toMatch(/tcp_tw_recycle\s*=\s*[1-9]/);
          for (const s of f.sysctls ?? []) if (s.key === "net.ipv4.tcp_tw_recycle") expect(s.value).toBe("0");
        }
      }
    }
  });

  test("warns when tcp_tw_recycle is found set, and says how to clear it", () => {
    const { findings } = checkPlan({ role: "server", connections: 10 }, readLimits(fixtureRoot("tw-recycle")));
    const f = findings.find((x) => x.id === "tcp_tw_recycle")!;
    expect(f.status).toBe("fail");
    expect(f.fix).toContain("sysctl -w net.ipv4.tcp_tw_recycle=0");
    expect(f.avoid!.join(" ")).toContain("removed in Linux 4.12");
  });

  test("explains what tcp_tw_reuse does not do, and that fin_timeout is not TIME_WAIT, even when all is ok", () => {
    const avoid = checkPlan({ role: "client", connections: 10 }, readLimits(fixtureRoot("base"))).findings.flatMap((f) => f.avoid ?? []).join("\n");
    expect(avoid).toContain("tcp_tw_reuse does not add ports");
    expect(avoid).toContain("TIME_WAIT is fixed at 60 s");
    expect(avoid).toContain("tcp_tw_recycle: removed in Linux 4.12");
  });

  test("multi-number sysctls are quoted; the persistent file form has none", () => {
    expect(sysctlCommand({ key: "net.ipv4.ip_local_port_range", value: "1024 65535" })).toBe('sysctl -w net.ipv4.ip_local_port_range="1024 65535"');
    expect(sysctlCommand({ key: "fs.file-max", value: "2097152" })).toBe("sysctl -w fs.file-max=2097152");
    for (const name of CASES) {
      for (const f of checkPlan({ role: "both", connections: 1_000_000 }, readLimits(fixtureRoot(name))).findings) {
        for (const line of f.fix ?? []) expect(line).not.toMatch(/sysctl -w [\w.]+=[^"\s]+ \d/);
      }
    }
  });

  test("nofile fixes name every place the limit is set", () => {
    const f = checkPlan({ role: "server", connections: 1_000_000 }, readLimits(fixtureRoot("low-nofile"))).findings.find((x) => x.id === "nofile")!;
    const text = f.fix!.join("\n");
    for (const s of ["LimitNOFILE=", "/etc/security/limits.conf", "'*' does not match root", "docker run --ulimit nofile="]) expect(text).toContain(s);
  });
});

describe("renderTable", () => {
  test("aligns columns, right-aligns numbers, ignores ANSI in widths", () => {
    const t = renderTable(["A", "N", "Z"], [["\x1b[31mFAIL\x1b[0m", "1", "x"], ["ok", "1,000", "yy"]], { align: ["left", "right"] });
    expect(t.split("\n")).toEqual(["A         N  Z", "\x1b[31mFAIL\x1b[0m      1  x", "ok    1,000  yy"]);
    expect(renderTable(["H"], [], { rule: true })).toBe("H\n-");
  });
});

describe("wsmillion doctor (CLI)", () => {
  test("--json on a fixture: one document, exit 1 when the plan does not fit", () => {
    const { code, report } = doctorJson(["--root", fixtureRoot("base"), "--role", "client", "--connections", "1000000"]);
    expect(code).toBe(1);
    expect(report.fits).toBe(false);
    expect(report.plan).toEqual({ role: "client", connections: 1_000_000, targets: ["127.0.0.1:8080"], targetsAssumed: true });
    expect(report.findings.find((f) => f.id === "ports")!.status).toBe("fail");
    expect(report.capacity.processes.total).toBe(51);
    expect(report.capacity.server.max).toBe(2466186 - 416); // file-max binds a lone server on this fixture
  });

  test("--json: the same plan with enough targets fits, exit 0; unlimited figures are spelled out", () => {
    const { code, report } = doctorJson(["--root", fixtureRoot("base"), "--role", "client", "--connections", "1_000_000", "--targets", "127.0.0.1-36:8080"]);
    expect(code).toBe(0);
    expect(report.fits).toBe(true);
    expect(report.plan.targets.length).toBe(36);
    expect(JSON.stringify(report.limits)).toContain('"limit":"unlimited"');
  });

  test("cost overrides take KB and are shown", () => {
    const { report } = doctorJson(["--root", fixtureRoot("memory-small"), "--role", "server", "--connections", "1000", "--cost-kernel", "10k", "--cost-server", "2KiB"]);
    const costs = (report.capacity as unknown as { costs: { kernelBytes: number; serverBytes: number } }).costs;
    expect(costs).toMatchObject({ kernelBytes: 10240, serverBytes: 2048 });
  });

  test("text output: table, capacity, plan, fixes, avoid", () => {
    const { code, stdout } = doctor(["--root", fixtureRoot("narrow-ports"), "--role", "both", "--connections", "5000"]);
    expect(code).toBe(1);
    expect(stdout).toContain("STATUS  CHECK");
    expect(stdout).toMatch(/^FAIL\s+ephemeral ports\s+40000-40999: 900 per destination, 100 reserved/m);
    expect(stdout).toContain("Capacity (costs per connection");
    expect(stdout).toContain("Plan does not fit: ephemeral ports.");
    expect(stdout).toContain('sysctl -w net.ipv4.ip_local_port_range="1024 65535"');
    expect(stdout).toContain("wsmillion load --targets 127.0.0.1-7:8080");
    expect(stdout).toContain("Avoid");
    expect(stdout).not.toContain("\x1b["); // not a TTY: no colour
  });

  test("on this machine: a small server plan fits", () => {
    const { code, report } = doctorJson(["--role", "server", "--connections", "1000"]);
    expect(code).toBe(0);
    expect(report.limits.nofile.soft).toBeGreaterThan(0);
  });

  test.each([
    [["--role", "proxy"], "--role takes one of server, client, both"],
    [["--connections", "-5"], "--connections"],
    [["--connections", "many"], "--connections"],
    [["--targets", "127.0.0.1"], "--targets: '127.0.0.1' has no port"],
    [["--targets", "127.0.0.1-999:80"], "--targets"],
    [["--cost-kernel", "lots"], "--cost-kernel"],
    [["--frobnicate"], "unknown option"],
  ])("bad flags %p exit 2 with one line", (args, text) => {
    const r = doctor(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n").length).toBe(1);
    expect(r.stderr).toContain(text);
  });
});

describe("--apply and --persist", () => {
  test("on a fixture tree: before and after, and no persistent file without --persist", () => {
    const root = fixtureRoot("narrow-ports");
    const { code, report } = doctorJson(["--root", root, "--role", "client", "--connections", "5000", "--apply"]);
    expect(report.applied).toEqual([{ key: "net.ipv4.ip_local_port_range", before: "40000 40999", after: "1024 65535", ok: true }]);
    expect(readFileSync(join(root, "proc/sys/net/ipv4/ip_local_port_range"), "utf8").trim()).toBe("1024 65535");
    // Judged after the change: 64,512 - 100 reserved ports now hold the plan.
    expect(code).toBe(0);
    expect(report.findings.find((f) => f.id === "ports")!.status).toBe("ok");
    expect(existsSync(join(root, "etc/sysctl.d/90-wsmillion.conf"))).toBe(false);
  });

  test("--persist writes (and merges) /etc/sysctl.d/90-wsmillion.conf under the root", () => {
    const root = fixtureRoot("conntrack-full");
    const { report } = doctorJson(["--root", root, "--role", "server", "--connections", "1000", "--persist"]);
    const file = join(root, "etc/sysctl.d/90-wsmillion.conf");
    expect(report.persisted!.ok).toBe(true);
    expect(readFileSync(file, "utf8")).toContain("net.netfilter.nf_conntrack_max = 131072");
    // Runtime untouched without --apply.
    expect(readFileSync(join(root, "proc/sys/net/netfilter/nf_conntrack_max"), "utf8").trim()).toBe("65536");
    const again = persistSysctls([{ key: "fs.file-max", value: "4194304" }], root);
    expect(again.content).toContain("net.netfilter.nf_conntrack_max = 131072");
    expect(again.content).toContain("fs.file-max = 4194304");
  });

  test("several server workers without tcp_migrate_req: warned, with the sysctl; one worker or the setting on: ok", () => {
    const root = fixtureRoot("base");
    const find = (connections: number) => checkPlan({ role: "both", connections }, readLimits(root)).findings.find((f) => f.id === "migrate_req")!;
    const many = find(100_000);
    expect(many.status).toBe("warn");
    expect(many.sysctls).toEqual([{ key: "net.ipv4.tcp_migrate_req", value: "1" }]);
    expect(find(1000).status).toBe("ok");
    writeFileSync(join(root, "proc/sys/net/ipv4/tcp_migrate_req"), "1\n");
    expect(find(100_000).status).toBe("ok");
    expect(checkPlan({ role: "client", connections: 100_000 }, readLimits(root)).findings.some((f) => f.id === "migrate_req")).toBe(false);
  });
  test("loopback queue: drops read from softnet_stat; with both ends here a short queue is warned with the sysctl", () => {
    const root = fixtureRoot("base");
    const l = readLimits(root);
    expect(l.netdevMaxBacklog.value).toBe(1000);
    expect(l.softnetDrops.value).toBe(0x7f + 0x35);
    const both = checkPlan({ role: "both", connections: 100_000 }, l).findings.find((f) => f.id === "netdev_backlog")!;
    expect(both.status).toBe("warn");
    expect(both.value).toContain("180 dropped since boot");
    expect(both.sysctls).toEqual([{ key: "net.core.netdev_max_backlog", value: "65536" }]);
    expect(checkPlan({ role: "server", connections: 100_000 }, l).findings.find((f) => f.id === "netdev_backlog")!.status).toBe("ok");
    writeFileSync(join(root, "proc/sys/net/core/netdev_max_backlog"), "65536\n");
    expect(checkPlan({ role: "both", connections: 100_000 }, readLimits(root)).findings.find((f) => f.id === "netdev_backlog")!.status).toBe("ok");
  });
  test("restoreSysctls puts back only what we changed and nobody changed since", () => {
    const root = mkdtempSync(join(tmpdir(), "wsm-sysctl-"));
    const put = (key: string, v: string) => {
      const p = join(root, "proc/sys", key.replace(/\./g, "/"));
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, `${v}\n`);
    };
    const read = (key: string) => readFileSync(join(root, "proc/sys", key.replace(/\./g, "/")), "utf8").trim();
    put("fs.file-max", "100");
    put("net.ipv4.tcp_migrate_req", "1");
    put("net.core.somaxconn", "128");
    const applied = applySysctls([
      { key: "fs.file-max", value: "5000" },
      { key: "net.ipv4.tcp_migrate_req", value: "1" },
      { key: "net.core.somaxconn", value: "4096" },
    ], root);
    put("net.core.somaxconn", "8192"); // changed by someone else meanwhile: theirs now
    const restored = restoreSysctls(applied, root);
    expect(restored.map((r) => r.key)).toEqual(["fs.file-max"]);
    expect(read("fs.file-max")).toBe("100");
    expect(read("net.ipv4.tcp_migrate_req")).toBe("1");
    expect(read("net.core.somaxconn")).toBe("8192");
    rmSync(root, { recursive: true, force: true });
  });
  test("applySysctls reports an absent key instead of creating it", () => {
    const root = fixtureRoot("no-conntrack");
    const [r] = applySysctls([{ key: "net.netfilter.nf_conntrack_max", value: "1" }], root);
    expect(r!.ok).toBe(false);
    expect(r!.error).toContain("absent");
    expect(existsSync(join(root, "proc/sys/net/netfilter/nf_conntrack_max"))).toBe(false);
  });

  test("on the real kernel (needs root, as CI runs): widens ip_local_port_range, then restores it", () => {
    if (!isRoot) throw new Error("this test changes a sysctl and needs root: run npm test as root (CI does)");
    const path = "/proc/sys/net/ipv4/ip_local_port_range";
    const original = readFileSync(path, "utf8").trim();
    const per = ((r) => r.high - r.low + 1)(readLimits().portRange.value!);
    let applied: JsonReport["applied"] = [];
    try {
      // One more connection than one destination allows, unless the range is already the widest.
      const connections = Math.min(per + 1, 64512);
      const { report } = doctorJson(["--role", "client", "--connections", String(connections), "--targets", "127.0.0.1:8080", "--apply"]);
      applied = report.applied ?? [];
      if (per + 1 > 64512) {
        expect(applied.find((a) => a.key === "net.ipv4.ip_local_port_range")).toBeUndefined();
        return;
      }
      const a = applied.find((x) => x.key === "net.ipv4.ip_local_port_range")!;
      expect(a.before).toBe(original.replace(/\s+/g, " "));
      expect(a.after).toBe("1024 65535");
      expect(a.ok).toBe(true);
      expect(readFileSync(path, "utf8").trim().replace(/\s+/g, " ")).toBe("1024 65535");
      expect(report.findings.find((f) => f.id === "ports")!.status).not.toBe("fail");
    } finally {
      // Put back everything the run changed, the port range first.
      writeFileSync(path, `${original}\n`);
      for (const a of applied ?? []) {
        if (a.key !== "net.ipv4.ip_local_port_range" && a.before !== null && a.before !== a.after) writeFileSync(`/proc/sys/${a.key.replace(/\./g, "/")}`, `${a.before}\n`);
      }
      expect(readFileSync(path, "utf8").trim()).toBe(original);
    }
  });
});

describe("parseTargets via the CLI", () => {
  test("accepts every documented form", () => {
    for (const spec of ["127.0.0.1-16:8080", "127.0.0.1:8080-8083", "a:1,b:2", "ws://127.0.0.1:8080/ws"]) {
      expect(parseTargets(spec).length).toBeGreaterThan(0);
      const { report } = doctorJson(["--root", fixtureRoot("base"), "--role", "client", "--connections", "10", "--targets", spec]);
      expect(report.plan.targets.length).toBe(parseTargets(spec).length);
    }
  });
});
