// The fleet's plan split over its agents: what each can hold (the capacity model doctor uses, run on that
// agent's own limits), connections, dial rate and concurrency shared in proportion to it, and each share
// checked as `load` checks a plan on its own machine (open files per worker, ports per destination pair,
// memory). A plan that cannot work fails here, before anything dials, with one line per agent saying why.
//
// Each agent runs its share through the local engine, whose shardPlan interleaves its slots over its
// workers and spreads their sends evenly over the interval; the agents' segments [first, first + n) of the
// fleet's slots are contiguous and they all dial at once from one agreed instant, each at its share of the
// rate, so the fleet's ramp is spread over every machine in proportion at every moment.
import { UsageError } from "../flags.ts";
import { capacityFor } from "../system/capacity.ts";
import { count } from "../format.ts";
import { formatTarget } from "../system/targets.ts";
import { resolvePlan, resolveTargets, type LoadOptions } from "../load/plan-check.ts";
import type { LoadPlan } from "../load/plan.ts";
import type { AgentInfo, AgentShare } from "./protocol.ts";

export interface Candidate {
  name: string;
  info: AgentInfo;
}

export interface Assignment {
  name: string;
  share: AgentShare;
  /** The agent's own plan: its share, its workers sized for its open-files limit, no status URL (the coordinator asks the server). */
  plan: LoadPlan;
  /** Connections its machine holds for this plan, and the limit that binds first there. */
  capacity: number;
  binding: string;
}

export interface FleetPlan {
  fleet: LoadPlan;
  assignments: Assignment[];
  warnings: string[];
}

/** Splits `total` in proportion to `weights` (largest remainder: the parts add up to it exactly). */
export function apportion(total: number, weights: number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum <= 0) return weights.map((_, i) => (i === 0 ? total : 0));
  const exact = weights.map((w) => (total * w) / sum);
  const parts = exact.map(Math.floor);
  let left = total - parts.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => [e - Math.floor(e), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of order) {
    if (left <= 0) break;
    parts[i]!++;
    left--;
  }
  return parts;
}

/** A fleet-wide cap shared like the connections, at least 1 for every agent that has connections (0 stays 0: no cap). */
function shareCap(total: number, conns: number[]): number[] {
  if (total <= 0) return conns.map(() => 0);
  return apportion(total, conns).map((v, i) => (conns[i]! > 0 ? Math.max(1, v) : 0));
}

export function splitPlan(o: LoadOptions, agents: Candidate[]): FleetPlan {
  if (o.source) throw new UsageError("--source cannot be used with --agents: each agent dials from its own machine's addresses");
  const { targets } = resolveTargets(o);
  const caps = agents.map((a) => {
    const c = capacityFor({ role: "client", connections: o.connections, targets }, a.info.limits).client;
    const first = c.caps[0];
    return { max: c.max, binding: first ? `${first.label}` : "no known limit" };
  });
  const usable = caps.map((c) => Math.min(c.max, o.connections));
  const holds = usable.reduce((a, b) => a + b, 0);
  if (holds < o.connections) {
    const each = agents.map((a, i) => `  ${a.name}: ${count(usable[i]!)} (bound by ${caps[i]!.binding})`);
    throw new UsageError(`the plan needs ${count(o.connections)} connections and the ${agents.length} agents hold ${count(holds)}:\n${each.join("\n")}\n(add agents, lift the binding limit on them, or lower --connections)`);
  }
  // In proportion to what each holds, so every machine runs at the same share of its capacity (one with no
  // known limit weighs as if it held the whole plan several times over).
  const conns = apportion(o.connections, caps.map((c) => (Number.isFinite(c.max) ? c.max : o.connections * agents.length)));
  const rates = shareCap(o.rate, conns);
  const concurrency = shareCap(o.concurrency, conns);

  const warnings = new Set<string>();
  const problems: string[] = [];
  const assignments: Assignment[] = [];
  let first = 0;
  agents.forEach((a, i) => {
    const share: AgentShare = { index: i, agents: agents.length, first, connections: conns[i]!, rate: rates[i]!, concurrency: concurrency[i]! };
    first += share.connections;
    try {
      const r = resolvePlan({ ...o, connections: Math.max(1, share.connections), rate: share.rate, concurrency: Math.max(1, share.concurrency), statusUrl: "off" }, a.info.limits);
      for (const w of r.warnings) warnings.add(`${a.name}: ${w}`);
      assignments.push({ name: a.name, share, plan: { ...r.plan, connections: share.connections }, capacity: caps[i]!.max, binding: caps[i]!.binding });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      for (const line of err.message.split("\n")) if (!line.startsWith("(plan check failed")) problems.push(`agent ${a.name}: ${line}`);
    }
  });
  if (problems.length > 0) throw new UsageError(`${problems.join("\n")}\n(plan check failed on the agents; fix the above, or pass --no-check to dial anyway)`);

  const plan0 = assignments[0]!.plan;
  const fleet: LoadPlan = {
    ...plan0,
    connections: o.connections,
    concurrency: Math.min(o.concurrency, o.connections),
    rate: o.rate,
    workers: assignments.reduce((n, a) => n + a.plan.workers, 0),
    statusUrl: o.statusUrl === "off" ? null : (o.statusUrl ?? `http://${formatTarget(targets[0]!)}/conns`),
  };
  return { fleet, assignments, warnings: [...warnings] };
}
