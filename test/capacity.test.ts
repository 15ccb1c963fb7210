// The capacity model and plan check against prepared /proc + /sys fixtures, one limit at its edge per case;
// the target parser the load engine shares.
import { afterAll, describe, expect, test } from "bun:test";
import {
  COSTS,
  checkPlan,
  memoryFit,
  parseTargets,
  portsPerPair,
  processesFor,
  serverKernelWarnings,
  socketsPerProcess,
  startupWarnings,
  suggestTargets,
  loopbackTargets,
  type Finding,
  type PlanInput,
} from "../src/system/capacity.ts";
import { readLimits, type Limits } from "../src/system/limits.ts";
import { UsageError } from "../src/flags.ts";
import { CASES, cleanupFixtures, fixtureRoot, type Case } from "./fixtures/doctor/fixture.ts";

afterAll(cleanupFixtures);

const limitsOf = (name: Case): Limits => readLimits(fixtureRoot(name));
const find = (findings: Finding[], id: string): Finding => {
  const f = findings.find((x) => x.id === id);
  if (!f) throw new Error(`no finding ${id} in ${findings.map((x) => x.id).join(",")}`);
  return f;
};
const plan = (name: Case, input: PlanInput) => checkPlan(input, limitsOf(name));

describe("process arithmetic", () => {
  test("a process keeps 100 descriptors for itself", () => {
    expect(socketsPerProcess(20000)).toBe(19900);
    expect(socketsPerProcess(1024)).toBe(924);
    expect(socketsPerProcess(100)).toBe(0);
    expect(socketsPerProcess(50)).toBe(0);
  });

  test("processes at the edge of one process's sockets", () => {
    expect(processesFor(0, 20000)).toBe(0);
    expect(processesFor(19900, 20000)).toBe(1);
    expect(processesFor(19901, 20000)).toBe(2);
    expect(processesFor(1_000_000, 20000)).toBe(51);
    expect(processesFor(10, 100)).toBe(Infinity);
  });

  test("ports per pair is the range minus reserved ports inside it", () => {
    const l = limitsOf("base");
    expect(portsPerPair(l)).toBe(28232);
    expect(portsPerPair(limitsOf("narrow-ports"))).toBe(900);
    expect(portsPerPair({ portRange: l.portRange, reservedPorts: { value: [{ low: 60990, high: 61010 }, { low: 80, high: 80 }], source: "" } })).toBe(28232 - 10);
  });

  test("COSTS are the measured defaults", () => {
    expect(COSTS.serverBytes).toBe(1536);
    expect(COSTS.clientBytes).toBe(1536);
    expect(COSTS.kernelBytes).toBe(5120);
    expect(COSTS.processBytes).toBe(26 * 1024 * 1024);
    expect(COSTS.bothBytes).toBe(Math.round(8.2 * 1024));
  });

  test("memoryFit is exact: the answer fits and one more does not", () => {
    const budget = 512 * 1024 * 1024;
    for (const [perConn, perProc, per, sides] of [
      [6656, 26 << 20, 19900, 1],
      [13312, 26 << 20, 924, 2],
      [6656, 26 << 20, 100, 1],
    ] as const) {
      const n = memoryFit(budget, perConn, perProc, per, sides);
      const need = (k: number) => k * perConn + sides * Math.ceil(k / per) * perProc;
      expect(need(n)).toBeLessThanOrEqual(budget);
      expect(need(n + 1)).toBeGreaterThan(budget);
    }
    expect(memoryFit(Infinity, 1, 1, 1, 1)).toBe(Infinity);
    expect(memoryFit(1000, 0, 0, 10, 1)).toBe(Infinity);
  });
});

