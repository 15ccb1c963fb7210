// `wsmillion load ... --redis URL --agents N`: the command becomes the coordinator of N agents
// (agents/remote.ts). Its flags, the live line with each agent's state, the fleet report and the exit
// codes: 0 plan met, 1 not met, 2 the run could not be set up, 3 a partial run (an agent lost), 130 Ctrl-C.
import type { Command } from "commander";
import { writeFileSync } from "node:fs";
import { runRemoteLoad } from "../agents/remote.ts";
import { BusError } from "../bus/redis.ts";
import { parseRedisUrl, RedisUrlError, type RedisUrl } from "../bus/url.ts";
import { UsageError, integer, seconds } from "../flags.ts";
import type { LoadOptions } from "../load/plan-check.ts";
import { FleetPrinter, renderFleetReport } from "../report/fleet-report.ts";
import type { FleetReport } from "../agents/merge.ts";
import { REDIS_GRACE_S } from "../agents/protocol.ts";

/** Commander fills the timeouts with their defaults; they are optional for callers that build flags by hand. */
export interface FleetFlags {
  redis?: string;
  agents?: number;
  agentsTimeout?: number;
  redisGrace?: number;
}

const AGENTS_TIMEOUT_S = 60;

/** The flags `load` and `sweep` take to run on agents. */
export function fleetOptions(cmd: Command): Command {
  return cmd
    .option("--redis <url>", "run on load agents coordinated through this Redis: redis://[user:pass@]host:port[/db] (with --agents)")
    .option("--agents <n>", "with --redis: wait for this many agents (`wsmillion agent`) and split the plan over them", integer("--agents", 1, 10_000))
    .option("--agents-timeout <s>", "with --redis: seconds to wait for the agents to join", seconds("--agents-timeout", 1, 86_400), AGENTS_TIMEOUT_S)
    .option("--redis-grace <s>", "with --redis: seconds Redis may stay away before missing final reports count as missing", seconds("--redis-grace", 1, 86_400), REDIS_GRACE_S);
}

/** --redis's URL, or the usage error saying what is wrong with it. */
export function redisUrlFlag(raw: string): RedisUrl {
  try {
    return parseRedisUrl(raw);
  } catch (err) {
    if (err instanceof RedisUrlError) throw new UsageError(err.message);
    throw err;
  }
}

/** True when the flags ask for a run on agents; a half-given pair is a usage error. */
export function wantsFleet(f: FleetFlags): boolean {
  if (f.redis === undefined && f.agents === undefined) return false;
  if (f.redis === undefined) throw new UsageError("--agents needs --redis URL: the agents and the coordinator meet on a Redis server");
  if (f.agents === undefined) throw new UsageError("--redis needs --agents N: how many agents to run the plan on");
  return true;
}

export async function runFleetLoad(o: LoadOptions, f: FleetFlags, out: { json?: string; quiet?: boolean }): Promise<void> {
  const url = redisUrlFlag(f.redis!);
  const progress = new FleetPrinter(process.stderr, Boolean(process.stderr.isTTY));
  const abort = new AbortController();
  const onSignal = (): void => {
    if (abort.signal.aborted) process.exit(130);
    if (!out.quiet) progress.settle();
    console.error("wsmillion load: interrupted; the agents close their connections (Ctrl-C again to quit now)");
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const log = (line: string): void => {
    if (!out.quiet) progress.settle();
    console.error(line);
  };
  let report: FleetReport;
  try {
    report = await runRemoteLoad(o, {
      url, agents: f.agents!, agentsTimeoutS: f.agentsTimeout ?? AGENTS_TIMEOUT_S, graceS: f.redisGrace ?? REDIS_GRACE_S, log, signal: abort.signal,
      onProgress: out.quiet ? undefined : (s) => progress.update(s),
    });
  } catch (err) {
    if (err instanceof BusError) throw new UsageError(err.message);
    throw err;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  if (!out.quiet) progress.settle();
  console.log(renderFleetReport(report));
  if (out.json) writeFileSync(out.json, JSON.stringify(report, null, 2) + "\n");
  process.exitCode = abort.signal.aborted ? 130 : report.fleet.exitCode;
}
