// The agent: one long-running process per client machine. It announces itself (a heartbeat key, the
// registry), waits for an invitation, says what its machine can hold, runs its share of a plan with the
// local engine (runLoad: its workers are separate processes, so this loop stays light and its timers are
// never starved), steps through the run's barriers at the instants the coordinator sets on Redis's clock,
// streams its figures once a second, and sends its final report; then it waits for the next run.
//
// Faults: Redis away -> the plan goes on, figures are buffered (bounded) and sent when it is back; away past
// --redis-grace, or still away at the end, the final report is written locally for `wsmillion merge`. The
// coordinator gone (no tick while Redis answers) or past the run's deadline -> the plan stops and the
// connections close. Ctrl-C or SIGTERM -> the same, then the agent leaves the registry.
import { randomUUID } from "node:crypto";
import { cpus, hostname, networkInterfaces } from "node:os";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Bus, BusDown, BusError, type StreamEntry } from "../bus/redis.ts";
import type { RedisUrl } from "../bus/url.ts";
import { runLoad, type BarrierPhase, type LiveFigures } from "../load/coordinator.ts";
import type { LoadReport, WorkerOutcome } from "../load/report.ts";
import { readLimits } from "../system/limits.ts";
import { SelfSampler } from "../system/self.ts";
import type { MachineMonitor } from "./monitor.ts";
import { sleep } from "../sleep.ts";
import { count } from "../format.ts";
import {
  COORDINATOR_LOST_MS, HEARTBEAT_EVERY_MS, HEARTBEAT_TTL_S, READ_BLOCK_MS, RUN_KEYS_TTL_S, UP_MAXLEN, VERSION, decode, encode, foldOutcomes, keys, plainOutcome,
  type AgentInfo, type AgentReport, type AgentRole, type AgentState, type Clock, type CtlMsg, type Heartbeat, type InboxMsg, type UpMsg,
} from "./protocol.ts";

export interface AgentOptions {
  url: RedisUrl;
  name: string;
  role: AgentRole;
  /** Seconds Redis may stay away before the run's final report is meant for a local file. */
  graceS: number;
  /** Where final reports that Redis could not take are written. */
  outDir: string;
  /** A monitor (role "monitor") samples the target's machine into each run instead of generating load. */
  monitor: MachineMonitor | null;
  log(line: string): void;
}

const PHASES: readonly BarrierPhase[] = ["ramp", "run", "close"];
/** Figures kept while Redis is away: ten minutes of them; older ones are dropped (the final report has it all). */
const FIGURES_KEPT = 600;
/** At a barrier after the start, Redis away this long: go on alone (the plan runs on without Redis). */
const ALONE_AFTER_MS = 10_000;

export class NameTaken extends BusError {}

/** One run this agent is part of. */
class Run {
  ctlFrom = "0-0";
  tickFrom = "0-0";
  assign: Extract<CtlMsg, { t: "assign" }> | null = null;
  readonly abort = new AbortController();
  readonly go = new Map<BarrierPhase, number>();
  lastTick = performance.now();
  readonly started: Record<BarrierPhase, number | null> = { ramp: null, run: null, close: null };
  seq = 0;
  interrupted: string | null = null;
  /** No tick while Redis answered: nobody reads the run's stream any more. */
  coordinatorGone = false;
  outcomes: WorkerOutcome[] = [];
  open = 0;
  outages: number[] = [];
  cutOff = false;
  /** A monitor's once-a-second sampling while it is in the run. */
  sampler: ReturnType<typeof setInterval> | null = null;
  done: Promise<void> = Promise.resolve();

  constructor(
    readonly id: string,
    public clock: Clock,
  ) {}

  stop(why: string): void {
    if (this.abort.signal.aborted) return;
    this.interrupted ??= why;
    this.abort.abort();
  }
}

export class Agent {
  private readonly instance = randomUUID().slice(0, 8);
  private state: AgentState = "idle";
  private run: Run | null = null;
  private inboxFrom = "0-0";
  private stopping = false;
  /** Messages for the coordinator, sent in order; figures are dropped first when Redis stays away. */
  private outbox: { stream: string; m: string; fig: boolean }[] = [];
  private flushing = false;
  private downSince: number | null = null;
  private readonly self = new SelfSampler();
  private timer: ReturnType<typeof setInterval> | null = null;
  private beatAt = 0;

