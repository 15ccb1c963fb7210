// `wsmillion doctor`: limits -> capacity model -> findings + fixes, as a table or one JSON document.
// Exit 0 when the plan fits, 1 when a check fails for it (2 for usage errors, from cli.ts).
import { Option, type Command } from "commander";
import { COSTS, ROLES, checkPlan, formatTarget, parseTargets, type Capacity, type Costs, type Finding, type PlanInput, type Role, type Target } from "../system/capacity.ts";
import { applySysctls, describeChange, persistSysctls, type Applied, type Persisted, type Sysctl } from "../system/fixes.ts";
import { readLimits, type Limits } from "../system/limits.ts";
import { renderTable } from "../report/table.ts";
import { bytes as bytesFlag, choice, integer } from "../flags.ts";
import { bytes, count } from "../format.ts";

interface DoctorFlags {
  role: Role;
  connections: number;
  targets?: Target[];
  json: boolean;
  apply: boolean;
  persist: boolean;
  costServer: number;
  costClient: number;
  costKernel: number;
  costProcess: number;
  root: string;
}

export interface DoctorReport {
  plan: { role: Role; connections: number; targets: string[]; targetsAssumed: boolean };
  fits: boolean;
  capacity: Capacity;
  findings: Finding[];
  applied?: Applied[];
  persisted?: Persisted;
  limits: Limits;
}

/** The sysctls behind every fix shown (warn or fail), which is what `--apply` runs. */
export function sysctlsToApply(findings: Finding[]): Sysctl[] {
  return findings.filter((f) => f.status !== "ok").flatMap((f) => f.sysctls ?? []);
}

export function runDoctor(f: DoctorFlags): DoctorReport {
  const costs: Costs = { ...COSTS, serverBytes: f.costServer, clientBytes: f.costClient, kernelBytes: f.costKernel, processBytes: f.costProcess };
  const input: PlanInput = { role: f.role, connections: f.connections, ...(f.targets ? { targets: f.targets } : {}) };
  let limits = readLimits(f.root);
  let result = checkPlan(input, limits, costs);
  let applied: Applied[] | undefined;
  let persisted: Persisted | undefined;
  if (f.apply || f.persist) {
    const settings = sysctlsToApply(result.findings);
    if (f.apply) {
      applied = applySysctls(settings, f.root);
      // Judge the plan against what the kernel holds now, not what it held before.
      limits = readLimits(f.root);
      result = checkPlan(input, limits, costs);
    }
    if (f.persist && settings.length > 0) persisted = persistSysctls(settings, f.root);
  }
  return {
    plan: { role: f.role, connections: f.connections, targets: result.capacity.targets.map(formatTarget), targetsAssumed: result.capacity.targetsAssumed },
    fits: !result.findings.some((x) => x.status === "fail"),
    capacity: result.capacity,
    findings: result.findings,
    ...(applied ? { applied } : {}),
    ...(persisted ? { persisted } : {}),
    limits,
  };
}

/** JSON has no Infinity: unlimited figures are spelled out. */
export function toJson(report: DoctorReport): string {
  return JSON.stringify(report, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? (Number.isNaN(v) ? null : "unlimited") : v), 2);
}

const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: number, s: string) => (colour ? `\x1b[${code}m${s}\x1b[0m` : s);
const STATUS: Record<Finding["status"], string> = { ok: "ok", warn: paint(33, "WARN"), fail: paint(31, "FAIL") };

const ROLE_TEXT: Record<Role, string> = { server: "as a server", client: "as a client", both: "both on one box" };

