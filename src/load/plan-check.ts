// The load command's flags -> LoadPlan (through completePlan), and the pre-dial check of that plan against
// the machine's limits (open files per process, ephemeral ports per destination pair, memory). Mistakes
// are UsageErrors (one line each, exit 2) naming the flag and the fix.
import { readFileSync } from "node:fs";
import { UsageError } from "../flags.ts";
import { readLimits, type Limits } from "../system/limits.ts";
import { parseTargets, parseWsUrl, specScheme, type Target } from "../system/targets.ts";
import { portsPerPair, processesFor, socketsPerProcess, startupWarnings, workerNofile } from "../system/capacity.ts";
import { DEFAULT_PATH, completePlan, isSending, loadWorkersFor, slotsOf, type LoadMode, type LoadPlan, type TlsPlan } from "./plan.ts";
import { parsePayload } from "./payload.ts";
import type { DeflateOffer } from "../protocol/deflate.ts";
import { STAMP_BYTES } from "../protocol/stamp.ts";

/** What the load command's flags say, before resolution. */
export interface LoadOptions {
  url?: string;
  addr?: string;
  path?: string;
  targets?: string;
  connections: number;
  concurrency: number;
  rate: number;
  duration: number;
  hold: number;
  interval: number;
  inFlight: number;
  size: number;
  mode: LoadMode;
  workers: number | "auto";
  header: string[];
  subprotocol: string[];
  handshakeTimeoutMs: number;
  reconnect: boolean;
  source?: string;
  sourcePorts: "explicit" | "kernel";
  maxMessage: number;
  statusUrl?: string;
  /** false with --no-check: dial even when the plan check says it cannot work. */
  check: boolean;
  /** --tls: wss for --addr/--targets given without a scheme. */
  tls: boolean;
  insecure: boolean;
  /** --ca FILE: PEM CA(s) to trust. */
  ca?: string;
  servername?: string;
  deflate: boolean;
  deflateClientNoContextTakeover: boolean;
  deflateServerNoContextTakeover: boolean;
  /** true: offered without a value (the server picks). */
  deflateClientMaxWindowBits?: number | true;
  deflateServerMaxWindowBits?: number;
  /** --payload: fill | random | text | file:PATH. */
  payload: string;
}

export interface ResolvedPlan {
  plan: LoadPlan;
  /** Things worth saying before dialing that do not stop the run. */
  warnings: string[];
}

/** `127.0.0.2-9,10.0.0.5` -> addresses. */
export function parseSources(spec: string): string[] {
  const out: string[] = [];
  for (const raw of spec.split(",")) {
    const part = raw.trim();
    const m = /^(\d+\.\d+\.\d+)\.(\d+)(?:-(\d+))?$/.exec(part);
    if (m) {
      const lo = Number(m[2]);
      const hi = Number(m[3] ?? m[2]);
      if (lo > 255 || hi > 255 || lo > hi) throw new UsageError(`--source: bad address range '${part}'; use e.g. 127.0.0.2-9`);
      for (let o = lo; o <= hi; o++) out.push(`${m[1]}.${o}`);
    } else if (/^[0-9a-fA-F:]+$/.test(part) && part.includes(":")) {
      out.push(part);
    } else {
      throw new UsageError(`--source: '${part}' is not an IP address or range; use e.g. 127.0.0.2-9 or 10.0.0.5,10.0.0.6`);
    }
  }
  return out;
}

function parseHeader(raw: string): [string, string] {
  const i = raw.indexOf(":");
  const k = i > 0 ? raw.slice(0, i).trim() : "";
  if (!k || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k)) throw new UsageError(`--header takes Name:value, got '${raw}'`);
  const reserved = ["host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions"];
  const instead: Record<string, string> = { "sec-websocket-protocol": "; use --subprotocol", "sec-websocket-extensions": "; use --deflate" };
  if (reserved.includes(k.toLowerCase())) throw new UsageError(`--header ${k} is set by the client itself${instead[k.toLowerCase()] ?? ""}`);
  return [k, raw.slice(i + 1).trim()];
}

