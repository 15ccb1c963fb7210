// `wsmillion serve`: flags -> ServerConfig -> supervisor; start-up facts, limit warnings, a final stats line.
import type { Command } from "commander";
import { BACKPRESSURE_POLICIES, SERVER_DEFAULTS, SERVER_MODES, chooseLiveness, livenessLine, livenessProblem, type ServerConfig } from "../server/config.ts";
import { startServer } from "../server/supervisor.ts";
import type { ClusterStats } from "../server/stats.ts";
import { serverKernelWarnings, startupWarnings, workerNofile } from "../system/capacity.ts";
import { readLimits } from "../system/limits.ts";
import { UsageError, bytes, choice, collect, integer, seconds, workers } from "../flags.ts";
import { count } from "../format.ts";
import { CLOSE_GOING_AWAY, CLOSE_TOO_BIG } from "../protocol/close-codes.ts";

const d = SERVER_DEFAULTS;

/** Commander's view of the flags: ServerConfig, but --origin is repeatable and the optional ones may be absent. */
type ServeFlags = Omit<ServerConfig, "origins" | "maxConns" | "subprotocol" | "token"> & {
  origin: string[];
  maxConns?: number;
  subprotocol?: string;
  token?: string;
};

/**
 * Flags -> ServerConfig. `given` says which flags were typed: with --max-conns, the ping interval and idle
 * timeout not given scale with it (chooseLiveness); given ones always win.
 */
export function serverConfigFrom({ origin, ...f }: ServeFlags, given: (flag: "pingInterval" | "idleTimeout") => boolean): ServerConfig {
  if (!f.path.startsWith("/")) throw new UsageError(`--path must start with '/', got '${f.path}'`);
  const { pingInterval, idleTimeout } = chooseLiveness(f.maxConns, {
    ...(given("pingInterval") && { pingInterval: f.pingInterval }),
    ...(given("idleTimeout") && { idleTimeout: f.idleTimeout }),
  });
  const liveness = livenessProblem(pingInterval, idleTimeout);
  if (liveness) throw new UsageError(liveness);
  return { ...f, pingInterval, idleTimeout, maxConns: f.maxConns, subprotocol: f.subprotocol, token: f.token, origins: origin };
}

