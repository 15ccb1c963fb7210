// The advice: for each limit, the exact commands that lift it and the folklore to avoid, plus `--apply`
// (runtime sysctls, written through /proc/sys) and `--persist` (/etc/sysctl.d). Kept apart from the
// model so the text can be read and reviewed in one place.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** One runtime kernel setting, in `sysctl` key form. */
export interface Sysctl {
  key: string;
  value: string;
}

export interface Advice {
  fix: string[];
  avoid: string[];
  sysctls: Sysctl[];
}

/** The widest ephemeral range that stays clear of the privileged ports. */
export const WIDE_PORT_RANGE = { low: 1024, high: 65535 };

/** The file `--persist` writes; 90- sorts after distribution defaults so ours win. */
export const PERSIST_FILE = "/etc/sysctl.d/90-wsmillion.conf";

/**
 * `sysctl -w` takes one key=value per argument, so a multi-number value must be quoted: the classic
 * `sysctl -w net.ipv4.ip_local_port_range=1024 65535` fails with "cannot stat /proc/sys/65535".
 */
export function sysctlCommand(s: Sysctl): string {
  return s.value.includes(" ") ? `sysctl -w ${s.key}="${s.value}"` : `sysctl -w ${s.key}=${s.value}`;
}

function persistLine(settings: Sysctl[]): string {
  const lines = settings.map((s) => `${s.key} = ${s.value}`).join("\\n");
  return `printf '${lines}\\n' >> ${PERSIST_FILE} && sysctl --system   # or: wsmillion doctor --apply --persist`;
}

/** Runtime commands, then the line that makes them survive a reboot. */
function sysctlFix(settings: Sysctl[], why: string): string[] {
  return [`# ${why}`, ...settings.map(sysctlCommand), persistLine(settings)];
}