describe("plan check at each edge", () => {
  test("a million from one source to one destination: 36 pairs (16 with the widest range), 51 processes", () => {
    const { findings, capacity } = plan("base", { role: "client", connections: 1_000_000 });
    const ports = find(findings, "ports");
    expect(ports.status).toBe("fail");
    expect(ports.detail).toContain("need 36 pairs");
    expect(ports.detail).toContain("16 with the range widened to 1024-65535");
    expect(capacity.processes.client).toBe(51);
    expect(capacity.client.binding).toBe("ports");
    expect(capacity.fits).toBe(false);
  });

  test("ephemeral ports: 28,232 fit one target, 28,233 do not", () => {
    expect(find(plan("base", { role: "client", connections: 28232 }).findings, "ports").status).not.toBe("fail");
    const over = plan("base", { role: "client", connections: 28233 });
    expect(find(over.findings, "ports").status).toBe("fail");
    expect(over.capacity.client.max).toBe(28232);
  });

  test("targets multiply the port ceiling; a server uses no ephemeral ports", () => {
    const targets = parseTargets("127.0.0.1-36:8080");
    const ok = plan("base", { role: "client", connections: 1_000_000, targets });
    expect(find(ok.findings, "ports").status).not.toBe("fail");
    expect(ok.capacity.client.caps.find((c) => c.id === "ports")!.max).toBe(36 * 28232);
    const server = plan("base", { role: "server", connections: 1_000_000 });
    expect(find(server.findings, "ports").status).toBe("ok");
    expect(server.capacity.server.caps.some((c) => c.id === "ports")).toBe(false);
  });

  test("narrow port range with reserved ports", () => {
    const { findings, capacity } = plan("narrow-ports", { role: "client", connections: 1000, targets: parseTargets("127.0.0.1:8080") });
    expect(capacity.client.max).toBe(900);
    const ports = find(findings, "ports");
    expect(ports.status).toBe("fail");
    expect(ports.value).toContain("40000-40999");
    expect(ports.value).toContain("100 reserved");
    expect(ports.fix!.join("\n")).toContain('sysctl -w net.ipv4.ip_local_port_range="1024 65535"');
    expect(ports.sysctls).toEqual([{ key: "net.ipv4.ip_local_port_range", value: "1024 65535" }]);
  });

  test("low open-files limit: many processes, and their base memory binds", () => {
    const { findings, capacity } = plan("low-nofile", { role: "server", connections: 1_000_000 });
    expect(capacity.socketsPerProcess).toBe(924);
    expect(capacity.processes.server).toBe(1083);
    expect(capacity.server.binding).toBe("memory");
    expect(find(findings, "memory").status).toBe("fail");
    const nofile = find(findings, "nofile");
    expect(nofile.status).toBe("warn");
    expect(nofile.fix!.join("\n")).toContain("LimitNOFILE=");
    expect(nofile.fix!.join("\n")).toContain("docker run --ulimit nofile=");
    expect(nofile.fix!.join("\n")).toContain("cannot raise its hard limit");
  });

  test("the open-files limit alone never fails a plan: processes spread it", () => {
    const { findings } = plan("base", { role: "server", connections: 200_000 });
    expect(find(findings, "nofile").status).toBe("ok");
    expect(find(findings, "nofile").detail).toContain("11 processes");
  });

  test("conntrack table nearly full fails, with the count as the cap", () => {
    const { findings, capacity } = plan("conntrack-full", { role: "server", connections: 1000 });
    expect(find(findings, "conntrack").status).toBe("fail"); // > 90% used whatever the plan
    expect(capacity.server.caps.find((c) => c.id === "conntrack")!.max).toBe(5536);
    expect(find(findings, "conntrack").fix!.join("\n")).toContain("nf_conntrack_max=");
  });

  test("conntrack with count 0 does not cap, but a plan beyond the table warns", () => {
    const { findings, capacity } = plan("base", { role: "server", connections: 300_000 });
    expect(capacity.server.caps.some((c) => c.id === "conntrack")).toBe(false);
    const ct = find(findings, "conntrack");
    expect(ct.status).toBe("warn");
    expect(ct.detail).toContain("The count is 0");
    expect(find(plan("base", { role: "server", connections: 1000 }).findings, "conntrack").status).toBe("ok");
  });

  test("no conntrack module: ok, no table", () => {
    const f = find(plan("no-conntrack", { role: "both", connections: 1_000_000 }).findings, "conntrack");
    expect(f.status).toBe("ok");
    expect(f.value).toContain("not loaded");
  });

  test("tcp_mem: above pressure warns, at max fails", () => {
    const l = limitsOf("tcp-mem-low");
    expect(find(checkPlan({ role: "server", connections: 100 }, l).findings, "tcp_mem").status).toBe("warn");
    const full: Limits = { ...l, sockstat: { ...l.sockstat, value: { ...l.sockstat.value!, memPages: 3100 } } };
    const f = find(checkPlan({ role: "server", connections: 100 }, full).findings, "tcp_mem");
    expect(f.status).toBe("fail");
    expect(f.sysctls![0]!.key).toBe("net.ipv4.tcp_mem");
    // On the base box, a million idle connections fit, but one page each at once would not.
    const base = find(plan("base", { role: "both", connections: 1_000_000 }).findings, "tcp_mem");
    expect(base.status).toBe("warn");
    expect(find(plan("base", { role: "server", connections: 100_000 }).findings, "tcp_mem").status).toBe("ok");
  });

  test("small cgroup memory.max binds, and the plan at the ceiling fits", () => {
    const l = limitsOf("memory-small");
    const { capacity, findings } = checkPlan({ role: "server", connections: 1_000_000 }, l);
    expect(capacity.server.binding).toBe("memory");
    expect(capacity.server.caps[0]!.source).toBe("/sys/fs/cgroup/user.slice/test.scope/memory.max");
    expect(find(findings, "memory").status).toBe("fail");
    expect(find(findings, "memory").fix!.join("\n")).toContain("MemoryMax=");
    const max = capacity.server.max;
    expect(find(checkPlan({ role: "server", connections: max }, l).findings, "memory").status).not.toBe("fail");
    expect(find(checkPlan({ role: "server", connections: max + 1 }, l).findings, "memory").status).toBe("fail");
  });

  test("a wss client, and one keeping deflate windows, costs more memory per connection: fewer fit, and the finding says why", () => {
    const l = limitsOf("memory-small");
    const client = (x: Partial<PlanInput>) => checkPlan({ role: "client", connections: 1_000_000, ...x }, l);
    const plain = client({});
    const wss = client({ tls: true });
    const both = client({ tls: true, deflate: true });
    expect(wss.capacity.client.bytesPerConnection).toBe(plain.capacity.client.bytesPerConnection + COSTS.clientTlsBytes);
    expect(both.capacity.client.bytesPerConnection).toBe(wss.capacity.client.bytesPerConnection + COSTS.clientDeflateBytes);
    expect(wss.capacity.client.max).toBeLessThan(plain.capacity.client.max);
    expect(both.capacity.client.max).toBeLessThan(wss.capacity.client.max);
    expect(find(both.findings, "memory").detail).toContain(`(${Math.round((COSTS.clientBytes + COSTS.clientTlsBytes + COSTS.clientDeflateBytes) / 1024)} KiB user`);
    // The server side is not the client's: its figure does not move.
    expect(checkPlan({ role: "server", connections: 1000, tls: true, deflate: true }, l).capacity.server.bytesPerConnection).toBe(plain.capacity.server.bytesPerConnection);
  });

  test("small pids.max caps processes, so connections", () => {
    const l = limitsOf("pids-small");
    const { capacity } = checkPlan({ role: "both", connections: 100_000 }, l);
    // 54 free tasks / 6 threads = 9 processes: 9 x 19,900 as a server, 4 per side when both run here.
    expect(capacity.server.caps.find((c) => c.id === "pids")!.max).toBe(9 * 19900);
    expect(capacity.both.caps.find((c) => c.id === "pids")!.max).toBe(4 * 19900);
    expect(find(checkPlan({ role: "both", connections: 79_600 }, l).findings, "pids").status).not.toBe("fail");
    expect(find(checkPlan({ role: "both", connections: 79_601 }, l).findings, "pids").status).toBe("fail");
  });

  test("fs.file-max: both ends of a connection on one box are two files", () => {
    const l = limitsOf("file-max-low");
    const { capacity } = checkPlan({ role: "both", connections: 10 }, l);
    expect(capacity.server.caps.find((c) => c.id === "file-max")!.max).toBe(95000);
    expect(capacity.both.caps.find((c) => c.id === "file-max")!.max).toBe(47500);
    const f = find(checkPlan({ role: "both", connections: 47_501 }, l).findings, "file-max");
    expect(f.status).toBe("fail");
    expect(f.sysctls).toEqual([{ key: "fs.file-max", value: "131072" }]);
  });

  test("RLIMIT_NPROC binds a non-root user; root is exempt", () => {
    const { capacity, findings } = plan("nonroot", { role: "client", connections: 50_000, targets: parseTargets("127.0.0.1-4:8080") });
    // 60 tasks / 6 threads = 10 processes of 3,996 sockets (hard 4096).
    expect(capacity.client.caps.find((c) => c.id === "nproc")!.max).toBe(39960);
    expect(find(findings, "nproc").status).toBe("fail");
    expect(plan("base", { role: "client", connections: 10 }).capacity.client.caps.some((c) => c.id === "nproc")).toBe(false);
  });

  test("old defaults: small backlogs warn for a server, tcp_tw_reuse=0 warns for a client", () => {
    const server = plan("old-defaults", { role: "server", connections: 1000 }).findings;
    expect(find(server, "backlog").status).toBe("warn");
    expect(find(server, "backlog").sysctls!.map((s) => s.key)).toEqual(["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"]);
    const client = plan("old-defaults", { role: "client", connections: 1000 }).findings;
    expect(find(client, "tcp_tw_reuse").status).toBe("warn");
    expect(find(client, "backlog").status).toBe("ok");
  });

  test("tcp_tw_reuse=2 is enough on loopback, not for remote targets", () => {
    expect(find(plan("base", { role: "client", connections: 10, targets: parseTargets("127.0.0.1:80") }).findings, "tcp_tw_reuse").status).toBe("ok");
    expect(find(plan("base", { role: "client", connections: 10, targets: parseTargets("10.0.0.5:80") }).findings, "tcp_tw_reuse").status).toBe("warn");
  });

  test("a server port inside the ephemeral range warns, unless reserved", () => {
    const f = find(plan("base", { role: "both", connections: 10, targets: parseTargets("127.0.0.1:40000") }).findings, "server-ports");
    expect(f.status).toBe("warn");
    expect(f.fix!.join("\n")).toContain("net.ipv4.ip_local_reserved_ports=40000");
    expect(find(plan("narrow-ports", { role: "server", connections: 10, targets: parseTargets("127.0.0.1:40550") }).findings, "server-ports").status).toBe("ok");
  });

  test("cost overrides change the model", () => {
    const l = limitsOf("memory-small");
    const a = checkPlan({ role: "server", connections: 1 }, l).capacity.server.max;
    const b = checkPlan({ role: "server", connections: 1 }, l, { ...COSTS, kernelBytes: 10 * 1024 }).capacity.server.max;
    expect(b).toBeLessThan(a);
  });

  test("missing files: the model still answers", () => {
    const { findings, capacity } = checkPlan({ role: "both", connections: 1000 }, readLimits(fixtureRoot("empty")));
    expect(find(findings, "nofile").status).toBe("warn");
    expect(find(findings, "nofile").value).toContain("assumed 1024");
    expect(find(findings, "memory").status).toBe("warn");
    expect(capacity.socketsPerProcess).toBe(924);
    expect(capacity.both.caps.map((c) => c.id)).toEqual(["ports"]); // assumed default range
  });

  test("every fixture and role: each finding has a source and a status; fixes come with problems only", () => {
    for (const name of [...CASES, "empty" as const]) {
      const l = limitsOf(name);
      for (const role of ["server", "client", "both"] as const) {
        for (const f of checkPlan({ role, connections: 1_000_000 }, l).findings) {
          expect(["ok", "warn", "fail"]).toContain(f.status);
          expect(f.source.length).toBeGreaterThan(0);
          if (f.status === "ok") expect(f.fix).toBeUndefined();
        }
      }
    }
  });
});