  private constructor(
    private readonly bus: Bus,
    private readonly o: AgentOptions,
    private clock: Clock,
    private readonly info: AgentInfo,
  ) {}

  /** Connects, claims the name and registers; a BusError (one line, exit 2) when Redis or the name cannot be had. */
  static async start(o: AgentOptions): Promise<Agent> {
    const bus = await Bus.open(o.url, { reader: true });
    try {
      const clock = await bus.clock();
      const info: AgentInfo = { host: hostname(), pid: process.pid, cores: cpus().length, limits: readLimits(), sources: ipv4Sources(), watching: o.monitor?.describe() ?? null };
      const agent = new Agent(bus, o, clock, info);
      await agent.claim();
      return agent;
    } catch (err) {
      bus.close();
      throw err;
    }
  }

  private heartbeat(): Heartbeat {
    const s = this.self.sample();
    return {
      name: this.o.name, instance: this.instance, version: VERSION, role: this.o.role, state: this.state, run: this.run?.id ?? null,
      host: this.info.host, pid: process.pid, open: this.run?.open ?? 0, cpuCores: Math.round(s.cpuCores * 100) / 100, rssBytes: s.rssBytes,
    };
  }

  /** The name is ours only while no other live agent holds it: its heartbeat key is the lock. */
  private async claim(): Promise<void> {
    const key = keys.agent(this.o.name);
    if (!(await this.bus.set(key, encode(this.heartbeat()), HEARTBEAT_TTL_S, "NX"))) {
      const held = await this.bus.get(key);
      const other = held ? decode<Heartbeat>(held) : null;
      throw new NameTaken(
        `the agent name '${this.o.name}' is taken by a live agent${other ? ` (pid ${other.pid} on ${other.host}, ${other.state})` : ""}; give this one another --name ` +
          `(a stopped agent's heartbeat expires within ${HEARTBEAT_TTL_S} s)`,
      );
    }
    this.inboxFrom = await this.bus.lastId(keys.inbox(this.o.name));
    await this.bus.call("SADD", keys.registry, this.o.name);
    this.beatAt = performance.now();
  }

  get where(): string {
    return this.bus.url.display;
  }

  get clockNow(): Clock {
    return this.clock;
  }

  /** Runs until the signal: reads invitations and the run's control stream, beats, sends what is queued. */
  async serve(signal: AbortSignal): Promise<void> {
    this.bus.onChange = (up) => this.redisChanged(up);
    this.timer = setInterval(() => this.second(), 1000);
    signal.addEventListener("abort", () => void this.leave(), { once: true });
    while (!this.stopping) {
      const from: [string, string][] = [[keys.inbox(this.o.name), this.inboxFrom]];
      const run = this.run;
      if (run) from.push([keys.ctl(run.id), run.ctlFrom], [keys.tick(run.id), run.tickFrom]);
      let got: StreamEntry[];
      try {
        got = await this.bus.readBlocking(from, READ_BLOCK_MS);
      } catch (err) {
        if (this.stopping) break;
        if (!(err instanceof BusDown)) this.o.log(`agent ${this.o.name}: reading from Redis failed: ${err instanceof Error ? err.message : String(err)}`);
        await sleep(1000);
        continue;
      }
      for (const e of got) {
        if (e.stream === keys.inbox(this.o.name)) {
          this.inboxFrom = e.id;
          this.onInbox(decode<InboxMsg>(e.m));
        } else if (run && e.stream === keys.ctl(run.id)) {
          run.ctlFrom = e.id;
          this.onCtl(run, decode<CtlMsg>(e.m));
        } else if (run && e.stream === keys.tick(run.id)) {
          run.tickFrom = e.id;
          run.lastTick = performance.now();
        }
      }
    }
  }

