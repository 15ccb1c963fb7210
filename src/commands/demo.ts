import type { Command } from "commander";

export function registerDemo(program: Command): void {
  program.command("demo").description("(not built yet)").action(() => {
    console.error("wsmillion demo: not built yet");
    process.exitCode = 1;
  });
}