export function renderText(r: DoctorReport): string {
  const c = r.capacity;
  const out: string[] = [];
  const targets = r.plan.targetsAssumed ? `1 target assumed (${r.plan.targets[0]})` : `${r.plan.targets.length} target${r.plan.targets.length === 1 ? "" : "s"}`;
  out.push(`wsmillion doctor: ${count(r.plan.connections)} connections, ${ROLE_TEXT[r.plan.role]}, ${targets}`, "");

  if (r.applied) {
    out.push(r.applied.length === 0 ? "--apply: no sysctl limits this plan; nothing to change" : "--apply (runtime only, gone at reboot unless persisted):");
    for (const a of r.applied) out.push(`  ${describeChange(a)}`);
    out.push("");
  }
  if (r.persisted) out.push(r.persisted.ok ? `--persist: wrote ${r.persisted.path}` : `--persist: ${r.persisted.path} not written (${r.persisted.error})`, "");

  out.push(renderTable(["STATUS", "CHECK", "VALUE", "SOURCE"], r.findings.map((f) => [STATUS[f.status], f.title, f.value, f.source])), "");

  const k = c.costs;
  out.push(`Capacity (costs per connection: server ${bytes(k.serverBytes)}, client ${bytes(k.clientBytes)}, kernel ${bytes(k.kernelBytes)} per socket; ${bytes(k.processBytes)} per process; override with --cost-*)`);
  const rows = (["server", "client", "both"] as const).map((role) => {
    const rc = c[role];
    const cap = rc.caps[0];
    return [ROLE_TEXT[role], count(rc.max), bytes(rc.bytesPerConnection), cap ? cap.label : "no known limit"];
  });
  out.push(renderTable(["ROLE", "CONNECTIONS", "PER CONN", "BOUND FIRST BY"], rows, { align: ["left", "right", "right", "left"] }), "");

  const p = c.processes;
  const procs = r.plan.role === "both" ? `${count(p.server)} server + ${count(p.client)} load processes` : `${count(p.total)} process${p.total === 1 ? "" : "es"}`;
  const failed = r.findings.filter((f) => f.status === "fail");
  out.push(
    r.fits
      ? `Plan fits: ${count(r.plan.connections)} connections ${ROLE_TEXT[r.plan.role]} on ${procs} of ${count(c.socketsPerProcess)} sockets; the ceiling is ${count(c[r.plan.role].max)}${c[r.plan.role].caps[0] ? `, set by ${c[r.plan.role].caps[0]!.label}` : ""}.`
      : `Plan does not fit: ${failed.map((f) => f.title).join(", ")}. See the fixes below.`,
  );

  const fixes = r.findings.filter((f) => f.status !== "ok" && f.fix);
  if (fixes.length > 0) {
    out.push("", "Fixes (as root)");
    for (const f of fixes) {
      out.push(`${STATUS[f.status]} ${f.title}: ${f.detail}`);
      for (const line of f.fix ?? []) out.push(`    ${line}`);
    }
  }
  const avoid = [...new Set(r.findings.flatMap((f) => f.avoid ?? []))];
  if (avoid.length > 0) {
    out.push("", "Avoid");
    for (const a of avoid) out.push(`  - ${a}`);
  }
  return out.join("\n");
}

/** A byte-size option whose default shows as 1.5 KiB rather than 1536. */
function costOption(flags: string, description: string, fallback: number): Option {
  const flag = flags.split(" ")[0]!;
  return new Option(flags, description).argParser(bytesFlag(flag, 0)).default(fallback, bytes(fallback));
}

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("check this machine's limits for a connection plan: capacity, what binds first, and the exact fixes")
    .option("--role <role>", `which side runs here: ${ROLES.join(", ")}`, choice("--role", ROLES), "both" as Role)
    .option("--connections <n>", "connections the plan needs", integer("--connections", 1), 1_000_000)
    .option("--targets <spec>", "destinations: 127.0.0.1-16:8080, 127.0.0.1:8080-8083, a,b lists, ws://host:port/path (default: one, 127.0.0.1:8080)", (raw: string) => parseTargets(raw, "--targets"))
    .option("--json", "print one JSON document instead of the table", false)
    .option("--apply", "as root, apply the runtime sysctls from the fixes and show before and after", false)
    .option("--persist", `as root, also write the sysctls to /etc/sysctl.d/90-wsmillion.conf`, false)
    .addOption(costOption("--cost-server <size>", "user-space bytes per server connection (Bun.serve, measured)", COSTS.serverBytes))
    .addOption(costOption("--cost-client <size>", "user-space bytes per client connection (raw Bun socket, measured)", COSTS.clientBytes))
    .addOption(costOption("--cost-kernel <size>", "kernel bytes per socket; a connection with both ends here has two", COSTS.kernelBytes))
    .addOption(costOption("--cost-process <size>", "bytes per Bun process before any connection", COSTS.processBytes))
    // Points every read (and --apply) at a fixture tree; for tests.
    .addOption(new Option("--root <dir>", "read /proc and /sys under this directory").default("/").hideHelp())
    .action((flags: DoctorFlags) => {
      const report = runDoctor(flags);
      console.log(flags.json ? toJson(report) : renderText(report));
      process.exitCode = report.fits ? 0 : 1;
    });
}