describe("startupWarnings", () => {
  test("empty when the plan fits", () => {
    expect(startupWarnings({ role: "server", connections: 100_000 }, limitsOf("base"))).toEqual([]);
    expect(startupWarnings({ role: "client", connections: 1_000_000, targets: parseTargets("127.0.0.1-36:8080") }, limitsOf("base"))).toEqual([]);
  });

  test("one line per capping limit, with the exact way out", () => {
    const lines = startupWarnings({ role: "client", connections: 100_000 }, limitsOf("base"));
    expect(lines).toEqual([
      "limit: ephemeral ports 32768-60999 (28,232 per destination) with 1 target caps client at 28,232 of 100,000 connections; use --targets 127.0.0.1-4:8080 or widen net.ipv4.ip_local_port_range",
    ]);
  });

  test("processes: the open-files limit shows up through what its processes cost", () => {
    const lines = startupWarnings({ role: "server", connections: 1_000_000 }, limitsOf("low-nofile"));
    expect(lines.length).toBe(1);
    expect(lines[0]).toStartWith("limit: memory ");
    expect(lines[0]).toContain("1,000,000 connections take 1,083 processes of 924 sockets (open files 1,024)");
  });

  test("several limits, tightest first", () => {
    const lines = startupWarnings({ role: "both", connections: 1_000_000 }, limitsOf("pids-small"));
    expect(lines.map((l) => l.split(" ")[1])).toEqual(["ephemeral", "cgroup"]);
  });
});

