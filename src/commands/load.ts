// `wsmillion load`: options in, plan checked against the limits, load workers run, progress and report out.
// The classic Go client's single-dash flags (-con, -co, -time, -wait, -sendtick, -databyte, -addr, -path)
// arrive here as their long forms (cli.ts translates them).
import type { Command } from "commander";
import { writeFileSync } from "node:fs";
import { bytes, choice, collect, decimal, integer, seconds, workers } from "../flags.ts";
import { DEFAULT_PATH, LOAD_DEFAULTS, LOAD_MODES } from "../load/plan.ts";
import { PAYLOAD_FORMS } from "../load/payload.ts";
import { resolvePlan, type LoadOptions } from "../load/plan-check.ts";
import { runLoad } from "../load/coordinator.ts";
import type { LoadReport } from "../load/report.ts";
import { ProgressPrinter } from "../report/progress.ts";
import { renderLoadReport } from "../report/load-report.ts";
import { fleetOptions, runFleetLoad, wantsFleet, type FleetFlags } from "./fleet.ts";

/** Flag defaults: the plan's own, in the flags' units. */
const d = {
  connections: 1000,
  concurrency: LOAD_DEFAULTS.concurrency,
  rate: LOAD_DEFAULTS.rate,
  duration: LOAD_DEFAULTS.durationS,
  hold: LOAD_DEFAULTS.holdS,
  interval: LOAD_DEFAULTS.intervalMs,
  inFlight: LOAD_DEFAULTS.inFlight,
  size: LOAD_DEFAULTS.size,
  mode: LOAD_DEFAULTS.mode,
  workers: "auto" as const,
  handshakeTimeout: LOAD_DEFAULTS.handshakeTimeoutMs / 1000,
  maxMessage: LOAD_DEFAULTS.maxMessage,
  payload: LOAD_DEFAULTS.payload,
};

const windowBits = (flag: string) => integer(flag, 8, 15);

export interface RawLoadFlags extends Omit<LoadOptions, "url" | "header" | "subprotocol" | "sourcePorts" | "handshakeTimeoutMs">, FleetFlags {
  handshakeTimeout: number;
  header?: string[];
  subprotocol?: string[];
  sourcePorts?: "explicit" | "kernel";
  json?: string;
  quiet?: boolean;
}

/** The parsed flags as plan options (repeatables filled in, durations in the plan's units). */
export function loadOptions(url: string | undefined, f: RawLoadFlags): LoadOptions {
  const { handshakeTimeout, json: _json, quiet: _quiet, redis: _redis, agents: _agents, agentsTimeout: _at, redisGrace: _rg, ...rest } = f;
  return {
    ...rest, url, header: f.header ?? [], subprotocol: f.subprotocol ?? [], sourcePorts: f.sourcePorts ?? "explicit",
    handshakeTimeoutMs: Math.round(handshakeTimeout * 1000),
  };
}