  /** Every second: the coordinator's tick checked, queued messages sent, the heartbeat every few seconds. */
  private second(): void {
    const run = this.run;
    const now = performance.now();
    if (run && this.bus.up && this.bus.stateForMs() > COORDINATOR_LOST_MS && now - run.lastTick > COORDINATOR_LOST_MS) {
      run.lastTick = now;
      this.o.log(`agent ${this.o.name}: run ${run.id}: the coordinator is gone (no tick for ${Math.round(COORDINATOR_LOST_MS / 1000)} s); stopping the plan`);
      run.coordinatorGone = true;
      if (run.assign) run.stop("the coordinator is gone");
      else this.leaveRun(run);
    }
    if (this.downSince !== null && run && !run.cutOff && now - this.downSince > this.o.graceS * 1000) {
      run.cutOff = true;
      this.o.log(`agent ${this.o.name}: Redis away for ${this.o.graceS} s (--redis-grace): the plan goes on; its final report will be written locally`);
    }
    void this.flush();
    if (now - this.beatAt >= HEARTBEAT_EVERY_MS) void this.beat();
  }

  private async beat(): Promise<void> {
    if (!this.bus.up) return;
    this.beatAt = performance.now();
    try {
      await this.bus.set(keys.agent(this.o.name), encode(this.heartbeat()), HEARTBEAT_TTL_S);
    } catch {
      /* away: the next beat follows the reconnect */
    }
  }

  private redisChanged(up: boolean): void {
    const now = performance.now();
    if (!up) {
      this.downSince = now;
      this.o.log(`agent ${this.o.name}: Redis unreachable; ${this.run?.assign ? "the plan goes on, figures are kept" : "waiting for it"}`);
      return;
    }
    const away = this.downSince === null ? 0 : now - this.downSince;
    this.downSince = null;
    this.run?.outages.push(Math.round(away));
    this.o.log(`agent ${this.o.name}: Redis back after ${(away / 1000).toFixed(1)} s${this.outbox.length ? `; sending ${this.outbox.length} queued messages` : ""}`);
    void (async () => {
      try {
        // A Redis that restarted has lost everything: the registry entry and the heartbeat come back first.
        await this.bus.call("SADD", keys.registry, this.o.name);
        await this.beat();
        await this.flush();
      } catch {
        /* away again: the next reconnect does this again */
      }
    })();
  }

  private send(run: Run, msg: UpMsg): void {
    const fig = msg.t === "fig" || msg.t === "mon";
    if (fig && run.cutOff && this.downSince !== null) return;
    this.outbox.push({ stream: keys.up(run.id), m: encode(msg), fig });
    if (this.outbox.length > FIGURES_KEPT) {
      const i = this.outbox.findIndex((e) => e.fig);
      if (i >= 0) this.outbox.splice(i, 1);
    }
    void this.flush();
  }

