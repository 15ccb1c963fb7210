// The kernel's own TCP counters around a load run: how many SYNs a listener dropped, how many resets went
// out, whether TCP memory or a CPU's input queue overflowed. Connection failures name what the client saw
// (ECONNRESET, ETIMEDOUT); these say why the kernel did it. The million run's resets were traced by hand to
// `nstat` deltas and /proc/net/softnet_stat; this does it for every run: snapshots at phase boundaries, the
// deltas, and for each counter that moved its meaning, the likely cause and the doctor check whose fix
// applies (the fix itself comes from fixes.ts, never restated here).
//
// The counters are the whole machine's, not this process's: every program's TCP on it counts, both ends when
// the server runs here too. /proc/net/netstat and snmp are per network namespace (a process reads its own);
// softnet_stat is per CPU for every namespace.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { checkPlan, type Finding, type PlanInput } from "./capacity.ts";
import { LOOPBACK_BACKLOG } from "./findings.ts";
import { backlogAdvice, netdevBacklogAdvice, roundUp, tcpMemAdvice, type Advice } from "./fixes.ts";
import type { Limits } from "./limits.ts";

/** Counter name (nstat's spelling, e.g. TcpExtListenOverflows) -> value. */
export type TcpCounters = Record<string, number>;

/** Counter name -> how much it rose over a phase. */
export type TcpDeltas = Record<string, number>;

export type KernelPhase = "ramp" | "run" | "close";
export const KERNEL_PHASES: readonly KernelPhase[] = ["ramp", "run", "close"];

/** The doctor checks whose fixes these counters point at. */
export type CheckId = "backlog" | "netdev_backlog" | "tcp_mem";

/** Not an nstat name: the second column of /proc/net/softnet_stat, summed over CPUs. */
export const SOFTNET_DROPS = "SoftnetDrops";

export const SCOPE = "this machine (both ends if the server runs here)";

export interface CounterInfo {
  name: string;
  meaning: string;
  /**
   * A root is a queue or memory limit overflowing: worth a look whenever it moves, and its cause and check
   * are its own. A symptom (a retransmit, a reset) is explained by whichever root moved in the same run.
   */
  kind: "root" | "symptom";
  /** Roots: why it happens. Symptoms: the reading when no root moved. */
  cause: string;
  /** Roots only: the doctor check whose fix applies. */
  check: CheckId | null;
  /**
   * Resets happen on purpose too (a server refusing a client, a test closing abruptly, another program on
   * the box), so they are notable only when this run had failed or dropped connections to explain.
   */
  onlyWithFailures: boolean;
}

const ACCEPT_QUEUE =
  "the accept queue was too short for the ramp, or the server accepted too slowly: its length is the server's listen() backlog capped by net.core.somaxconn. " +
  "A dropped SYN is retried after 1 s, 3 s, 7 s (the dial times out: ETIMEDOUT); a dropped handshake ACK leaves the client connected to a socket the server " +
  "never accepts, which then resets (connection reset by peer right after the handshake)";
const SYN_QUEUE = "SYNs came faster than the listener's SYN queue (net.ipv4.tcp_max_syn_backlog, also capped by the accept backlog) could hold";
const NOT_EXPLAINED = "no queue, memory or softnet counter moved on this machine";