describe("serverKernelWarnings", () => {
  test("a pool of workers on the base box: tcp_migrate_req and, with the clients here, the loopback queue; each with its sysctl", () => {
    const l = limitsOf("base");
    const lines = serverKernelWarnings({ connections: 210_000, port: 8080, clientsHere: true }, l);
    expect(lines.length).toBe(2);
    expect(lines[0]).toStartWith("kernel: net.ipv4.tcp_migrate_req is 0: a full server worker leaves the port group;");
    expect(lines[0]).toEndWith("; fix: sysctl -w net.ipv4.tcp_migrate_req=1");
    expect(lines[1]).toStartWith("kernel: net.core.netdev_max_backlog is 1,000 packets; 180 dropped since boot (with the clients on this machine): ");
    expect(lines[1]).toEndWith("; fix: sysctl -w net.core.netdev_max_backlog=65536");
    expect(serverKernelWarnings({ connections: 210_000, port: 8080, clientsHere: false }, l)).toEqual([lines[0]!]);
  });

  test("one worker needs no migration; a listening port inside the ephemeral range is warned unless the kernel picked it", () => {
    const l = limitsOf("base");
    expect(serverKernelWarnings({ connections: 1000, port: 8080, clientsHere: false }, l)).toEqual([]);
    expect(serverKernelWarnings({ connections: 1000, port: 40000, clientsHere: false }, l)).toEqual([
      "kernel: server ports vs ephemeral range is 40000 inside 32768-60999: keep outgoing connections off the server's listening ports; fix: sysctl -w net.ipv4.ip_local_reserved_ports=40000",
    ]);
    expect(serverKernelWarnings({ connections: 1000, port: 0, clientsHere: false }, l)).toEqual([]);
  });
});

