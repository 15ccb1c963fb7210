// bin/wsmillion: finds the Bun binary npm installed and execs it, so no launcher process stays resident.
import { expect, test } from "bun:test";
import { mkdtempSync, readlinkSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./helpers/load.ts";
import { readUntil } from "./helpers/read.ts";

const LAUNCHER = join(ROOT, "bin", "wsmillion");

async function launchedServe(path: string): Promise<void> {
  const p = Bun.spawn([path, "serve", "--port", "0", "--workers", "1"], { stdout: "pipe", stderr: "pipe" });
  try {
    await readUntil(p.stdout, /endpoints: http:/, 20_000);
    // The process we started is Bun itself running the CLI: the launcher replaced itself (exec).
    expect(readlinkSync(`/proc/${p.pid}/exe`)).toMatch(/bun/);
    expect(await Bun.file(`/proc/${p.pid}/cmdline`).text()).toContain("src/cli.ts");
  } finally {
    p.kill("SIGTERM");
    await p.exited;
  }
}

test("the launcher execs Bun: the process it starts is the CLI itself, no resident launcher", async () => {
  await launchedServe(LAUNCHER);
}, 30_000);

test("the launcher works through a symlink (how npm installs a global or npx bin)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wsm-bin-"));
  try {
    symlinkSync(LAUNCHER, join(dir, "wsmillion"));
    await launchedServe(join(dir, "wsmillion"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
