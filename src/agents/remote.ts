// The coordinator of a run spread over agents (`load --redis URL --agents N`): finds N idle agents in the
// registry and invites them, checks the plan against what each machine holds and splits it (split.ts),
// assigns each its share on the run's control stream, steps them through the barriers (ramp, traffic,
// close) at instants on Redis's clock, reads their figures once a second for the live line, notices an
// agent lost (its heartbeat key expired), and merges their final reports exactly (merge.ts).
//
// Redis traffic in steady state: each agent sends one figures entry a second and a heartbeat every 4 s;
// the coordinator reads the up stream once a second and ticks every 10 s (agents wake on the tick; its
// absence tells them the coordinator is gone). Nothing per connection or per message.
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { Bus, BusDown } from "../bus/redis.ts";
import type { RedisUrl } from "../bus/url.ts";
import { UsageError } from "../flags.ts";
import { count, bytes } from "../format.ts";
import type { BarrierPhase } from "../load/coordinator.ts";
import { mergeEncoded, newHistogram, encodeHistogram } from "../load/metrics.ts";
import type { LoadOptions } from "../load/plan-check.ts";
import type { LoadPlan } from "../load/plan.ts";
import type { LoadPhase, ProgressSnapshot, ServerConns, WorkerOutcome } from "../load/report.ts";
import { portsPerPair, workerNofile } from "../system/capacity.ts";
import { sleep } from "../sleep.ts";
import { mergeFleet, withStreamedLatency, type FleetReport, type LostAgent } from "./merge.ts";
import { summarizeMonitor, type MonitorReport } from "./monitor.ts";
import {
  HEARTBEAT_TTL_S, INBOX_MAXLEN, RUN_KEYS_TTL_S, TICK_EVERY_MS, VERSION, decode, encode, keys, runKeys,
  type AgentFigures, type AgentReport, type Clock, type CtlMsg, type Heartbeat, type InboxMsg, type UpMsg,
} from "./protocol.ts";
import { splitPlan, type Assignment, type FleetPlan } from "./split.ts";

export interface RemoteOptions {
  url: RedisUrl;
  agents: number;
  /** Seconds to wait for the agents to join. */
  agentsTimeoutS: number;
  /** Seconds an agent's final report may take to come once Redis is away (then it counts as missing). */
  graceS: number;
  log(line: string): void;
  onProgress?(s: FleetSnapshot): void;
  signal?: AbortSignal;
}

export type AgentLiveState = "joined" | "starting" | LoadPhase | "late" | "lost" | "failed";

/** The live line's figures: the fleet's sums, and each agent's state and open connections. */
export interface FleetSnapshot extends ProgressSnapshot {
  agents: { name: string; state: AgentLiveState; open: number }[];
  redisDown: boolean;
}

/** Invited but silent this long: another agent is invited in its place. */
const INVITE_ANSWER_MS = 5000;
/** Every agent must reach the start barrier (its workers up) within this. */
const READY_TIMEOUT_MS = 60_000;
/**
 * The go instant is this far ahead of Redis's now: every agent reads it well before it comes. The start's
 * is longer: the agents' workers were just spawned, and a machine still loading them fires its timers late
 * (measured in the lab: 89 ms of start skew with 500 ms, 12 workers loading on 2 cores).
 */
const LEAD_MS = 500;
const START_LEAD_MS = 2000;
/** Poll period outside the steady state (joining, barriers, finals) and in it. */
const FAST_POLL_MS = 250;
const SLOW_POLL_MS = 1000;
/** An agent's figures older than this make it "late" on the live line. */
const LATE_MS = 2500;

interface Slot {
  name: string;
  invitedAt: number;
  hello: Extract<UpMsg, { t: "hello" }> | null;
  assignment: Assignment | null;
  /** Furthest barrier reached (index in PHASES), -1 before any. */
  at: number;
  started: Partial<Record<BarrierPhase, number>>;
  lastFig: AgentFigures | null;
  lastFigAt: number;
  heardAt: number;
  latency: ReturnType<typeof newHistogram>;
  lateness: ReturnType<typeof newHistogram>;
  final: AgentReport | null;
  lost: LostAgent | null;
  error: string | null;
  released: boolean;
}