/** Every counter read, in the order the report lists them: roots first, then their symptoms. */
export const COUNTERS: readonly CounterInfo[] = [
  {
    name: "TcpExtListenOverflows", kind: "root", check: "backlog", onlyWithFailures: false,
    meaning: "a SYN or a handshake's last ACK reached a listener whose accept queue was full; the kernel dropped it",
    cause: ACCEPT_QUEUE,
  },
  {
    name: "TcpExtListenDrops", kind: "root", check: "backlog", onlyWithFailures: false,
    meaning: "everything listeners dropped: the accept-queue overflows plus SYNs refused for a full SYN queue or lack of memory",
    cause: ACCEPT_QUEUE,
  },
  {
    name: "TcpExtTCPReqQFullDrop", kind: "root", check: "backlog", onlyWithFailures: false,
    meaning: "SYNs dropped because a listener's SYN queue was full and SYN cookies were off",
    cause: SYN_QUEUE,
  },
  {
    name: "TcpExtSyncookiesSent", kind: "root", check: "backlog", onlyWithFailures: false,
    meaning: "a listener's SYN queue was full, so it answered SYNs with cookies instead of queueing them",
    cause: SYN_QUEUE,
  },
  {
    name: "TcpExtSyncookiesRecv", kind: "root", check: "backlog", onlyWithFailures: false,
    meaning: "handshakes completed from a SYN cookie (the SYN queue had overflowed)",
    cause: SYN_QUEUE,
  },
  {
    name: "TcpExtSyncookiesFailed", kind: "root", check: "backlog", onlyWithFailures: false,
    meaning: "handshake ACKs whose cookie did not check out: those handshakes were dropped (often ACKs for requests the SYN queue already dropped)",
    cause: SYN_QUEUE,
  },
  {
    name: SOFTNET_DROPS, kind: "root", check: "netdev_backlog", onlyWithFailures: false,
    meaning: "packets dropped because a CPU's input queue (net.core.netdev_max_backlog) was full (/proc/net/softnet_stat column 2: every network namespace's)",
    cause: "bursts of packets outran the per-CPU input queue; with both ends on this machine every loopback packet passes through it, so a ramp's SYNs and ACKs are lost there",
  },
  {
    name: "TcpExtTCPMemoryPressures", kind: "root", check: "tcp_mem", onlyWithFailures: false,
    meaning: "TCP's buffer memory crossed tcp_mem's pressure threshold: the kernel trims every socket's buffers",
    cause: "the sockets' queued bytes together reached net.ipv4.tcp_mem (in pages, for all sockets)",
  },
  {
    name: "TcpExtTCPAbortOnMemory", kind: "root", check: "tcp_mem", onlyWithFailures: false,
    meaning: "connections reset because TCP memory was over tcp_mem's maximum (or too many orphaned sockets) when they closed",
    cause: "TCP buffer memory at net.ipv4.tcp_mem's maximum",
  },
  {
    name: "TcpExtPruneCalled", kind: "root", check: "tcp_mem", onlyWithFailures: false,
    meaning: "a socket's receive queue went over its memory and the kernel had to collapse it or drop out-of-order data",
    cause: "a reader too slow for its traffic filled its receive buffer, or TCP memory was under pressure (tcp_mem)",
  },
  {
    name: "TcpExtTCPRcvQDrop", kind: "root", check: "tcp_mem", onlyWithFailures: false,
    meaning: "segments dropped because a socket's receive memory could not grow",
    cause: "TCP memory under pressure (tcp_mem), or a receive buffer full behind a slow reader",
  },
  {
    name: "TcpExtTCPSynRetrans", kind: "symptom", check: null, onlyWithFailures: false,
    meaning: "SYNs and SYN-ACKs sent again after no answer within a second: a handshake packet was lost",
    cause: `${NOT_EXPLAINED}: the packet was lost elsewhere (the network, or the server's machine)`,
  },
  {
    name: "TcpOutRsts", kind: "symptom", check: null, onlyWithFailures: true,
    meaning: "resets this machine sent (we reset: refusals, aborts, segments for unknown connections)",
    cause: `${NOT_EXPLAINED}: a program here reset them on purpose (see the failures and drops by cause)`,
  },
  {
    name: "TcpEstabResets", kind: "symptom", check: null, onlyWithFailures: true,
    meaning: "established connections that ended in a reset, sent or received (we reset, or we were reset)",
    cause: `${NOT_EXPLAINED}: an end reset them on purpose (see the drops by cause)`,
  },
  {
    name: "TcpAttemptFails", kind: "symptom", check: null, onlyWithFailures: true,
    meaning: "connects that failed during the handshake: refused, reset, or timed out (we were reset or refused)",
    cause: `${NOT_EXPLAINED}: the peer refused or reset them (see the failed dials by cause)`,
  },
  {
    name: "TcpExtEmbryonicRsts", kind: "symptom", check: null, onlyWithFailures: true,
    meaning: "resets a listener received for half-open connections (the client gave up during the handshake)",
    cause: `${NOT_EXPLAINED}: clients gave up on handshakes the server was slow to finish`,
  },
  {
    name: "TcpExtTCPAbortOnData", kind: "symptom", check: null, onlyWithFailures: true,
    meaning: "we reset: a socket closed abortively (SO_LINGER 0) or got data after its process closed it",
    cause: `${NOT_EXPLAINED}: a program here closed connections abortively (a client giving up on a dial does)`,
  },
  {
    name: "TcpExtTCPAbortOnClose", kind: "symptom", check: null, onlyWithFailures: true,
    meaning: "we reset: a process closed a socket with unread data in it",
    cause: `${NOT_EXPLAINED}: a program here closed connections without reading what had arrived`,
  },
  {
    name: "TcpExtTCPAbortOnTimeout", kind: "symptom", check: null, onlyWithFailures: true,
    meaning: "we reset: retransmissions or keepalives went unanswered until the kernel gave up",
    cause: `${NOT_EXPLAINED}: the peer vanished or the path lost packets for good`,
  },
];

