// `wsmillion merge a.json b.json ...`: the fleet report of a run rebuilt from its report files (agents'
// local reports, a coordinator's --json), for runs whose coordinator was lost or whose agents could not
// reach Redis at the end. The same report and exit codes as `load --agents`.
import type { Command } from "commander";
import { readFileSync, writeFileSync } from "node:fs";
import { mergeFiles, type ReportFile } from "../agents/offline.ts";
import { UsageError } from "../flags.ts";
import { renderFleetReport } from "../report/fleet-report.ts";

function readReport(path: string): ReportFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    return { path, doc: JSON.parse(text) as unknown };
  } catch {
    throw new UsageError(`${path} is not JSON`);
  }
}

export function registerMerge(program: Command): void {
  program
    .command("merge")
    .description("Merge a distributed run's reports (agents' local reports, a coordinator's --json) into one fleet report")
    .argument("<files...>", "report files of one run")
    .option("--json <file>", "write the merged report as JSON")
    .action((files: string[], f: { json?: string }) => {
      const report = mergeFiles(files.map(readReport));
      console.log(renderFleetReport(report));
      if (f.json) writeFileSync(f.json, JSON.stringify(report, null, 2) + "\n");
      process.exitCode = report.fleet.exitCode;
    });
}
