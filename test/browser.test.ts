// The two pages in a real browser (Debian's Chromium driven by playwright-core): the sweep's report.html
// opened from disk and the live /dashboard of a running `wsmillion serve` under load. Charts must draw,
// the dashboard's numbers must follow the load, the console must stay clean and no request may leave the
// page's own origin. Screenshots land in test-output/ for a human to look at.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { writeReport } from "../src/commands/sweep.ts";
import { runLoad } from "../src/load/coordinator.ts";
import { CRITERIA_DEFAULTS } from "../src/sweep/criteria.ts";
import { runSweep } from "../src/sweep/sweep.ts";
import { readLimits } from "../src/system/limits.ts";
import { eventually } from "./helpers/eventually.ts";
import { plan } from "./helpers/load.ts";
import { serve } from "./helpers/serve.ts";

const CHROMIUM = "/usr/bin/chromium";
const OUT = join(import.meta.dir, "..", "test-output");
const profile = mkdtempSync(join(tmpdir(), "wsm-chromium-"));
let browser: BrowserContext;

beforeAll(async () => {
  // Fail, never skip: a missing browser must not turn into a green run that tested no page.
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`bash scripts/test-setup\` (npm test does) or apt-get install -y --no-install-recommends chromium`);
  mkdirSync(OUT, { recursive: true });
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1300, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}, 30_000);

afterAll(async () => {
  await browser?.close();
  rmSync(profile, { recursive: true, force: true });
});

interface Watched {
  page: Page;
  problems: string[];
  requests: string[];
}

/** A page whose console errors, uncaught exceptions and requests are all recorded. */
async function watchedPage(): Promise<Watched> {
  const page = await browser.newPage();
  const problems: string[] = [];
  const requests: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  page.on("request", (r) => requests.push(r.url()));
  return { page, problems, requests };
}

/** Canvases of the uPlot charts on the page, with how many pixels each has drawn (non-transparent). */
function chartInk(page: Page): Promise<{ title: string; inked: number }[]> {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll(".uplot")).map((u) => {
      const c = u.querySelector("canvas")!;
      const px = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
      let inked = 0;
      for (let i = 3; i < px.length; i += 16) if (px[i]! > 0) inked++;
      return { title: u.querySelector(".u-title")?.textContent ?? "", inked };
    }),
  );
}

describe("report.html", () => {
  test("opens from disk with no network, draws every chart, and the console stays clean", async () => {
    const dir = join(OUT, "browser-report");
    const report = await runSweep({
      rounds: [
        { connections: 150, size: 100, intervalMs: 100 },
        { connections: 150, size: 1000, intervalMs: 100 },
      ],
      source: "matrix",
      preset: null,
      durationS: 2,
      cooldownS: 1,
      criteria: { ...CRITERIA_DEFAULTS },
      mode: "echo",
      concurrency: 150,
      loadWorkers: "auto",
      serverWorkers: 2,
      target: null,
      findMax: null,
      command: "test: browser report",
      limits: readLimits(),
    }, { onLog: () => {} });
    const paths = writeReport(report, dir);

    const { page, problems, requests } = await watchedPage();
    try {
      await page.goto(`file://${paths.html}`);
      await page.waitForSelector("body[data-rendered='1']", { timeout: 10_000 });
      const charts = await chartInk(page);
      expect(charts.map((c) => c.title)).toEqual([
        "Messages per second: offered and achieved",
        "CPU (cores, mean over the traffic)",
        "Server memory: peak RSS (MiB, left) and KiB per connection (right)",
        "Round trip (ms, log scale)",
        "Connections open",
        "Messages per second",
        "CPU (cores)",
        expect.stringMatching(/^Load average \(1 min\) and busy cores/),
        "Resident memory",
        "Latency per second (ms, log scale)",
      ]);
      for (const c of charts) expect({ title: c.title, drawn: c.inked > 200 }).toEqual({ title: c.title, drawn: true });
      expect(await page.locator("#rounds tbody tr").count()).toBe(2);
      expect(await page.locator("#findings li").count()).toBeGreaterThanOrEqual(3);
      await page.screenshot({ path: join(OUT, "report.png"), fullPage: true });
      expect(problems).toEqual([]);
      expect(requests.filter((u) => !u.startsWith("file://"))).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);
});

describe("/dashboard", () => {
  test("live charts follow a running load; no request leaves the server; the console stays clean", async () => {
    const srv = await serve(["--workers", "2"]);
    const { page, problems, requests } = await watchedPage();
    const value = async (id: string) => Number((await page.locator(`#${id}`).textContent())!.replace(/,/g, ""));
    const until = (what: string, check: () => Promise<boolean>, timeoutMs: number) => eventually(check, { timeoutMs, what: `the dashboard to show ${what}`, intervalMs: 200 });
    try {
      await page.goto(`${srv.http}/dashboard`);
      await page.waitForSelector("#status.live", { timeout: 10_000 });
      await until("the first sample", async () => Number(await page.getAttribute("body", "data-samples")) >= 1, 5000);
      expect(await value("v-conns")).toBe(0);

      const load = runLoad(plan([{ host: "127.0.0.1", port: srv.port }], { connections: 300, concurrency: 300, intervalMs: 100, durationS: 8 }));
      await until("300 connections", async () => (await value("v-conns")) === 300, 10_000);
      // 300 connections every 100 ms: about 3,000 messages a second each way.
      await until("messages flowing", async () => (await value("v-in")) > 1500 && (await value("v-out")) > 1500, 8000);
      expect(await value("v-workers")).toBe(2);
      expect(await value("v-cpu")).toBeGreaterThan(0);
      expect(await page.locator("#workers tbody tr").count()).toBe(2);
      // A few more seconds of history, so the screenshot shows lines rather than points.
      const seen = Number(await page.getAttribute("body", "data-samples"));
      await until("more samples", async () => Number(await page.getAttribute("body", "data-samples")) >= seen + 4, 8000);
      const charts = await chartInk(page);
      expect(charts.map((c) => c.title)).toEqual(["Connections open", "Messages per second", "CPU (cores)", "Resident memory", "Event-loop lag (ms)", "Payload bytes per second"]);
      for (const c of charts) expect({ title: c.title, drawn: c.inked > 200 }).toEqual({ title: c.title, drawn: true });
      await page.screenshot({ path: join(OUT, "dashboard.png"), fullPage: true });

      const report = await load;
      expect(report.connections.openAtRamp).toBe(300);
      await until("the connections closing", async () => (await value("v-conns")) === 0, 8000);
      expect(problems).toEqual([]);
      const own = (u: string) => u.startsWith(`${srv.http}/`);
      expect(requests.filter((u) => !own(u))).toEqual([]);
      expect(new Set(requests.map((u) => new URL(u).pathname))).toEqual(new Set(["/dashboard", "/events"]));
    } finally {
      // The page goes first, so its feed does not log a reconnect error against a stopped server.
      await page.close();
      await srv.stop();
    }
  }, 60_000);
});