// Parsing

/**
 * /proc/net/netstat and /proc/net/snmp: pairs of lines, a header (`TcpExt: SyncookiesSent ...`) then its
 * values (`TcpExt: 6818 ...`). Names come back prefixed as nstat prints them: TcpExtListenOverflows,
 * TcpOutRsts. A header without its value line, or a value that is not a number, is left out.
 */
export function parseNetstat(text: string): TcpCounters {
  const out: TcpCounters = {};
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [prefix, ...names] = lines[i]!.trim().split(/\s+/);
    const [again, ...values] = lines[i + 1]!.trim().split(/\s+/);
    if (prefix === undefined || prefix !== again || !prefix.endsWith(":")) continue;
    const section = prefix.slice(0, -1);
    names.forEach((name, j) => {
      const v = Number(values[j]);
      if (values[j] !== undefined && Number.isFinite(v)) out[section + name] = v;
    });
  }
  return out;
}

/** /proc/net/softnet_stat: one line per CPU of hex columns; the second is packets dropped for a full queue. */
export function parseSoftnet(text: string): TcpCounters {
  const drops = text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => Number.parseInt(l.trim().split(/\s+/)[1] ?? "", 16));
  return drops.length > 0 && drops.every(Number.isFinite) ? { [SOFTNET_DROPS]: drops.reduce((a, b) => a + b, 0) } : {};
}

const SOURCES: readonly { path: string; parse: (text: string) => TcpCounters }[] = [
  { path: "/proc/net/netstat", parse: parseNetstat },
  { path: "/proc/net/snmp", parse: parseNetstat },
  { path: "/proc/net/softnet_stat", parse: parseSoftnet },
];

export interface TcpSnapshot {
  counters: TcpCounters;
  /** Files that could not be read (not Linux, no /proc): their counters are missing. */
  unreadable: string[];
}

/** The counters this report uses, now. `root` points the reads at a fixture tree in tests. */
export function readTcpCounters(root = "/"): TcpSnapshot {
  const counters: TcpCounters = {};
  const unreadable: string[] = [];
  for (const s of SOURCES) {
    let text: string;
    try {
      text = readFileSync(root === "/" ? s.path : join(root, s.path), "utf8");
    } catch {
      unreadable.push(s.path);
      continue;
    }
    const all = s.parse(text);
    for (const c of COUNTERS) if (all[c.name] !== undefined) counters[c.name] = all[c.name]!;
  }
  return { counters, unreadable };
}

/** How much each counter known to both snapshots rose. Counters only rise, so a drop is a wrap: no figure. */
export function delta(before: TcpCounters, after: TcpCounters): TcpDeltas {
  const out: TcpDeltas = {};
  for (const c of COUNTERS) {
    const a = before[c.name];
    const b = after[c.name];
    if (a !== undefined && b !== undefined && b >= a) out[c.name] = b - a;
  }
  return out;
}

/** Snapshots at the phase boundaries of one run: the first when it is made, then one as each phase ends. */
export class PhaseCounters {
  readonly phases: Record<KernelPhase, TcpDeltas> = { ramp: {}, run: {}, close: {} };
  private last: TcpSnapshot;
  private readonly unreadable = new Set<string>();

  constructor(private readonly root = "/") {
    this.last = this.read();
  }

  end(phase: KernelPhase): void {
    const now = this.read();
    this.phases[phase] = delta(this.last.counters, now.counters);
    this.last = now;
  }

  unread(): string[] {
    return [...this.unreadable];
  }

  private read(): TcpSnapshot {
    const s = readTcpCounters(this.root);
    for (const u of s.unreadable) this.unreadable.add(u);
    return s;
  }
}

// What moved, and what to do about it

/** A doctor check as the report names it: `wsmillion doctor` shows the same id, title and value. */
export interface CheckRef {
  id: CheckId;
  title: string;
  /** Its reading on this machine when the run ended, e.g. "somaxconn 4096, tcp_max_syn_backlog 4096". */
  value: string;
}

