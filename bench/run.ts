// `npm run bench`: runs every benchmark in this folder, one after another (they would distort each other
// in parallel on a 2-core box), and prints each one's closing JSON line; figures go to docs/BENCHMARKS.md.
import { readdirSync } from "node:fs";
import { join } from "node:path";

const only = process.argv.slice(2);
const files = readdirSync(import.meta.dir)
  .filter((f) => f.endsWith(".ts") && f !== "run.ts" && !f.endsWith("-lib.ts"))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
const results: string[] = [];
let failed = 0;
for (const file of files) {
  console.log(`\n== bench/${file}`);
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, file)], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(proc.stdout).text();
  process.stdout.write(out);
  if ((await proc.exited) !== 0) failed++;
  const last = out.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  if (last) results.push(last);
}
console.log(`\n== summary (${files.length} benchmarks, ${failed} failed)`);
for (const r of results) console.log(r);
process.exitCode = failed > 0 ? 1 : 0;