/** A monitor agent in the run: it generates no load; its samples of the target's machine go in the report. */
interface MonitorSlot {
  name: string;
  hello: Extract<UpMsg, { t: "hello" }> | null;
  samples: MonitorReport["samples"];
}

const PHASES: readonly BarrierPhase[] = ["ramp", "run", "close"];

/** The run cannot be set up (agents missing, plan impossible, Redis unusable): one line, exit 2. */
export class RemoteError extends UsageError {}

export function runRemoteLoad(o: LoadOptions, r: RemoteOptions): Promise<FleetReport> {
  return new RemoteRun(o, r).run();
}

class RemoteRun {
  private readonly id = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
  private readonly epoch = 1;
  private readonly t0 = performance.now();
  private bus!: Bus;
  private upFrom = "0-0";
  private readonly slots = new Map<string, Slot>();
  private readonly monitors = new Map<string, MonitorSlot>();
  /** This process's clock against Redis's, to put the monitors' samples on the live samples' seconds. */
  private clock: Clock = { offsetMs: 0, rttMs: 0 };
  /** When the traffic's go and the close's were sent (seconds, as the live samples). */
  private window = { from: Infinity, to: Infinity };
  private readonly refused = new Set<string>();
  private readonly busy = new Set<string>();
  private phase: LoadPhase = "starting";
  private fleetPlan: LoadPlan | null = null;
  private readonly events: string[] = [];
  private readonly warnings: string[] = [];
  private readonly samples: ProgressSnapshot[] = [];
  private readonly live = newHistogram();
  private readonly liveLateness = newHistogram();
  private peakOpen = 0;
  private serverAtRamp: ServerConns | null = null;
  private serverAtEnd: ServerConns | null = null;
  private serverError: string | null = null;
  private pollMs = FAST_POLL_MS;
  private wake: (() => void) | null = null;
  private finished = false;
  private aborted: string | null = null;
  private commands: { at: number; total: number } | null = null;
  /** The run's deadline on this process's clock (performance.now ms): agents stop by it, and so does every wait here. */
  private deadline = Infinity;
  private commandsPerAgentPerSec: number | null = null;

  constructor(
    private readonly o: LoadOptions,
    private readonly r: RemoteOptions,
  ) {}

  private get signal(): AbortSignal | undefined {
    return this.r.signal;
  }

  private seconds(): number {
    return Math.round((performance.now() - this.t0) / 100) / 10;
  }

  private event(line: string): void {
    const e = `${this.seconds().toFixed(1)} s: ${line}`;
    this.events.push(e);
    this.r.log(e);
  }