  /** Sends what is queued, in order, while Redis answers. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.outbox.length > 0 && this.bus.up) {
        const e = this.outbox[0]!;
        await this.bus.xadd(e.stream, e.m, UP_MAXLEN);
        this.outbox.shift();
      }
    } catch {
      /* away: kept for later */
    } finally {
      this.flushing = false;
    }
  }

  /** Resolves true once everything queued for the run is sent, false when that does not happen within ms. */
  private async drained(ms: number): Promise<boolean> {
    const until = performance.now() + ms;
    for (;;) {
      await this.flush();
      if (this.outbox.length === 0) return true;
      if (performance.now() > until) return false;
      await sleep(250);
    }
  }

  private onInbox(msg: InboxMsg): void {
    if (msg.t === "refuse") {
      this.o.log(`agent ${this.o.name}: refused by run ${msg.run}: ${msg.reason}`);
      return;
    }
    if (msg.version !== VERSION) {
      this.o.log(`agent ${this.o.name}: refused run ${msg.run}: its coordinator runs wsmillion ${msg.version}, this agent ${VERSION}`);
      void this.bus.xadd(keys.up(msg.run), encode({ t: "busy", name: this.o.name, reason: `runs wsmillion ${VERSION}` } satisfies UpMsg)).catch(() => {});
      return;
    }
    if (this.run || this.stopping) {
      void this.bus.xadd(keys.up(msg.run), encode({ t: "busy", name: this.o.name, reason: this.run ? `in run ${this.run.id}` : "stopping" } satisfies UpMsg)).catch(() => {});
      return;
    }
    this.join(msg);
  }

  /** Joins at once (the reader's next wait already includes the run's streams), then says hello with a fresh clock. */
  private join(msg: Extract<InboxMsg, { t: "invite" }>): void {
    const run = new Run(msg.run, this.clock);
    this.run = run;
    this.state = "joined";
    void (async () => {
      try {
        this.clock = await this.bus.clock();
        run.clock = this.clock;
      } catch {
        /* away: the offset measured before stands */
      }
      this.o.log(`agent ${this.o.name}: joined run ${run.id} (coordinator ${msg.coordinator}); clock offset ${signed(run.clock.offsetMs)} ms (rtt ${run.clock.rttMs} ms)`);
      this.send(run, { t: "hello", name: this.o.name, instance: this.instance, version: VERSION, role: this.o.role, info: this.info, clock: run.clock });
      await this.beat();
    })();
    const monitor = this.o.monitor;
    if (monitor) {
      monitor.sample(); // a fresh interval: the first sample covers the run's first second
      run.sampler = setInterval(() => this.send(run, { t: "mon", name: this.o.name, at: Date.now() + run.clock.offsetMs, sample: monitor.sample() }), 1000);
    }
  }

  private onCtl(run: Run, msg: CtlMsg): void {
    switch (msg.t) {
      case "assign":
        if (msg.to !== this.o.name || run.assign) return; // replayed: already running it
        run.assign = msg;
        this.state = "running";
        run.done = this.runPlan(run, msg);
        return;
      case "go":
        if (run.assign?.epoch === msg.epoch) run.go.set(msg.phase, msg.at);
        return;
      case "release":
        if (msg.to === this.o.name && !run.assign) {
          this.o.log(`agent ${this.o.name}: released from run ${run.id}: ${msg.reason}`);
          this.leaveRun(run);
        }
        return;
      case "abort":
        if (!run.assign) {
          this.o.log(`agent ${this.o.name}: run ${run.id} called off before it started: ${msg.reason}`);
          this.leaveRun(run);
        } else if (run.assign.epoch === msg.epoch) {
          this.o.log(`agent ${this.o.name}: run ${run.id} aborted by the coordinator: ${msg.reason}`);
          run.stop(`aborted by the coordinator: ${msg.reason}`);
        }
        return;
      case "end":
        if (!run.assign) this.leaveRun(run);
        else run.stop("the coordinator ended the run");
        return;
    }
  }

  private leaveRun(run: Run): void {
    if (run.sampler) clearInterval(run.sampler);
    if (this.run !== run) return;
    this.run = null;
    this.state = "idle";
    void this.beat();
  }

  /** Runs the assigned plan through the local engine, then sends (or writes) the final report. */
  private async runPlan(run: Run, a: Extract<CtlMsg, { t: "assign" }>): Promise<void> {
    const p = a.plan;
    this.o.log(`agent ${this.o.name}: run ${run.id}: ${count(p.connections)} connections (slots ${count(a.share.first)}..${count(a.share.first + p.connections - 1)}), ${p.workers} worker${p.workers === 1 ? "" : "s"}`);
    const deadline = setTimeout(() => run.stop("past the run's deadline"), Math.max(0, a.deadlineAt - run.clock.offsetMs - Date.now()));
    let report: LoadReport | null = null;
    try {
      report = await runLoad(p, {
        signal: run.abort.signal,
        barrier: (phase) => this.barrier(run, a.epoch, phase),
        onFigures: (f) => this.figures(run, a.epoch, f),
        // The server closes the whole fleet's connections at once, ours among them.
        closingConnections: a.fleetPlan.connections,
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.o.log(`agent ${this.o.name}: run ${run.id} failed: ${message}`);
      this.send(run, { t: "error", name: this.o.name, epoch: a.epoch, message });
    } finally {
      clearTimeout(deadline);
    }
    if (report) await this.finish(run, a, report);
    else await this.drained(this.o.graceS * 1000);
    this.leaveRun(run);
  }

  private async finish(run: Run, a: Extract<CtlMsg, { t: "assign" }>, report: LoadReport): Promise<void> {
    const final: AgentReport = {
      schema: "wsmillion.agent-report/1",
      agent: { name: this.o.name, host: this.info.host, pid: process.pid, version: VERSION, instance: this.instance },
      run: { id: run.id, epoch: a.epoch, redis: this.bus.url.display },
      fleetPlan: a.fleetPlan,
      share: a.share,
      clock: run.clock,
      started: run.started,
      outcomes: run.outcomes,
      report,
      interrupted: run.interrupted,
      redisOutagesMs: run.outages,
    };
    this.send(run, { t: "final", name: this.o.name, epoch: a.epoch, report: final });
    const sent = await this.drained(run.cutOff ? 2000 : this.o.graceS * 1000);
    if (sent) {
      // The up stream may have expired with a coordinator long gone: keep it from staying forever.
      await this.bus.call("EXPIRE", keys.up(run.id), RUN_KEYS_TTL_S, "NX").catch(() => {});
    }
    const verdict = report.verdict.met ? "plan met" : "plan NOT met";
    if (sent && !run.cutOff && !run.coordinatorGone) {
      this.o.log(`agent ${this.o.name}: run ${run.id} done (${verdict}${run.interrupted ? `; ${run.interrupted}` : ""}); final report sent`);
      return;
    }
    const path = resolve(join(this.o.outDir, `wsmillion-agent-${this.o.name}-${run.id}.json`));
    writeFileSync(path, JSON.stringify(final, null, 2) + "\n");
    // The outbox keeps the final for Redis's return only while this agent waits for a run; a new run starts clean.
    this.outbox = this.outbox.filter((e) => e.stream !== keys.up(run.id));
    const why = run.coordinatorGone ? "the coordinator is gone" : sent ? "Redis was away past --redis-grace" : "Redis unreachable";
    this.o.log(`agent ${this.o.name}: run ${run.id} done (${verdict}); ${why}: final report written to ${path} (merge it with: wsmillion merge ${path} ...)`);
  }

  /** Waits at a barrier for the coordinator's go instant, then until that instant on this machine's clock. */
  private async barrier(run: Run, epoch: number, phase: BarrierPhase): Promise<void> {
    const signal = run.abort.signal;
    if (signal.aborted) return;
    this.send(run, { t: "at", name: this.o.name, epoch, phase });
    const later = PHASES.slice(PHASES.indexOf(phase));
    let at: number | undefined;
    let alone = false;
    while (!signal.aborted) {
      at = later.map((p) => run.go.get(p)).find((v) => v !== undefined);
      if (at !== undefined) break;
      if (!this.bus.up && this.bus.stateForMs() > ALONE_AFTER_MS) {
        if (phase === "ramp") {
          run.stop("Redis unreachable before the start");
          return;
        }
        alone = true;
        this.o.log(`agent ${this.o.name}: run ${run.id}: Redis away at the ${phase} barrier; going on alone`);
        break;
      }
      await sleep(20);
    }
    if (signal.aborted) return;
    if (at !== undefined) await sleep(Math.max(0, at - run.clock.offsetMs - Date.now()), signal);
    const now = Date.now() + run.clock.offsetMs;
    run.started[phase] = now;
    this.send(run, { t: "started", name: this.o.name, epoch, phase, at: now, alone });
  }

  private figures(run: Run, epoch: number, f: LiveFigures): void {
    run.outcomes = f.outcomes.map(plainOutcome);
    run.open = f.snap.open;
    const a = run.assign!;
    this.send(run, {
      t: "fig", name: this.o.name, epoch, seq: run.seq++, at: Date.now() + run.clock.offsetMs, snap: f.snap,
      outcome: foldOutcomes(run.outcomes, a.share.index, a.share.connections, process.pid), latency: f.recentLatency, lateness: f.recentLateness,
    });
  }

  /** Stops the run (its connections close), waits for its final report to go out, and leaves the registry. */
  private async leave(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.state = "leaving";
    const run = this.run;
    if (run) {
      this.o.log(`agent ${this.o.name}: stopping: closing the run's connections`);
      run.stop("the agent was stopped");
      await run.done;
    }
    if (this.timer) clearInterval(this.timer);
    try {
      await this.bus.call("DEL", keys.agent(this.o.name));
      await this.bus.call("SREM", keys.registry, this.o.name);
    } catch {
      /* away: the heartbeat expires by itself */
    }
    this.bus.close();
    this.o.log(`agent ${this.o.name}: left`);
  }
}

/** IPv4 addresses of this machine's interfaces, loopback last. */
function ipv4Sources(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === "IPv4") out.push(a.address);
  return out.sort((a, b) => Number(a.startsWith("127.")) - Number(b.startsWith("127.")));
}

const signed = (v: number): string => (v >= 0 ? `+${v}` : String(v));
