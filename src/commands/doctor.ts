import type { Command } from "commander";

export function registerDoctor(program: Command): void {
  program.command("doctor").description("(not built yet)").action(() => {
    console.error("wsmillion doctor: not built yet");
    process.exitCode = 1;
  });
}
