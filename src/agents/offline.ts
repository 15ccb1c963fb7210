// `wsmillion merge`: the fleet report rebuilt from report files, for a run whose coordinator was lost or
// whose agents wrote their final reports locally (Redis away). Takes agent reports (what an agent sends or
// writes) and fleet reports (a coordinator's --json, which carries every agent report it received and the
// last figures of those it lost); an agent's own report replaces its lost entry. One run per merge.
import { UsageError } from "../flags.ts";
import { PARTIAL_EXIT, mergeFleet, mergeSamples, type FleetReport, type LostAgent } from "./merge.ts";
import type { AgentReport } from "./protocol.ts";

export interface ReportFile {
  path: string;
  doc: unknown;
}

const isAgentReport = (d: unknown): d is AgentReport => (d as { schema?: unknown } | null)?.schema === "wsmillion.agent-report/1";
const isFleetReport = (d: unknown): d is FleetReport => (d as { fleet?: { schema?: unknown } } | null)?.fleet?.schema === "wsmillion.fleet/1";

export function mergeFiles(files: ReportFile[]): FleetReport {
  if (files.length === 0) throw new UsageError("merge takes report files: the agents' (wsmillion-agent-NAME-RUN.json) and/or the coordinator's --json");
  const agents = new Map<string, AgentReport>();
  const lost = new Map<string, LostAgent>();
  let fleet: FleetReport | null = null;
  let run: { id: string; epoch: number; redis: string } | null = null;
  const sameRun = (path: string, id: string, epoch: number): void => {
    if (run && (run.id !== id || run.epoch !== epoch)) throw new UsageError(`${path} is from run ${id} (epoch ${epoch}), the others from run ${run.id} (epoch ${run.epoch}): merge one run at a time`);
  };
  for (const { path, doc } of files) {
    if (isAgentReport(doc)) {
      sameRun(path, doc.run.id, doc.run.epoch);
      run ??= doc.run;
      agents.set(doc.agent.name, doc);
    } else if (isFleetReport(doc)) {
      sameRun(path, doc.fleet.run.id, doc.fleet.run.epoch);
      run ??= doc.fleet.run;
      fleet ??= doc;
      for (const a of doc.fleet.agentReports) if (!agents.has(a.agent.name)) agents.set(a.agent.name, a);
      for (const l of doc.fleet.lost) lost.set(l.name, l);
    } else {
      throw new UsageError(`${path} is neither an agent report (wsmillion.agent-report/1) nor a coordinator's report with a fleet section`);
    }
  }
  const reports = [...agents.values()];
  const fleetPlan = fleet?.fleet.fleetPlan ?? reports[0]!.fleetPlan;
  const x = fleet
    ? {
        samples: fleet.samples, events: fleet.fleet.events, peakOpen: fleet.connections.peakOpen, serverAtRamp: fleet.server.atRamp, serverAtEnd: fleet.server.atEnd,
        serverError: fleet.server.error, redisCommandsPerAgentPerSec: fleet.fleet.redisCommandsPerAgentPerSec, monitors: fleet.fleet.monitors,
      }
    : {
        samples: mergeSamples(reports, fleetPlan.connections), events: [], peakOpen: 0, serverAtRamp: null, serverAtEnd: null, serverError: null,
        redisCommandsPerAgentPerSec: null, monitors: [],
      };
  const merged = mergeFleet(run!, fleetPlan, reports, [...lost.values()], { ...x, warnings: [] });
  // Without the coordinator's report, the shares say how many agents the run had: one without a file is missing.
  const seen = new Set([...reports.map((r) => r.share.index), ...[...lost.values()].map((l) => l.share.index)]);
  const missing = Array.from({ length: reports[0]?.share.agents ?? 0 }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length > 0) {
    merged.verdict = { met: false, exitCode: 1, reasons: [...merged.verdict.reasons, `no report from ${missing.length} of the run's ${reports[0]!.share.agents} agents (share ${missing.join(", ")}): its counts are missing`] };
    merged.fleet.partial = true;
    merged.fleet.exitCode = PARTIAL_EXIT;
  }
  return merged;
}