describe("parseTargets", () => {
  const hosts = (spec: string) => parseTargets(spec).map((t) => `${t.host}:${t.port}`);

  test("last-octet range", () => {
    const t = parseTargets("127.0.0.1-16:8080");
    expect(t.length).toBe(16);
    expect(t[0]).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(t[15]).toEqual({ host: "127.0.0.16", port: 8080 });
  });

  test("port range, and both at once", () => {
    expect(hosts("127.0.0.1:8080-8083")).toEqual(["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]);
    expect(hosts("127.0.0.1-2:80-81")).toEqual(["127.0.0.1:80", "127.0.0.1:81", "127.0.0.2:80", "127.0.0.2:81"]);
  });

  test("comma lists, names, spaces, duplicates dropped", () => {
    expect(hosts(" a.example:80 , b-2.example:81,a.example:80")).toEqual(["a.example:80", "b-2.example:81"]);
    expect(hosts("127.0.0.1:80,127.0.0.1-2:80")).toEqual(["127.0.0.1:80", "127.0.0.2:80"]);
  });

  test("ws:// and wss:// URLs, default ports, IPv6, ranges inside", () => {
    expect(parseTargets("ws://127.0.0.1:9000/ws?x=1")).toEqual([{ host: "127.0.0.1", port: 9000 }]);
    expect(parseTargets("ws://localhost/")).toEqual([{ host: "localhost", port: 80 }]);
    expect(parseTargets("wss://example.com")).toEqual([{ host: "example.com", port: 443 }]);
    expect(parseTargets("ws://user:pw@h:81/")).toEqual([{ host: "h", port: 81 }]);
    expect(parseTargets("ws://[::1]:8080/x")).toEqual([{ host: "::1", port: 8080 }]);
    expect(parseTargets("[::1]:8080-8081").length).toBe(2);
    expect(parseTargets("WS://127.0.0.1-4:8080/path").length).toBe(4);
  });

  test.each([
    ["", "empty target"],
    ["127.0.0.1", "has no port"],
    ["127.0.0.1:", "bad port"],
    ["127.0.0.1:0", "outside 1-65535"],
    ["127.0.0.1:70000", "outside 1-65535"],
    ["127.0.0.1:8080-8079", "runs backwards"],
    ["127.0.0.16-1:80", "runs backwards"],
    ["127.0.0.1-300:80", "outside 0-255"],
    ["127.0.300.1:80", "octet above 255"],
    ["127.0-1.0.1:80", "outside the last octet"],
    ["http://127.0.0.1:80/", "ws:// or wss://"],
    ["::1:80", "bare IPv6"],
    ["[::1]80", "needs a port"],
    ["a,,b", "empty target"],
    ["h@st:80", "neither an address nor a name"],
    ["10.0.0.0-255:1-65535", "more than 65536"],
  ])("rejects %p (%s)", (spec, why) => {
    let err: unknown;
    try {
      parseTargets(spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    const msg = (err as Error).message;
    expect(msg).toStartWith("--targets: ");
    expect(msg).toContain(why);
    if (spec !== "" && !spec.includes(",,")) expect(msg).toContain("127.0.0.1-16:8080 (last-octet range)");
    expect(msg).not.toContain("\n");
  });

  test("the flag name in errors is the caller's", () => {
    expect(() => parseTargets("nope", "--addr")).toThrow(/^--addr: 'nope' has no port/);
  });

  test("suggestTargets grows loopback addresses, then ports", () => {
    expect(suggestTargets(1)).toBe("127.0.0.1:8080");
    expect(suggestTargets(36)).toBe("127.0.0.1-36:8080");
    expect(suggestTargets(300)).toBe("127.0.0.1-255:8080-8081");
    expect(suggestTargets(4, { host: "10.0.0.5", port: 9000 })).toBe("10.0.0.5:9000-9003");
    expect(suggestTargets(3, { host: "::1", port: 9000 })).toBe("[::1]:9000-9002");
    for (const n of [1, 2, 36, 255, 256, 300, 1000]) expect(parseTargets(suggestTargets(n)).length).toBeGreaterThanOrEqual(n);
  });

  test("loopbackTargets: distinct 127/8 hosts, never .0 or .255", () => {
    const t = loopbackTargets(600, 8080);
    expect(t[0]).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(t[253]!.host).toBe("127.0.0.254");
    expect(t[254]!.host).toBe("127.0.1.1");
    expect(new Set(t.map((x) => x.host)).size).toBe(600);
    for (const x of t) expect(x.host).not.toMatch(/\.(0|255)$/);
  });
});
