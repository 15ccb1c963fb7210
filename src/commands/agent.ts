// `wsmillion agent`: one long-running load agent per client machine, coordinated through Redis (agents/).
// It only connects out to Redis (nothing listens here), runs each run's share with the local engine, and
// leaves on Ctrl-C or SIGTERM after closing its connections.
import type { Command } from "commander";
import { hostname } from "node:os";
import { existsSync } from "node:fs";
import { Agent } from "../agents/agent.ts";
import { REDIS_GRACE_S } from "../agents/protocol.ts";
import { redisUrlFlag } from "./fleet.ts";
import { BusError } from "../bus/redis.ts";
import { UsageError, integer, seconds } from "../flags.ts";
import { MachineMonitor } from "../agents/monitor.ts";
import { count, bytes } from "../format.ts";
import { portsPerPair, workerNofile } from "../system/capacity.ts";
import { readLimits } from "../system/limits.ts";

interface AgentFlags {
  redis: string;
  name?: string;
  redisGrace: number;
  out: string;
  monitor?: boolean;
  pid?: number;
  process?: string;
}

/** --monitor's target; --pid and --process belong to it. */
function monitorOf(f: AgentFlags): MachineMonitor | null {
  if (!f.monitor) {
    if (f.pid !== undefined || f.process !== undefined) throw new UsageError(`${f.pid !== undefined ? "--pid" : "--process"} needs --monitor (a monitor watches a process; a load agent runs load)`);
    return null;
  }
  if (f.pid !== undefined && f.process !== undefined) throw new UsageError("give --pid or --process, not both");
  if (f.pid !== undefined && !existsSync(`/proc/${f.pid}`)) throw new UsageError(`--pid ${f.pid}: no such process here`);
  return new MachineMonitor(f.pid !== undefined ? { pid: f.pid } : f.process !== undefined ? { process: f.process } : {});
}

/** The default name: the host's, which is unique per machine (give --name to run several on one). */
export function defaultAgentName(): string {
  return hostname().replace(/[^A-Za-z0-9_.-]/g, "-") || "agent";
}

export function registerAgent(program: Command): void {
  program
    .command("agent")
    .description("Run a load agent on this machine: it joins runs coordinated through Redis (`load --redis URL --agents N`) and runs its share")
    .requiredOption("--redis <url>", "redis://[user:pass@]host:port[/db] shared with the coordinator")
    .option("--name <name>", "this agent's name, unique among the agents (default: the host name)")
    .option("--redis-grace <s>", "seconds Redis may stay away before a run's final report is written locally (for wsmillion merge)", seconds("--redis-grace", 1, 86_400), REDIS_GRACE_S)
    .option("--out <dir>", "where final reports Redis could not take are written", ".")
    .option("--monitor", "generate no load: sample this machine (CPU by mode, load, memory, TCP sockets) and the watched process into each run")
    .option("--pid <n>", "with --monitor: watch this process and its descendants", integer("--pid", 1))
    .option("--process <name>", "with --monitor: watch the process of this name (comm or command word) and its descendants")
    .action(async (f: AgentFlags) => {
      const name = f.name ?? defaultAgentName();
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new UsageError(`--name takes letters, digits, '.', '_' or '-' (1 to 64), got '${name}'`);
      if (!existsSync(f.out)) throw new UsageError(`--out ${f.out}: no such directory`);
      const url = redisUrlFlag(f.redis);
      const monitor = monitorOf(f);
      const log = (line: string): void => console.log(line);
      let agent: Agent;
      try {
        agent = await Agent.start({ url, name, role: monitor ? "monitor" : "load", graceS: f.redisGrace, outDir: f.out, log, monitor });
      } catch (err) {
        if (err instanceof BusError) throw new UsageError(`agent ${name}: ${err.message}`);
        throw err;
      }
      const l = readLimits();
      const mem = l.memAvailable.value;
      if (monitor) log(`agent ${name}: monitor of ${monitor.describe()}`);
      log(
        `agent ${name}: ready on ${agent.where} (pid ${process.pid}; ${mem !== null ? `${bytes(mem)} available, ` : ""}open files ${count(workerNofile(l))}, ` +
          `${count(portsPerPair(l))} ports per destination; clock offset ${agent.clockNow.offsetMs} ms); waiting for work`,
      );
      const stop = new AbortController();
      const onSignal = (): void => {
        if (stop.signal.aborted) process.exit(130);
        stop.abort();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        await agent.serve(stop.signal);
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}
