// ServerConfig: what `wsmillion serve` was asked to do, after flags are parsed and defaults applied; and the
// liveness defaults that scale with the connections asked for.
import { count } from "../format.ts";
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

/**
 * Pings a second the whole server sends at most when it picks the interval. A ping and its pong cost about
 * what an echo does, and this box echoes about 33,000 messages a second all told: the fixed 30 s would take
 * all of it at a million connections, 4,000/s leaves most of it to the traffic under test.
 */
export const PING_BUDGET_PER_SEC = 4000;
/** Idle timeout in ping intervals: a peer may miss three pongs in a row before it is closed (30 s -> 120 s). */
export const IDLE_TIMEOUT_PINGS = 4;
/** Intervals people read at a glance; the last is --ping-interval's maximum. */
const ROUND_PING_INTERVALS_S = [30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600];

export interface Liveness {
  pingInterval: number;
  idleTimeout: number;
}

/**
 * The ping interval for this many connections: the first round interval of at least 30 s at which they
 * stay within PING_BUDGET_PER_SEC (past 14.4 million connections the budget gives way to the 3600 s
 * maximum), and an idle timeout of IDLE_TIMEOUT_PINGS intervals. Up to 120,000 connections: the defaults.
 */
export function scaledLiveness(connections: number): Liveness {
  const wanted = connections / PING_BUDGET_PER_SEC;
  const pingInterval = ROUND_PING_INTERVALS_S.find((s) => s >= wanted) ?? ROUND_PING_INTERVALS_S.at(-1)!;
  return { pingInterval, idleTimeout: pingInterval * IDLE_TIMEOUT_PINGS };
}

/**
 * The liveness settings in force: what the user gave always wins; the rest scales with `connections` (a
 * server's --max-conns; undefined keeps the defaults). An idle timeout left to us is never shorter than
 * IDLE_TIMEOUT_PINGS of the ping interval in force, so `--ping-interval` alone never makes every connection
 * time out.
 */
export function chooseLiveness(connections: number | undefined, given: Partial<Liveness>): Liveness {
  const scaled = connections === undefined ? { pingInterval: SERVER_DEFAULTS.pingInterval, idleTimeout: SERVER_DEFAULTS.idleTimeout } : scaledLiveness(connections);
  const pingInterval = given.pingInterval ?? scaled.pingInterval;
  return { pingInterval, idleTimeout: given.idleTimeout ?? Math.max(scaled.idleTimeout, IDLE_TIMEOUT_PINGS * pingInterval) };
}

/** The one line that says what was chosen for this many connections and how to choose otherwise. */
export function livenessLine(connections: number, l: Liveness): string {
  const pings = l.pingInterval > 0 ? `every ${count(l.pingInterval)} s (${count(connections)} connections at ≤ ${count(Math.ceil(connections / l.pingInterval))} pings/s)` : "off";
  return `pings: ${pings}, idle timeout ${count(l.idleTimeout)} s; --ping-interval and --idle-timeout set them`;
}