export function finalLine(s: ClusterStats): string {
  const t = s.total;
  return `stopped: ${count(t.accepted)} accepted, ${count(s.closed)} closed, ${count(t.messagesIn)} messages in, ${count(t.messagesOut)} out, ${count(t.dropped)} dropped, ${count(Object.values(t.rejected).reduce((a, b) => a + b, 0))} upgrades refused`;
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("run a multi-process WebSocket server (echo, sink, push, broadcast) with /conns, /stats, /metrics and /dashboard")
    .option("--host <addr>", "address to listen on", d.host)
    .option("--port <n>", "port to listen on (0 picks a free one)", integer("--port", 0, 65535), d.port)
    .option("--path <path>", "WebSocket path; other paths answer 404", d.path)
    .option("--workers <auto|n>", "worker processes; auto weighs cores and the open-files limit against --max-conns", workers("--workers"), d.workers)
    .option("--mode <mode>", `what to do with messages: ${SERVER_MODES.join(", ")}`, choice("--mode", SERVER_MODES), d.mode)
    .option("--max-conns <n>", "cluster-wide connection cap (default: what the limits and memory allow)", integer("--max-conns", 1))
    .option("--max-payload <bytes>", `largest message accepted; larger ones close with ${CLOSE_TOO_BIG}`, bytes("--max-payload", 1, 1 << 30), d.maxPayload)
    .option("--max-buffered <bytes>", "bytes queued per slow connection before the backpressure policy applies", bytes("--max-buffered", 1024, 1 << 30), d.maxBuffered)
    .option("--backpressure <policy>", "past --max-buffered: close (the connection) or drop (the message)", choice("--backpressure", BACKPRESSURE_POLICIES), d.backpressure)
    .option("--databyte <bytes>", "push mode: payload size (12+ bytes carry a send timestamp)", bytes("--databyte", 0, 16 << 20), d.databyte)
    .option("--sendtick <ms>", "push mode: each connection gets a payload every <ms>", integer("--sendtick", 1), d.sendtick)
    .option("--ping-interval <s>", "ping every connection this often (0: off)", integer("--ping-interval", 0, 3600), d.pingInterval)
    .option("--idle-timeout <s>", "close connections not heard from this long (0: off; longer than --ping-interval)", integer("--idle-timeout", 0, 86_400), d.idleTimeout)
    .option("--handshake-timeout <s>", "drop a connection whose upgrade request is not complete by then", seconds("--handshake-timeout", 1, 255), d.handshakeTimeout)
    .option("--drain-timeout <s>", "on SIGTERM/SIGINT, wait this long for clients to finish closing", integer("--drain-timeout", 0, 3600), d.drainTimeout)
    .option("--deflate", "enable permessage-deflate", d.deflate)
    .option("--subprotocol <name>", "require and answer this Sec-WebSocket-Protocol")
    .option("--token <secret>", "require Authorization: Bearer <secret> or ?token=<secret> (401 otherwise)")
    .option("--origin <origin>", "allow only this Origin (repeatable; 403 otherwise)", collect, [])
    .option("--quiet", "print only errors", d.quiet)
    .action(async (flags: ServeFlags, cmd: Command) => {
      // A flag's source is "default" unless the user typed it.
      const given = (flag: "pingInterval" | "idleTimeout") => cmd.getOptionValueSource(flag) !== "default";
      const config = serverConfigFrom(flags, given);
      const limits = readLimits();
      const say = (line: string) => {
        if (!config.quiet) console.log(line);
      };
      const server = await startServer(config, { nofileSoft: workerNofile(limits) });
      const { sizing } = server;
      const shown = config.host === "0.0.0.0" ? "127.0.0.1" : config.host;
      say(`wsmillion serve: ws://${shown}:${server.port}${config.path} (listening on ${config.host}:${server.port}), mode ${config.mode}`);
      say(`workers: ${sizing.initial}${sizing.max > sizing.initial ? ` (grows to ${sizing.max} as they fill)` : ""}, ${count(sizing.perWorker)} connections each (open-files limit ${workerNofile(limits)}); capacity ${count(sizing.maxConns)}`);
      say(`limits: max payload ${count(config.maxPayload)} B, max buffered ${count(config.maxBuffered)} B (${config.backpressure}), ping every ${config.pingInterval} s, idle timeout ${config.idleTimeout} s`);
      if (config.maxConns !== undefined && !given("pingInterval")) say(livenessLine(config.maxConns, config));
      say(`endpoints: http://${shown}:${server.port}/conns /stats /metrics /healthz /dashboard`);
      for (const w of startupWarnings({ role: "server", connections: Number.isFinite(sizing.maxConns) ? sizing.maxConns : 1_000_000 }, limits)) {
        console.error(`warning: ${w}`);
      }
      // Clients may share this machine (and its loopback queue) unless the server listens on a public address only.
      const clientsHere = ["0.0.0.0", "::", "localhost", "::1"].includes(config.host) || config.host.startsWith("127.");
      const capacity = Number.isFinite(sizing.maxConns) ? sizing.maxConns : 1_000_000;
      for (const w of serverKernelWarnings({ connections: capacity, port: config.port, clientsHere }, limits)) console.error(`warning: ${w}`);
      await new Promise<void>((resolve) => {
        const stop = async (sig: string) => {
          say(`${sig}: closing every connection with ${CLOSE_GOING_AWAY} (up to ${config.drainTimeout} s)`);
          say(finalLine(await server.stop()));
          resolve();
        };
        process.once("SIGINT", () => void stop("SIGINT"));
        process.once("SIGTERM", () => void stop("SIGTERM"));
      });
    });
}