/** The next power of two at or above n: round values the kernel hashes well and people recognise. */
export function roundUp(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/**
 * A new value for a table-like limit: room for the need plus a fifth (so the check stops warning, which
 * it does past 80%), rounded up, and never below what is set now.
 */
export function raiseTo(need: number, current: number): number {
  return Math.max(current, roundUp(need / 0.8));
}

const NO_RECYCLE = "net.ipv4.tcp_tw_recycle: removed in Linux 4.12; while it existed it dropped connections from clients behind NAT. Old guides that set it fail on current kernels.";
const TW_REUSE_IS_NOT_PORTS =
  "net.ipv4.tcp_tw_reuse does not add ports: it lets a new outgoing connection take a port whose previous connection sits in TIME_WAIT (when TCP timestamps show it is safe). It helps reconnect churn, not the number of open connections.";
const FIN_TIMEOUT_IS_NOT_TIME_WAIT = "Lowering net.ipv4.tcp_fin_timeout: it bounds FIN_WAIT_2 only; TIME_WAIT is fixed at 60 s in the kernel (TCP_TIMEWAIT_LEN).";

export function portsAdvice(o: { needPairs: number; havePairs: number; suggest: string; wideNeedPairs: number; wideSuggest: string; range: string; serverPort: number }): Advice {
  const wide: Sysctl = { key: "net.ipv4.ip_local_port_range", value: `${WIDE_PORT_RANGE.low} ${WIDE_PORT_RANGE.high}` };
  const fix: string[] = [
    `# spread over more destinations: each (address, port) pair brings a whole port range ${o.range}; ${o.needPairs} pairs needed, ${o.havePairs} given (suggestions leave a fifth spare)`,
    `wsmillion load --targets ${o.suggest} ...   # every 127.x.y.z answers on loopback when the server listens on 0.0.0.0`,
    ...sysctlFix([wide], `or widen the range (then ${o.wideNeedPairs} pair${o.wideNeedPairs === 1 ? "" : "s"}: --targets ${o.wideSuggest}); quote the two numbers`),
  ];
  if (o.serverPort >= WIDE_PORT_RANGE.low) {
    fix.push(
      `# the server's port ${o.serverPort} falls inside the widened range: reserve it so outgoing connections leave it alone`,
      sysctlCommand({ key: "net.ipv4.ip_local_reserved_ports", value: String(o.serverPort) }),
    );
  }
  return {
    fix,
    avoid: [
      NO_RECYCLE,
      TW_REUSE_IS_NOT_PORTS,
      "Binding a source address for every connection: the kernel then searches for a free port on each connect() (measured 2.6K vs 7.4K connections/s) and the range becomes per source; spread over destinations instead.",
    ],
    sysctls: [wide],
  };
}

export function reservedPortsAdvice(ports: number[]): Advice {
  const s: Sysctl = { key: "net.ipv4.ip_local_reserved_ports", value: ports.slice(0, 8).join(",") };
  return { fix: sysctlFix([s], "keep outgoing connections off the server's listening ports"), avoid: [], sysctls: [s] };
}

export function nofileAdvice(o: { target: number; nrOpen: number | null; canRaiseHard: boolean }): Advice {
  const n = o.target;
  const fix = [
    `# fewer, larger processes: each Bun process costs its base memory and threads`,
    o.canRaiseHard ? `ulimit -Hn ${n} && ulimit -Sn ${n}   # this shell and its children` : `# this process cannot raise its hard limit (no CAP_SYS_RESOURCE); raise it where the process is started:`,
    `# systemd service ([Service] section; services ignore limits.conf): LimitNOFILE=${n}`,
    `# /etc/security/limits.conf (PAM logins; '*' does not match root): '* soft nofile ${n}', '* hard nofile ${n}', 'root soft nofile ${n}', 'root hard nofile ${n}'`,
    `docker run --ulimit nofile=${n}:${n} ...`,
  ];
  const sysctls: Sysctl[] = [];
  if (o.nrOpen !== null && n > o.nrOpen) {
    const s = { key: "fs.nr_open", value: String(roundUp(n)) };
    sysctls.push(s);
    fix.unshift(...sysctlFix([s], `fs.nr_open (${o.nrOpen}) caps every hard limit; raise it first`));
  }
  return {
    fix,
    avoid: [`A nofile above fs.nr_open${o.nrOpen === null ? "" : ` (${o.nrOpen})`}: setrlimit fails, and in limits.conf it makes pam_limits refuse every login.`],
    sysctls,
  };
}

export function fileMaxAdvice(need: number, current: number): Advice {
  const s = { key: "fs.file-max", value: String(raiseTo(need, current)) };
  return { fix: sysctlFix([s], "system-wide open files; each socket is one"), avoid: [], sysctls: [s] };
}

export function conntrackAdvice(o: { need: number; current: number; port: number | null }): Advice {
  const s = { key: "net.netfilter.nf_conntrack_max", value: String(raiseTo(o.need, o.current)) };
  const fix = sysctlFix([s], "one table entry per tracked connection; a full table drops new connections ('nf_conntrack: table full' in dmesg)");
  if (o.port !== null) {
    fix.push(
      `# or keep test traffic out of the table (only if no firewall rule needs its state):`,
      `for c in PREROUTING OUTPUT; do for d in --dport --sport; do iptables -t raw -A $c -p tcp $d ${o.port} -j CT --notrack; done; done`,
    );
  }
  return { fix, avoid: ["Unloading nf_conntrack or flushing the table on a box whose firewall or NAT depends on it."], sysctls: [s] };
}

export function tcpMemAdvice(o: { needPages: number; current: { low: number; pressure: number; high: number }; memTotalPages: number }): Advice {
  // Never suggest letting socket buffers take more than half of RAM: the connections need the rest.
  const cap = o.memTotalPages > 0 ? Math.floor(o.memTotalPages / 2) : o.needPages;
  const high = Math.max(o.current.high, Math.min(o.needPages, cap));
  const pressure = Math.max(o.current.pressure, Math.floor((high * 3) / 4));
  const s = { key: "net.ipv4.tcp_mem", value: `${o.current.low} ${pressure} ${high}` };
  return {
    fix: sysctlFix([s], "tcp_mem is in pages for all sockets together (low, pressure, max); the suggestion stops at half of RAM"),
    avoid: ["Shrinking tcp_rmem/tcp_wmem to save memory on idle connections: idle sockets hold no buffers; it only slows busy ones."],
    sysctls: [s],
  };
}

export function memoryAdvice(o: { cgroup: boolean; processes: number }): Advice {
  const fix = ["# fewer connections per box, or more memory"];
  if (o.cgroup) fix.push("# raise the cgroup limit: systemd MemoryMax=, docker run --memory=..., or write memory.max (v2) / memory.limit_in_bytes (v1)");
  if (o.processes > 1) fix.push(`# raise the open-files limit so fewer processes (now ${o.processes}) carry the connections; each costs its base memory`);
  return { fix, avoid: ["Counting on swap: socket memory is kernel memory and is never swapped."], sysctls: [] };
}

export function pidsAdvice(o: { cgroupDir: string }): Advice {
  return {
    fix: [
      "# tasks (threads) allowed in the cgroup; each Bun process runs several threads",
      "systemctl set-property <unit> TasksMax=infinity   # systemd",
      "docker run --pids-limit=-1 ...                    # docker",
      `echo max > ${o.cgroupDir}/pids.max                # cgroup v1/v2 by hand`,
      "# or raise the open-files limit so fewer processes are needed",
    ],
    avoid: [],
    sysctls: [],
  };
}

export function nprocAdvice(n: number): Advice {
  return {
    fix: [`ulimit -u ${n}   # or in /etc/security/limits.conf: '<user> soft nproc ${n}', '<user> hard nproc ${n}'; systemd: LimitNPROC=${n}`],
    avoid: [],
    sysctls: [],
  };
}

export function twReuseAdvice(): Advice {
  const s = { key: "net.ipv4.tcp_tw_reuse", value: "1" };
  return {
    fix: sysctlFix([s], "1: outgoing connections may reuse a TIME_WAIT port when timestamps make it safe; 2 (the default) does so on loopback only"),
    avoid: [NO_RECYCLE, TW_REUSE_IS_NOT_PORTS],
    sysctls: [s],
  };
}

export function twRecycleAdvice(): Advice {
  const s = { key: "net.ipv4.tcp_tw_recycle", value: "0" };
  return { fix: sysctlFix([s], "tcp_tw_recycle drops connections from clients behind NAT; turn it off"), avoid: [NO_RECYCLE], sysctls: [s] };
}

export function backlogAdvice(): Advice {
  const s = [
    { key: "net.core.somaxconn", value: "4096" },
    { key: "net.ipv4.tcp_max_syn_backlog", value: "4096" },
  ];
  return {
    fix: sysctlFix(s, "queues for connections not yet accepted; when they overflow during a ramp, clients wait 1 s, 3 s, 7 s for SYN retries"),
    avoid: ["Expecting somaxconn alone to lengthen the queue: it caps the backlog the server passes to listen(); the kernel takes the smaller of the two."],
    sysctls: s,
  };
}

export function migrateReqAdvice(): Advice {
  const s = { key: "net.ipv4.tcp_migrate_req", value: "1" };
  return {
    fix: sysctlFix([s], "a full server worker leaves the port group; with this on, connections queued on its listener move to another worker instead of being reset"),
    avoid: [],
    sysctls: [s],
  };
}

export function netdevBacklogAdvice(value: number): Advice {
  const s = { key: "net.core.netdev_max_backlog", value: String(value) };
  return {
    fix: sysctlFix([s], "every loopback packet waits in this per-CPU queue; a ramp's bursts overflow the default 1000, and a dropped SYN costs a 1 s retransmit or a reset"),
    avoid: [],
    sysctls: [s],
  };
}

export function finTimeoutAvoid(): string[] {
  return [FIN_TIMEOUT_IS_NOT_TIME_WAIT];
}

export interface Applied {
  key: string;
  before: string | null;
  after: string | null;
  ok: boolean;
  error?: string;
}

function sysctlPath(key: string, root: string): string {
  return join(root, "proc/sys", key.replace(/\./g, "/"));
}

function readValue(path: string): string | null {
  try {
    return readFileSync(path, "utf8").trim().replace(/\s+/g, " ");
  } catch {
    return null;
  }
}

/** Later settings for the same key win, so a list built from several findings applies each key once. */
function dedupe(settings: Sysctl[]): Sysctl[] {
  return [...new Map(settings.map((s) => [s.key, s])).values()];
}

function rootCheck(root: string): string | null {
  // A fixture root is a plain directory tree: writing there needs no privilege.
  if (root !== "/") return null;
  return process.getuid?.() === 0 ? null : "needs root (run with sudo)";
}

/** Writes each setting through /proc/sys (no dependency on the sysctl binary) and reads it back. */
export function applySysctls(settings: Sysctl[], root = "/"): Applied[] {
  const denied = rootCheck(root);
  return dedupe(settings).map((s) => {
    const path = sysctlPath(s.key, root);
    const before = readValue(path);
    if (before === null) return { key: s.key, before, after: null, ok: false, error: `${path} is absent` };
    if (denied) return { key: s.key, before, after: before, ok: false, error: denied };
    if (before === s.value) return { key: s.key, before, after: before, ok: true };
    try {
      writeFileSync(path, `${s.value}\n`);
    } catch (err) {
      // EROFS inside most containers (read-only /proc/sys), EINVAL for values the kernel rejects.
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      return { key: s.key, before, after: readValue(path), ok: false, error: `write failed: ${code}` };
    }
    const after = readValue(path);
    return { key: s.key, before, after, ok: after === s.value, ...(after === s.value ? {} : { error: `kernel kept '${after}'` }) };
  });
}

/** One change as people read it: `key: before -> after`, and why it did not take when it did not. */
export function describeChange(a: Applied): string {
  return `${a.key}: ${a.before ?? "?"} -> ${a.after ?? "?"}${a.ok ? "" : `  (${a.error})`}`;
}

/**
 * Puts back what applySysctls changed (and only that), unless someone else changed it since: a value that
 * no longer reads as ours is theirs now. Returns what was restored.
 */
export function restoreSysctls(applied: Applied[], root = "/"): Applied[] {
  const out: Applied[] = [];
  for (const a of applied) {
    if (!a.ok || a.before === null || a.after === null || a.before === a.after) continue;
    const path = sysctlPath(a.key, root);
    if (readValue(path) !== a.after) continue;
    try {
      writeFileSync(path, `${a.before}\n`);
    } catch (err) {
      out.push({ key: a.key, before: a.after, after: readValue(path), ok: false, error: `write failed: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
      continue;
    }
    const now = readValue(path);
    out.push({ key: a.key, before: a.after, after: now, ok: now === a.before });
  }
  return out;
}

export interface Persisted {
  path: string;
  content: string;
  ok: boolean;
  error?: string;
}

/** Merges the settings into our own sysctl.d file (other keys already there are kept). */
export function persistSysctls(settings: Sysctl[], root = "/"): Persisted {
  const path = join(root, PERSIST_FILE);
  const existing = existsSync(path) ? readFileSync(path, "utf8") : "";
  const merged = new Map<string, string>();
  for (const line of existing.split("\n")) {
    const m = /^\s*([\w.-]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) merged.set(m[1]!, m[2]!);
  }
  for (const s of settings) merged.set(s.key, s.value);
  const content = [
    "# Written by `wsmillion doctor --persist`. Loaded at boot by systemd-sysctl; load now with `sysctl --system`.",
    ...[...merged].map(([k, v]) => `${k} = ${v}`),
    "",
  ].join("\n");
  const denied = rootCheck(root);
  if (denied) return { path, content, ok: false, error: denied };
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
    return { path, content, ok: true };
  } catch (err) {
    return { path, content, ok: false, error: `write failed: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
}
