import type { Command } from "commander";

export function registerSweep(program: Command): void {
  program.command("sweep").description("(not built yet)").action(() => {
    console.error("wsmillion sweep: not built yet");
    process.exitCode = 1;
  });
}