export function registerLoad(program: Command): void {
  const load = program
    .command("load")
    .description("Open many WebSocket connections against any RFC 6455 server, drive traffic, report what happened")
    .argument("[url]", "ws://host:port/path of the server (or use -addr/--targets)")
    .option("--addr <host:port>", "server address (classic -addr)")
    .option("--path <path>", `request path (classic -path; default ${DEFAULT_PATH}, or the URL's path)`)
    .option("--targets <spec>", "destination pairs to spread connections over: 127.0.0.1-16:8080, 127.0.0.1:8080-8083, or a comma list")
    .option("--connections <n>", "connections to open (classic -con)", integer("--connections", 1, 10_000_000), d.connections)
    .option("--concurrency <n>", "dials in flight at once (classic -co)", integer("--concurrency", 1, 1_000_000), d.concurrency)
    .option("--rate <n>", "dials per second cap (0: none)", integer("--rate", 0, 10_000_000), d.rate)
    .option("--duration <s>", "seconds of traffic once the connections are up (classic -time)", integer("--duration", 0, 30 * 86400), d.duration)
    .option("--hold <s>", "seconds to keep connections open after the traffic, before closing (classic -wait)", integer("--hold", 0, 30 * 86400), d.hold)
    .option("--interval <ms>", "each connection sends every <ms> (classic -sendtick; 0: idle; fractions for more than 1,000 msg/s per connection, e.g. 0.1)", decimal("--interval", 0, 3_600_000), d.interval)
    .option("--in-flight <n>", "closed loop (echo): each connection keeps <n> messages outstanding, the next sent as an echo returns (ignores --interval)", integer("--in-flight", 0, 1_000_000), d.inFlight)
    .option("--size <bytes>", "payload bytes per message (classic -databyte; 12+ carry a timestamp)", bytes("--size", 0, 16 << 20), d.size)
    .option("--payload <kind>", `what payloads hold after the timestamp: ${PAYLOAD_FORMS} (fill: 'x' bytes; text: JSON-like records; file: its bytes repeated to --size)`, d.payload)
    .option("--mode <mode>", "echo (round trips), send (fire and forget), receive (server push latency), idle", choice("--mode", LOAD_MODES), d.mode)
    .option("--workers <auto|n>", "load worker processes (auto: enough to stay under the open-files limit)", workers("--workers"), d.workers)
    .option("--header <K:V>", "extra upgrade request header (repeatable)", collect)
    .option("--subprotocol <name>", "offer this Sec-WebSocket-Protocol (repeatable)", collect)
    .option("--handshake-timeout <s>", "give up on a dial not upgraded within <s> seconds (or e.g. 2500ms)", seconds("--handshake-timeout", 0.001, 3600, true), d.handshakeTimeout)
    .option("--reconnect", "keep N open: reopen dropped or failed connections with jittered exponential backoff", false)
    .option("--source <addrs>", "bind these source addresses (e.g. 127.0.0.2-9); default: no bind")
    .option("--source-ports <how>", "with --source: explicit (we assign local ports) or kernel (the kernel searches)", choice("--source-ports", ["explicit", "kernel"] as const), "explicit")
    .option("--max-message <bytes>", "largest incoming message, after inflation with --deflate (larger: close 1009)", bytes("--max-message", 125, 1 << 30), d.maxMessage)
    .option("--tls", "TLS (wss) for --addr/--targets given without a scheme (a wss:// URL or target implies it)", false)
    .option("--insecure", "wss: accept any server certificate (self-signed test servers)", false)
    .option("--ca <file>", "wss: trust the CA certificate(s) in this PEM file instead of the system's")
    .option("--servername <name>", "wss: the name to ask for (SNI) and check the certificate against, e.g. when dialling an IP address; also the Host header")
    .option("--deflate", "offer permessage-deflate (RFC 7692); the server may decline", false)
    .option("--deflate-client-no-context-takeover", "deflate: we compress each message on its own (implies --deflate)", false)
    .option("--deflate-server-no-context-takeover", "deflate: ask the server to compress each message on its own (implies --deflate)", false)
    .option("--deflate-client-max-window-bits [n]", "deflate: our LZ77 window, 8-15; bare: offered without a value, the server picks, as Chrome offers (implies --deflate)", windowBits("--deflate-client-max-window-bits"))
    .option("--deflate-server-max-window-bits <n>", "deflate: ask the server for an LZ77 window of 2^n bytes, 8-15 (implies --deflate)", windowBits("--deflate-server-max-window-bits"))
    .option("--status-url <url|off>", "server connection count to show next to ours (default http://<first target>/conns)")
    .option("--no-check", "dial even when the plan check says the plan cannot work")
    .option("--json <file>", "write the full report as JSON")
    .option("--quiet", "no live progress; report only");
  fleetOptions(load).action(async (url: string | undefined, f: RawLoadFlags) => {
      if (wantsFleet(f)) {
        await runFleetLoad(loadOptions(url, f), f, { json: f.json, quiet: f.quiet });
        return;
      }
      const { plan, warnings } = resolvePlan(loadOptions(url, f));
      for (const w of warnings) console.error(`warning: ${w}`);
      const progress = new ProgressPrinter(process.stderr, Boolean(process.stderr.isTTY), plan.mode === "receive" || plan.mode === "idle" ? "push" : "rtt");
      const abort = new AbortController();
      const onSignal = (): void => {
        if (abort.signal.aborted) process.exit(130);
        if (!f.quiet) progress.settle();
        console.error("wsmillion load: interrupted; closing connections (Ctrl-C again to quit now)");
        abort.abort();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      let report: LoadReport;
      try {
        report = await runLoad(plan, {
          signal: abort.signal,
          onProgress: f.quiet ? undefined : (s) => progress.update(s),
          onPhase: f.quiet ? undefined : () => progress.settle(),
        });
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
      if (!f.quiet) progress.settle();
      console.log(renderLoadReport(report));
      if (f.json) writeFileSync(f.json, JSON.stringify(report, null, 2) + "\n");
      process.exitCode = report.verdict.exitCode;
    });
}
