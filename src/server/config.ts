// ServerConfig: what `wsmillion serve` was asked to do, after flags are parsed and defaults applied.
import type { ConnCount } from "./stats.ts";

export const SERVER_MODES = ["echo", "sink", "push", "broadcast"] as const;
export type ServerMode = (typeof SERVER_MODES)[number];
export const BACKPRESSURE_POLICIES = ["close", "drop"] as const;
export type BackpressurePolicy = (typeof BACKPRESSURE_POLICIES)[number];

export interface ServerConfig {
  host: string;
  port: number;
  path: string;
  workers: number | "auto";
  mode: ServerMode;
  /** Cluster-wide cap; undefined means what the limits and memory allow. */
  maxConns: number | undefined;
  maxPayload: number;
  maxBuffered: number;
  backpressure: BackpressurePolicy;
  /** push mode: payload size and period. */
  databyte: number;
  sendtick: number;
  pingInterval: number;
  idleTimeout: number;
  handshakeTimeout: number;
  drainTimeout: number;
  deflate: boolean;
  subprotocol: string | undefined;
  token: string | undefined;
  origins: string[];
  quiet: boolean;
}

export const SERVER_DEFAULTS: ServerConfig = {
  host: "0.0.0.0",
  port: 8080,
  path: "/ws",
  workers: "auto",
  mode: "echo",
  maxConns: undefined,
  maxPayload: 1 << 20,
  maxBuffered: 1 << 20,
  backpressure: "close",
  databyte: 100,
  sendtick: 1000,
  pingInterval: 30,
  idleTimeout: 120,
  handshakeTimeout: 10,
  drainTimeout: 10,
  deflate: false,
  subprotocol: undefined,
  token: undefined,
  origins: [],
  quiet: false,
};

/** What the supervisor hands each worker process (JSON in an environment variable). */
export interface WorkerSettings {
  config: ServerConfig;
  index: number;
  /** Connections this worker takes before it leaves the port group (its share of --max-conns). */
  cap: number;
  /** Connections it may hold at all: the open-files limit less a reserve. Past it, 503 whatever happens. */
  hardCap: number;
  /** The cluster's /conns figure when the worker was started: what it answers until the supervisor's next push. */
  count: ConnCount;
  /**
   * The first worker of a fresh server on a fixed port: it checks nobody else holds the port before joining
   * it with reusePort, since a second reusePort server on the same port would silently share its connections.
   */
  claimPort: boolean;
}

/** With pings on, a live peer is heard from once per ping interval (its pong), so the idle limit must be longer. */
export function livenessProblem(pingInterval: number, idleTimeout: number): string | undefined {
  if (pingInterval > 0 && idleTimeout > 0 && idleTimeout <= pingInterval) {
    return `--idle-timeout (${idleTimeout} s) must be longer than --ping-interval (${pingInterval} s), or every connection times out; e.g. --idle-timeout ${pingInterval * 4}`;
  }
  return undefined;
}