  async run(): Promise<FleetReport> {
    this.bus = await Bus.open(this.r.url);
    this.bus.onChange = (up) => this.redisChanged(up);
    this.clock = await this.bus.clock();
    const ticker = setInterval(() => void this.tick(), TICK_EVERY_MS);
    const sampler = setInterval(() => this.sample(), 1000);
    const poller = this.pollLoop();
    const onAbort = (): void => void this.abort("interrupted (Ctrl-C)");
    this.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await this.tick();
      await this.join();
      const plan = await this.assign();
      await this.steps(plan);
      await this.collect();
      return this.report(plan);
    } finally {
      this.signal?.removeEventListener("abort", onAbort);
      this.finished = true;
      clearInterval(ticker);
      clearInterval(sampler);
      this.poke();
      await poller;
      await this.send({ t: "end" }).catch(() => {});
      for (const k of runKeys(this.id)) await this.bus.call("EXPIRE", k, RUN_KEYS_TTL_S).catch(() => {});
      this.bus.close();
    }
  }

  // Joining

  private async join(): Promise<void> {
    const want = this.r.agents;
    this.r.log(`run ${this.id}: waiting for ${want} agent${want === 1 ? "" : "s"} on ${this.r.url.display} (up to ${this.r.agentsTimeoutS} s)`);
    const deadline = performance.now() + this.r.agentsTimeoutS * 1000;
    while (this.joined().length < want) {
      if (this.signal?.aborted) throw new RemoteError("interrupted while waiting for agents");
      if (performance.now() > deadline) {
        const have = this.joined().map((s) => s.name);
        const also = [...[...this.refused].map((n) => `${n} (another wsmillion version)`), ...[...this.busy].map((n) => `${n} (busy)`)];
        await this.send({ t: "abort", epoch: this.epoch, reason: "not enough agents joined" }).catch(() => {});
        throw new RemoteError(
          `only ${have.length} of ${want} agents joined within ${this.r.agentsTimeoutS} s on ${this.r.url.display}` +
            (have.length ? ` (joined: ${have.join(", ")})` : "") + (also.length ? `; not used: ${also.join(", ")}` : "") +
            `; start more with: wsmillion agent --redis ${this.r.url.display} --name NAME (or raise --agents-timeout)`,
        );
      }
      try {
        await this.discover(want);
      } catch (err) {
        if (!(err instanceof BusDown)) throw err;
      }
      await this.until(() => this.joined().length >= want, FAST_POLL_MS);
    }
  }

  private joined(): Slot[] {
    return [...this.slots.values()].filter((s) => s.hello !== null && !s.released && !s.lost && s.error === null);
  }

  /** Reads the registry and invites idle agents of our version until enough are invited or joined. */
  private async discover(want: number): Promise<void> {
    const names = (await this.bus.call("SMEMBERS", keys.registry)) as string[] | null;
    const list = (names ?? []).filter((n) => !this.slots.has(n) && !this.busy.has(n)).sort();
    const beats = await this.bus.mget(list.map(keys.agent));
    const now = performance.now();
    const pending = [...this.slots.values()].filter((s) => !s.hello && !s.released && now - s.invitedAt < INVITE_ANSWER_MS).length;
    let room = want - this.joined().length - pending;
    for (let i = 0; i < list.length; i++) {
      const name = list[i]!;
      const raw = beats[i];
      if (!raw) {
        await this.bus.call("SREM", keys.registry, name); // its heartbeat expired: a stale entry
        continue;
      }
      const hb = decode<Heartbeat>(raw);
      if (hb.version !== VERSION) {
        if (this.refused.has(name)) continue;
        this.refused.add(name);
        this.r.log(`agent ${name} (${hb.host}) runs wsmillion ${hb.version}, this coordinator ${VERSION}: not used`);
        await this.inbox(name, { t: "refuse", run: this.id, reason: `it runs wsmillion ${hb.version} and the coordinator ${VERSION}; run the same version on both` });
        continue;
      }
      if (hb.role === "monitor" && hb.state === "idle" && !this.monitors.has(name)) {
        // Every idle monitor joins: they generate no load and count for nothing in --agents.
        this.monitors.set(name, { name, hello: null, samples: [] });
        await this.inbox(name, { t: "invite", run: this.id, version: VERSION, coordinator: `${hostname()} pid ${process.pid}` });
        continue;
      }
      if (hb.role !== "load" || hb.state !== "idle" || room <= 0) continue;
      this.slots.set(name, {
        name, invitedAt: now, hello: null, assignment: null, at: -1, started: {}, lastFig: null, lastFigAt: 0, heardAt: now,
        latency: newHistogram(), lateness: newHistogram(), final: null, lost: null, error: null, released: false,
      });
      await this.inbox(name, { t: "invite", run: this.id, version: VERSION, coordinator: `${hostname()} pid ${process.pid}` });
      room--;
    }
    // An invited agent that never answered (stopped meanwhile): forget it so another is invited.
    for (const s of this.slots.values()) if (!s.hello && now - s.invitedAt > INVITE_ANSWER_MS) this.slots.delete(s.name);
  }

  private async inbox(name: string, msg: InboxMsg): Promise<void> {
    await this.bus.xadd(keys.inbox(name), encode(msg), INBOX_MAXLEN);
    await this.bus.call("EXPIRE", keys.inbox(name), RUN_KEYS_TTL_S);
  }

  // Plan and barriers

  private async assign(): Promise<LoadPlan> {
    const agents = this.joined().slice(0, this.r.agents);
    let split: FleetPlan;
    try {
      split = splitPlan(this.o, agents.map((s) => ({ name: s.name, info: s.hello!.info })));
    } catch (err) {
      await this.send({ t: "abort", epoch: this.epoch, reason: "the plan does not fit the agents" }).catch(() => {});
      throw err;
    }
    for (const w of split.warnings) this.warnings.push(w);
    const fleet = split.fleet;
    this.fleetPlan = fleet;
    const now = await this.bus.time();
    const rampS = fleet.rate > 0 ? (2 * fleet.connections) / fleet.rate : 0;
    const deadlineAt = now + (READY_TIMEOUT_MS + 600_000 + (rampS + fleet.durationS + fleet.holdS) * 1000);
    for (const a of split.assignments) {
      const slot = this.slots.get(a.name)!;
      slot.assignment = a;
      this.r.log(`agent ${a.name}: ${count(a.share.connections)} connections${a.share.rate ? `, ${count(a.share.rate)} dials/s` : ""}, ${a.plan.workers} worker${a.plan.workers === 1 ? "" : "s"} (it holds ${Number.isFinite(a.capacity) ? count(a.capacity) : "any number"}; first limit: ${a.binding})`);
      await this.send({ t: "assign", to: a.name, epoch: this.epoch, plan: a.plan, fleetPlan: fleet, share: a.share, deadlineAt });
    }
    // Extra agents that joined late are sent back to the registry.
    for (const s of this.joined()) {
      if (!s.assignment) {
        s.released = true;
        await this.send({ t: "release", to: s.name, reason: "enough agents joined" });
      }
    }
    this.deadline = performance.now() + (deadlineAt - now);
    for (const k of runKeys(this.id)) await this.bus.call("EXPIRE", k, Math.ceil((deadlineAt - now) / 1000) + RUN_KEYS_TTL_S);
    return fleet;
  }

  private active(): Slot[] {
    return [...this.slots.values()].filter((s) => s.assignment !== null && !s.lost && s.error === null && s.final === null);
  }

  private assigned(): Slot[] {
    return [...this.slots.values()].filter((s) => s.assignment !== null);
  }

  /** Every agent still running has reached `phase`'s barrier (or gone past it). */
  private allAt(phase: BarrierPhase): boolean {
    const i = PHASES.indexOf(phase);
    return this.active().every((s) => s.at >= i);
  }

  /** Redis away past the grace: the agents finish on their own and write their reports locally. */
  private gaveUp(): boolean {
    return !this.bus.up && this.bus.stateForMs() > this.r.graceS * 1000;
  }

  /** Past the run's deadline and the grace after it: whoever has not reported will not. */
  private pastDeadline(): boolean {
    return performance.now() > this.deadline + this.r.graceS * 1000;
  }

  /** Stop stepping: aborted, Redis gone for good, or past the deadline. */
  private stopped(): boolean {
    return this.aborted !== null || this.gaveUp() || this.pastDeadline();
  }

  private async steps(plan: LoadPlan): Promise<void> {
    await this.until(() => this.allAt("ramp") || this.stopped(), READY_TIMEOUT_MS);
    if (this.stopped()) return;
    if (!this.allAt("ramp")) {
      const slow = this.active().filter((s) => s.at < 0).map((s) => s.name);
      await this.abort(`agents not ready within ${READY_TIMEOUT_MS / 1000} s: ${slow.join(", ")}`);
      throw new RemoteError(`agents ${slow.join(", ")} did not get their workers up within ${READY_TIMEOUT_MS / 1000} s; the run was called off`);
    }
    await this.go("ramp");
    this.phase = "ramp";
    await this.until(() => this.allAt("run") || this.stopped(), Number.MAX_SAFE_INTEGER);
    if (this.stopped()) return;
    this.serverAtRamp = await this.askServer(plan);
    await this.go("run");
    this.window.from = this.seconds();
    this.phase = "run";
    this.pollMs = SLOW_POLL_MS;
    void this.countCommands(true);
    await this.until(() => this.allAt("close") || this.stopped(), Number.MAX_SAFE_INTEGER);
    if (this.stopped()) return;
    this.pollMs = FAST_POLL_MS;
    await this.countCommands(false);
    this.serverAtEnd = await this.askServer(plan);
    await this.go("close");
    this.window.to = this.seconds();
    this.phase = "closing";
  }

  private async go(phase: BarrierPhase): Promise<void> {
    while (!this.stopped()) {
      try {
        const at = (await this.bus.time()) + (phase === "ramp" ? START_LEAD_MS : LEAD_MS);
        await this.send({ t: "go", epoch: this.epoch, phase, at });
        return;
      } catch (err) {
        if (!(err instanceof BusDown)) throw err;
        await sleep(500); // agents wait at the barrier (and go on alone after a while)
      }
    }
  }

  /** Waits for every final report, or the agent lost; bounded by the grace when Redis is away. */
  private async collect(): Promise<void> {
    for (;;) {
      await this.until(() => this.active().length === 0, 1000);
      if (this.active().length === 0) return;
      if (this.gaveUp()) {
        for (const s of this.active()) this.loseAgent(s, `no final report: Redis away for more than ${this.r.graceS} s (the agent writes its report locally: merge it with wsmillion merge)`);
        return;
      }
      if (this.pastDeadline()) {
        for (const s of this.active()) this.loseAgent(s, "no final report by the run's deadline");
        return;
      }
    }
  }

  private async abort(reason: string): Promise<void> {
    if (this.aborted) return;
    this.aborted = reason;
    this.event(`run aborted: ${reason}`);
    this.poke();
    await this.send({ t: "abort", epoch: this.epoch, reason }).catch(() => {});
  }

  /**
   * Redis's own count of commands during the traffic phase, per agent per second (INFO stats; the two INFO
   * calls themselves are taken off). Counts every client of that Redis: a shared one reads higher.
   */
  private async countCommands(start: boolean): Promise<void> {
    try {
      if (start) await sleep(1500); // past the go: the barrier's own messages are not steady state
      if (this.aborted || (!start && !this.commands)) return;
      const info = String(await this.bus.call("INFO", "stats"));
      const total = Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? NaN);
      const at = performance.now();
      if (start) this.commands = { at, total };
      else if (this.commands && Number.isFinite(total)) {
        const s = (at - this.commands.at) / 1000;
        const n = this.assigned().length;
        if (s >= 2 && n > 0) this.commandsPerAgentPerSec = Math.round(((total - this.commands.total - 1) / n / s) * 100) / 100;
      }
    } catch {
      this.commands = null; // Redis away meanwhile: not a steady state
    }
  }

  // Messages

  private async send(msg: CtlMsg): Promise<void> {
    await this.bus.xadd(keys.ctl(this.id), encode(msg));
  }

  private async tick(): Promise<void> {
    try {
      await this.bus.xadd(keys.tick(this.id), "1", 4);
    } catch {
      /* away: ticks resume with Redis */
    }
  }

  private async pollLoop(): Promise<void> {
    while (!this.finished) {
      try {
        await this.poll();
      } catch (err) {
        if (!(err instanceof BusDown)) this.r.log(`coordinator: reading Redis failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      this.poke();
      await sleep(this.pollMs);
    }
  }

  private async poll(): Promise<void> {
    if (!this.bus.up) return;
    for (;;) {
      const got = await this.bus.read([[keys.up(this.id), this.upFrom]]);
      for (const e of got) {
        this.upFrom = e.id;
        this.onUp(decode<UpMsg>(e.m));
      }
      if (got.length < 1000) break;
    }
    await this.checkLost();
  }

  private onUp(msg: UpMsg): void {
    const mon = this.monitors.get(msg.name);
    if (mon) {
      if (msg.t === "hello" && !mon.hello) {
        mon.hello = msg;
        this.r.log(`monitor ${mon.name} joined: ${msg.info.host}, watching ${msg.info.watching ?? "the machine"}`);
      } else if (msg.t === "mon") {
        mon.samples.push({ t: Math.round(((msg.at - this.clock.offsetMs - performance.timeOrigin - this.t0) / 1000) * 10) / 10, ...msg.sample });
      }
      return;
    }
    const s = this.slots.get(msg.name);
    if (msg.t === "busy") {
      if (s && !s.hello) this.slots.delete(msg.name);
      if (!this.busy.has(msg.name)) this.r.log(`agent ${msg.name} did not join: ${msg.reason}`);
      this.busy.add(msg.name);
      return;
    }
    if (!s) return;
    s.heardAt = performance.now();
    if (s.lost && msg.t !== "hello") {
      this.event(`agent ${s.name} is back`);
      s.lost = null;
    }
    switch (msg.t) {
      case "hello":
        if (s.hello) return;
        s.hello = msg;
        if (this.joined().length <= this.r.agents) this.r.log(`agent ${s.name} joined (${this.joined().length}/${this.r.agents}): ${describe(msg)}`);
        return;
      case "at":
        s.at = Math.max(s.at, PHASES.indexOf(msg.phase));
        return;
      case "started":
        s.started[msg.phase] = msg.at;
        s.at = Math.max(s.at, PHASES.indexOf(msg.phase));
        if (msg.alone) this.event(`agent ${s.name} went past the ${msg.phase} barrier alone (Redis was away)`);
        return;
      case "fig":
        s.lastFig = msg;
        s.lastFigAt = performance.now();
        if (msg.latency) {
          mergeEncoded(this.live, msg.latency);
          mergeEncoded(s.latency, msg.latency);
        }
        if (msg.lateness) {
          mergeEncoded(this.liveLateness, msg.lateness);
          mergeEncoded(s.lateness, msg.lateness);
        }
        return;
      case "final":
        s.final = msg.report;
        s.at = PHASES.length;
        if (msg.report.interrupted) this.event(`agent ${s.name} finished early: ${msg.report.interrupted}`);
        return;
      case "error":
        s.error = msg.message;
        this.event(`agent ${s.name} failed: ${msg.message.split("\n")[0]}`);
        return;
    }
  }

  /** An agent silent for a heartbeat's lifetime whose heartbeat key is gone is lost (only while Redis has been up that long). */
  private async checkLost(): Promise<void> {
    const ttlMs = HEARTBEAT_TTL_S * 1000;
    if (!this.bus.up || this.bus.stateForMs() < ttlMs) return;
    const now = performance.now();
    for (const s of this.active()) {
      if (!s.hello || now - s.heardAt < ttlMs) continue;
      if (Number(await this.bus.call("EXISTS", keys.agent(s.name))) === 0) {
        this.loseAgent(s, `no heartbeat for ${HEARTBEAT_TTL_S} s`);
      }
    }
  }

  private loseAgent(s: Slot, reason: string): void {
    const a = s.assignment!;
    const figAt = s.lastFig ? ` (its last figures, ${((performance.now() - s.lastFigAt) / 1000).toFixed(1)} s old, are kept)` : " (no figures came from it)";
    this.event(`agent ${s.name} lost: ${reason}${figAt}; the others go on`);
    const empty: WorkerOutcome = { shard: { index: a.share.index, slots: a.share.connections }, pid: 0, lastFigures: null, errors: {}, ramped: null, held: null, final: null, baseRss: 0, exitCode: null, error: null };
    const outcome = s.lastFig ? withStreamedLatency({ ...s.lastFig.outcome, error: null }, a.plan.mode, hist(s.latency), hist(s.lateness)) : empty;
    s.lost = {
      name: s.name, host: s.hello?.info.host ?? "?", pid: s.hello?.info.pid ?? 0, share: a.share, clock: s.hello?.clock ?? { offsetMs: 0, rttMs: 0 },
      atS: this.seconds(), reason, outcome,
    };
    this.poke();
  }

  private redisChanged(up: boolean): void {
    if (!up) {
      this.event("Redis unreachable; the agents keep running their plan");
      this.commands = null;
      return;
    }
    this.event(`Redis back after ${(this.bus.stateForMs() / 1000).toFixed(1)} s`);
    void (async () => {
      try {
        await this.tick();
        for (const k of runKeys(this.id)) await this.bus.call("EXPIRE", k, RUN_KEYS_TTL_S * 2);
      } catch {
        /* away again */
      }
    })();
  }

  // Waiting

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Resolves when cond() holds (re-checked after every poll) or after timeoutMs. */
  private async until(cond: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!cond() && performance.now() < deadline && !this.finished) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, Math.min(1000, Math.max(1, deadline - performance.now())));
      });
    }
  }

  // Figures

  /**
   * The server's /conns. Twice at most: the first read may go out on a kept-alive connection the server has
   * just closed for idleness (the barriers are seconds apart), and the second then goes on a fresh one.
   */
  private async askServer(plan: LoadPlan): Promise<ServerConns | null> {
    if (!plan.statusUrl) return null;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        // Longer than a local run's 1 s: the server may be far, and the agents wait at the barrier anyway.
        const res = await fetch(plan.statusUrl, { signal: AbortSignal.timeout(3000), keepalive: attempt === 0 });
        const body = (await res.json()) as { conns?: unknown; closed?: unknown };
        if (typeof body.conns === "number") return { conns: body.conns, closed: typeof body.closed === "number" ? body.closed : 0 };
        this.serverError = `${plan.statusUrl} did not answer {"conns":N}`;
        return null;
      } catch (err) {
        this.serverError = `${plan.statusUrl} not reachable (${err instanceof Error ? err.message : String(err)})`;
      }
    }
    this.event(`the server's count could not be read: ${this.serverError}`);
    return null;
  }

  private sample(): void {
    if (!this.bus.up || this.fleetPlan === null) return;
    const now = performance.now();
    const snap: FleetSnapshot = {
      t: this.seconds(), phase: this.phase, target: this.fleetPlan.connections, open: 0, attempted: 0, failed: 0, dropped: 0, dialsPerSec: 0, msgsOutPerSec: 0,
      msgsInPerSec: 0, latencyP50Ms: 0, latencyP99Ms: 0, latenessP99Ms: 0, errors: {}, rssBytes: 0, cpuCores: 0, lagMaxMs: 0, lateWorkers: 0, agents: [], redisDown: false,
    };
    const phases = new Set<LoadPhase>();
    for (const s of this.assigned()) {
      const f = s.final ? { snap: s.final.report.samples.at(-1) ?? null } : { snap: s.lastFig?.snap ?? null };
      const live = s.final === null && !s.lost && s.error === null;
      const late = live && s.lastFig !== null && now - s.lastFigAt > LATE_MS;
      const state: AgentLiveState = s.lost ? "lost" : s.error ? "failed" : s.final ? "done" : late ? "late" : (f.snap?.phase ?? "starting");
      snap.agents.push({ name: s.name, state, open: s.final ? 0 : (f.snap?.open ?? 0) });
      const x = f.snap;
      if (!x) continue;
      if (live) phases.add(x.phase);
      snap.open += live ? x.open : 0;
      snap.attempted += x.attempted;
      snap.failed += x.failed;
      snap.dropped += x.dropped;
      snap.rssBytes += live ? x.rssBytes : 0;
      snap.lagMaxMs = Math.max(snap.lagMaxMs, x.lagMaxMs);
      for (const [k, v] of Object.entries(x.errors)) snap.errors[k] = (snap.errors[k] ?? 0) + v;
      if (!live) continue;
      snap.dialsPerSec += x.dialsPerSec;
      snap.msgsOutPerSec += x.msgsOutPerSec;
      snap.msgsInPerSec += x.msgsInPerSec;
      snap.cpuCores += x.cpuCores;
      snap.lateWorkers += x.lateWorkers + (late ? 1 : 0);
    }
    if (this.phase === "run" && phases.size === 1 && phases.has("hold")) snap.phase = "hold";
    const { live, liveLateness } = this;
    snap.latencyP50Ms = live.totalCount ? live.getValueAtPercentile(50) / 1000 : 0;
    snap.latencyP99Ms = live.totalCount ? live.getValueAtPercentile(99) / 1000 : 0;
    snap.latenessP99Ms = liveLateness.totalCount ? liveLateness.getValueAtPercentile(99) / 1000 : 0;
    live.reset();
    liveLateness.reset();
    snap.cpuCores = Math.round(snap.cpuCores * 100) / 100;
    if (snap.open > this.peakOpen) this.peakOpen = snap.open;
    this.samples.push(stripAgents(snap));
    this.r.onProgress?.(snap);
  }

  private report(plan: LoadPlan): FleetReport {
    const slots = this.assigned();
    const reports = slots.map((s) => s.final).filter((f): f is AgentReport => f !== null);
    const lost = slots.map((s) => s.lost).filter((l): l is LostAgent => l !== null);
    for (const s of slots) {
      if (s.error && !s.final && !s.lost) {
        this.loseAgent(s, `failed: ${s.error.split("\n")[0]}`);
        lost.push(s.lost!);
      }
    }
    if (this.aborted) this.warnings.push(`the run was aborted: ${this.aborted}`);
    return mergeFleet({ id: this.id, epoch: this.epoch, redis: this.r.url.display }, plan, reports, lost, {
      samples: this.samples, warnings: this.warnings, events: this.events, peakOpen: this.peakOpen,
      serverAtRamp: this.serverAtRamp, serverAtEnd: this.serverAtEnd, serverError: this.serverError, redisCommandsPerAgentPerSec: this.commandsPerAgentPerSec,
      monitors: [...this.monitors.values()].filter((m) => m.hello !== null).map((m) => ({
        name: m.name, host: m.hello!.info.host, watching: m.hello!.info.watching ?? "the machine", samples: m.samples,
        traffic: summarizeMonitor(m.samples, this.window.from, Math.min(this.window.to, this.seconds())),
      })),
    });
  }
}

function hist(h: ReturnType<typeof newHistogram>): string {
  return h.totalCount > 0 ? encodeHistogram(h) : "";
}

function stripAgents(s: FleetSnapshot): ProgressSnapshot {
  const { agents: _a, redisDown: _r, ...rest } = s;
  return rest;
}

/** An agent's machine in one line: what the capacity model reads there. */
function describe(h: Extract<UpMsg, { t: "hello" }>): string {
  const l = h.info.limits;
  const range = l.portRange.value;
  const mem = l.memAvailable.value;
  return [
    h.info.host,
    `${h.info.cores} cores`,
    mem !== null ? `${bytes(mem)} available` : "memory unknown",
    `open files ${count(workerNofile(l))}`,
    range ? `ports ${range.low}-${range.high} (${count(portsPerPair(l))} per destination)` : "ports unknown",
    `sources ${h.info.sources.join(" ") || "none"}`,
    `clock offset ${h.clock.offsetMs >= 0 ? "+" : ""}${h.clock.offsetMs} ms (rtt ${h.clock.rttMs} ms)`,
  ].join(", ");
}
