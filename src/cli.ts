// Entry point: parses argv (including the classic Go tool's single-dash flags) and dispatches to commands/.
import { Command, CommanderError } from "commander";
import { ExpectedFailure, UsageError } from "./flags.ts";
import { registerServe } from "./commands/serve.ts";
import { registerLoad } from "./commands/load.ts";
import { registerDoctor } from "./commands/doctor.ts";
import { registerSweep } from "./commands/sweep.ts";
import { registerDemo } from "./commands/demo.ts";
import { registerAgent } from "./commands/agent.ts";
import { registerMerge } from "./commands/merge.ts";
import pkg from "../package.json" with { type: "json" };

/**
 * The classic Go load client took single-dash flags (`-con 20000 -co 1000`). Go's flag package accepts
 * `-name value`, `-name=value` and `--name`; we map those names onto our long options so an old
 * command line works unchanged.
 */
const CLASSIC_FLAGS: Record<string, string> = {
  addr: "--addr",
  path: "--path",
  con: "--connections",
  co: "--concurrency",
  time: "--duration",
  wait: "--hold",
  sendtick: "--interval",
  databyte: "--size",
};

export function translateClassicFlags(argv: readonly string[]): string[] {
  // Only the load generator speaks the classic dialect; `serve --sendtick` keeps its own meaning.
  if (argv[0] !== "load") return [...argv];
  return argv.map((arg) => {
    const m = /^--?([a-z]+)(=.*)?$/.exec(arg);
    if (!m || arg.startsWith("--") && !(m[1]! in CLASSIC_FLAGS)) return arg;
    const long = CLASSIC_FLAGS[m[1]!];
    return long ? long + (m[2] ?? "") : arg;
  });
}

export function buildProgram(): Command {
  const program = new Command("wsmillion")
    .description("A million concurrent WebSocket connections on one machine: serve, load, doctor, sweep.")
    .version(pkg.version)
    .exitOverride()
    .configureOutput({ outputError: () => {} });
  registerServe(program);
  registerLoad(program);
  registerDoctor(program);
  registerSweep(program);
  registerDemo(program);
  registerAgent(program);
  registerMerge(program);
  for (const cmd of program.commands) cmd.exitOverride().configureOutput({ outputError: () => {} });
  return program;
}

/**
 * Exit codes: 0 done, 2 a usage error or an expected failure (one line each, no stack: nothing for a
 * developer to see), the command's own otherwise. An unexpected error is a bug: it is rethrown, so Bun
 * prints it with its stack trace and exits 1.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(translateClassicFlags(argv), { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0 || err.code === "commander.helpDisplayed" || err.code === "commander.version") return 0;
      console.error(`wsmillion: ${err.message.replace(/^error: /, "")} (see wsmillion --help)`);
      return 2;
    }
    if (err instanceof UsageError) {
      console.error(`wsmillion: ${err.message}`);
      return 2;
    }
    if (err instanceof ExpectedFailure) {
      // Only a command's action gets this far, so argv[0] names the command.
      console.error(`wsmillion ${argv[0]}: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exitCode = code;
}