export interface NotableCounter {
  counter: string;
  /** Over the whole run. */
  delta: number;
  /** The phases it rose in. */
  phases: KernelPhase[];
  meaning: string;
  likelyCause: string;
  /** A symptom's explanation: the root counter that moved in the same run and whose cause it shares. */
  explainedBy: string | null;
  /** The doctor check that covers it; null when no limit on this machine explains it. */
  check: CheckRef | null;
  /** That check's fix (commands, `#` lines say why); empty without a check. */
  fix: string[];
  /** What that check's advice says not to do instead. */
  avoid: string[];
}

export interface KernelReport {
  scope: string;
  /** Each phase's rise of every counter read (0 included); run covers traffic and hold. */
  phases: Record<KernelPhase, TcpDeltas>;
  /** Counters that moved and matter, with cause and fix; roots first. */
  notable: NotableCounter[];
  /** Files that could not be read: their counters are absent above. */
  unreadable: string[];
}

/** A notable counter before its check is looked up on this machine. */
export interface CounterReading {
  counter: string;
  delta: number;
  phases: KernelPhase[];
  meaning: string;
  likelyCause: string;
  explainedBy: string | null;
  check: CheckId | null;
}

function total(phases: Record<KernelPhase, TcpDeltas>, name: string): number {
  return KERNEL_PHASES.reduce((n, p) => n + (phases[p][name] ?? 0), 0);
}

/**
 * The counters that moved and matter, each with its cause. Roots are notable whenever they move; a symptom
 * takes the cause and check of the first root that moved in the same run (SYN retransmits after listen
 * overflows are those overflows), and resets count only when the run had failures or drops to explain.
 */
export function readings(phases: Record<KernelPhase, TcpDeltas>, failures: boolean): CounterReading[] {
  const moved = COUNTERS.filter((c) => total(phases, c.name) > 0);
  const root = moved.find((c) => c.kind === "root");
  return moved
    .filter((c) => !c.onlyWithFailures || failures)
    .map((c) => {
      const explained = c.kind === "symptom" && root !== undefined;
      return {
        counter: c.name,
        delta: total(phases, c.name),
        phases: KERNEL_PHASES.filter((p) => (phases[p][c.name] ?? 0) > 0),
        meaning: c.meaning,
        likelyCause: explained ? root.cause : c.cause,
        explainedBy: explained ? root.name : null,
        check: explained ? root.check : c.check,
      };
    });
}

/**
 * Each check's advice from fixes.ts, sized for a machine where the limit has just been hit. The doctor
 * sizes the same advice from a plan; here the counters say the current setting was too small already.
 */
function adviceFor(id: CheckId, l: Limits): Advice {
  switch (id) {
    case "backlog":
      return backlogAdvice();
    case "netdev_backlog":
      // Drops at the current setting: at least what the doctor suggests for loopback, at least double.
      return netdevBacklogAdvice(Math.max(LOOPBACK_BACKLOG, roundUp(2 * (l.netdevMaxBacklog.value ?? 0))));
    case "tcp_mem": {
      const t = l.tcpMem.value;
      // Unreadable: the check's value says so, and there is no current setting to raise.
      if (t === null) return { fix: [], avoid: [], sysctls: [] };
      // Pressure was reached at the current maximum: double it (the advice stops at half of RAM).
      return tcpMemAdvice({ needPages: 2 * t.high, current: t, memTotalPages: Math.floor((l.memTotal.value ?? 0) / (l.pageSize.value ?? 4096)) });
    }
  }
}

/**
 * The kernel section of a load report: the phases' deltas, and for what moved and matters, the doctor check
 * (its title and this machine's reading, for the plan as run) and its fix. `limits` is read only when some
 * counter needs a check.
 */
export function kernelReport(
  phases: Record<KernelPhase, TcpDeltas>,
  o: { failures: boolean; unreadable: string[]; plan: PlanInput; limits: () => Limits },
): KernelReport {
  const found = readings(phases, o.failures);
  let checks: { limits: Limits; findings: Map<string, Finding> } | null = null;
  const notable = found.map((r): NotableCounter => {
    if (r.check === null) return { ...r, check: null, fix: [], avoid: [] };
    if (checks === null) {
      const limits = o.limits();
      checks = { limits, findings: new Map(checkPlan(o.plan, limits).findings.map((f) => [f.id, f])) };
    }
    // The doctor runs these three checks for every role and plan, so the finding is always there.
    const f = checks.findings.get(r.check)!;
    const advice = adviceFor(r.check, checks.limits);
    return { ...r, check: { id: r.check, title: f.title, value: f.value }, fix: advice.fix, avoid: advice.avoid };
  });
  return { scope: SCOPE, phases, notable, unreadable: o.unreadable };
}