export function resolveTargets(o: Pick<LoadOptions, "url" | "addr" | "targets" | "path" | "tls">): { targets: Target[]; path: string; tls: boolean } {
  let path = o.path;
  let targets: Target[] = [];
  // TLS or not, as the URL's scheme, a scheme in --addr/--targets, or --tls say; they must agree.
  let tls: boolean | null = null;
  let tlsFrom = "";
  const scheme = (said: boolean | null, where: string): void => {
    if (said === null) return;
    if (tls !== null && tls !== said) throw new UsageError(`${where} says ${said ? "wss://" : "ws://"} but ${tlsFrom} says ${tls ? "wss://" : "ws://"}; one run is either TLS or not`);
    tls = said;
    tlsFrom = where;
  };
  if (o.url) {
    if (!/^wss?:\/\//i.test(o.url)) throw new UsageError(`the target URL must start with ws:// or wss://, got '${o.url}' (or use -addr host:port)`);
    const url = parseWsUrl(o.url, "URL", true);
    targets = url.targets;
    path ??= url.path ?? "/";
    scheme(url.tls, "the URL");
  }
  if (o.addr) {
    if (o.url) throw new UsageError(`give either a ws:// URL or --addr (-addr), not both`);
    targets = parseTargets(o.addr, "--addr");
    scheme(specScheme(o.addr, "--addr"), "--addr");
  }
  if (o.targets) {
    targets = parseTargets(o.targets, "--targets");
    scheme(specScheme(o.targets, "--targets"), "--targets");
  }
  if (o.tls) scheme(true, "--tls");
  if (targets.length === 0) throw new UsageError(`no server to load: give ws://host:port/path, -addr host:port or --targets 127.0.0.1-16:8080`);
  path ??= DEFAULT_PATH;
  if (!path.startsWith("/")) throw new UsageError(`--path must start with '/', got '${path}'`);
  return { targets, path, tls: tls ?? false };
}

function resolveTls(o: LoadOptions, tls: boolean): TlsPlan | null {
  if (!tls) {
    const stray = o.insecure ? "--insecure" : o.ca !== undefined ? "--ca" : o.servername !== undefined ? "--servername" : null;
    if (stray !== null) throw new UsageError(`${stray} is a TLS option: use a wss:// URL, or --tls with --addr/--targets`);
    return null;
  }
  if (o.insecure && o.ca !== undefined) throw new UsageError(`give either --ca FILE (trust that CA) or --insecure (accept any certificate), not both`);
  if (o.ca !== undefined) {
    let pem: string;
    try {
      pem = readFileSync(o.ca, "utf8");
    } catch (err) {
      throw new UsageError(`--ca ${o.ca}: cannot read the file (${err instanceof Error ? err.message : String(err)})`);
    }
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new UsageError(`--ca ${o.ca}: no PEM certificate in the file (expected -----BEGIN CERTIFICATE-----)`);
  }
  if (o.servername !== undefined && !/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(o.servername)) {
    throw new UsageError(`--servername takes the host name the server's certificate was issued for, got '${o.servername}'`);
  }
  return { insecure: o.insecure, caFile: o.ca ?? null, serverName: o.servername ?? null };
}

/** The permessage-deflate offer: --deflate, or any --deflate-* parameter (each implies it). */
function resolveDeflate(o: LoadOptions): DeflateOffer | null {
  const client = o.deflateClientMaxWindowBits;
  const server = o.deflateServerMaxWindowBits;
  const any = o.deflate || o.deflateClientNoContextTakeover || o.deflateServerNoContextTakeover || client !== undefined || server !== undefined;
  if (!any) return null;
  return {
    clientNoContextTakeover: o.deflateClientNoContextTakeover,
    serverNoContextTakeover: o.deflateServerNoContextTakeover,
    clientMaxWindowBits: client ?? null,
    serverMaxWindowBits: server ?? null,
  };
}

export function resolvePlan(o: LoadOptions, limits: Limits = readLimits()): ResolvedPlan {
  const warnings: string[] = [];
  const { targets, path, tls: wss } = resolveTargets(o);
  const tls = resolveTls(o, wss);
  const deflate = resolveDeflate(o);
  const payload = parsePayload(o.payload);
  const connections = o.connections;
  const nofile = workerNofile(limits);
  const perProcess = socketsPerProcess(nofile);
  const problems: string[] = [];

  let workers: number;
  if (perProcess <= 0) {
    problems.push(`open-files limit ${nofile} leaves no room for sockets (each worker keeps ${nofile - perProcess} for itself); raise ulimit -n`);
    workers = o.workers === "auto" ? 1 : o.workers;
  } else if (o.workers === "auto") {
    workers = loadWorkersFor(connections, nofile);
  } else {
    workers = Math.min(o.workers, Math.max(1, connections));
    const busiest = slotsOf(0, workers, connections);
    if (busiest > perProcess) {
      problems.push(`--workers ${o.workers}: each worker would hold ${busiest} sockets but the open-files limit (${nofile}) allows ${perProcess}; use --workers ${processesFor(connections, nofile)} or --workers auto`);
    }
  }

  const sources = o.source ? parseSources(o.source) : [];
  if (sources.length > 0) {
    const ports = portsPerPair(limits);
    const per = Math.ceil(connections / sources.length);
    if (per > ports) {
      problems.push(`--source: ${per} connections per source address exceed its ${ports} ephemeral ports; add source addresses (--source ${sources[0]}-${Math.ceil(connections / ports) + 1}) or drop --source`);
    }
  } else {
    // Deflate costs memory only where a window is kept: asking for no takeover both ways keeps none (the
    // server must accept server_no_context_takeover by including it).
    const windows = deflate !== null && !(deflate.clientNoContextTakeover && deflate.serverNoContextTakeover);
    for (const line of startupWarnings({ role: "client", connections, targets, tls: tls !== null, deflate: windows }, limits)) problems.push(line);
  }
  if (problems.length > 0) {
    if (o.check) throw new UsageError(`${problems.join("\n")}\n(plan check failed; fix the above, or pass --no-check to dial anyway and see the failures)`);
    for (const p of problems) warnings.push(`${p} (--no-check: dialing anyway)`);
  }

  const sending = isSending(o.mode);
  if (o.interval > 0 && o.interval < 0.001) throw new UsageError(`--interval ${o.interval}: the shortest interval is 0.001 ms (a million messages a second per connection)`);
  if (o.inFlight > 0 && o.mode !== "echo") throw new UsageError(`--in-flight needs --mode echo (the next message goes when an echo returns), got --mode ${o.mode}`);
  if (sending && o.interval > 0 && o.size < STAMP_BYTES) {
    warnings.push(`--size ${o.size}: payloads under ${STAMP_BYTES} bytes carry no timestamp, so no round trips are measured`);
  }
  if (o.mode === "echo" && o.interval === 0 && o.inFlight === 0) warnings.push(`--interval 0 with --mode echo: connections stay idle (no round trips)`);
  if (deflate !== null && payload === "fill" && sending) {
    warnings.push(`--deflate with --payload fill: runs of 'x' compress far better than real messages; --payload text sends JSON-like text`);
  }
  if (o.rate > 0 && o.rate < workers) warnings.push(`--rate ${o.rate} is below one dial per second per worker; each worker still dials at 1/s`);

  let sourcePortBase = 0;
  if (sources.length > 0 && o.sourcePorts === "explicit") {
    const r = limits.portRange.value;
    sourcePortBase = r ? r.low : 32768;
  }

  const plan = completePlan(
    {
      targets,
      path,
      connections,
      concurrency: o.concurrency,
      rate: o.rate,
      durationS: o.duration,
      holdS: o.hold,
      intervalMs: o.interval,
      inFlight: o.inFlight,
      size: o.size,
      payload,
      tls,
      deflate,
      mode: o.mode,
      headers: o.header.map(parseHeader),
      subprotocols: o.subprotocol,
      handshakeTimeoutMs: o.handshakeTimeoutMs,
      reconnect: o.reconnect,
      workers,
      sources,
      sourcePortBase,
      maxMessage: o.maxMessage,
      ...(o.statusUrl !== undefined ? { statusUrl: o.statusUrl === "off" ? null : o.statusUrl } : {}),
    },
    nofile,
  );
  return { warnings, plan };
}
