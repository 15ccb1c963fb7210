// Destination lists for the load generator and the doctor. Spreading over destination (address, port)
// pairs is how one client box passes the ephemeral port range: Linux reuses a local port across
// different destinations, so every pair brings a whole range (see docs in capacity.ts).
import { UsageError } from "../flags.ts";

export interface Target {
  host: string;
  port: number;
}

/** Expanding `10.0.0.1-255:1-65535` by mistake would allocate millions of objects; no plan needs that many. */
export const MAX_TARGETS = 65536;

const FORMS = "host:port, 127.0.0.1-16:8080 (last-octet range), 127.0.0.1:8080-8083 (port range), a comma list of those, or ws://host:port/path";

function fail(flag: string, part: string, why: string): never {
  throw new UsageError(`${flag}: '${part}' ${why}; use ${FORMS}`);
}

function range(flag: string, part: string, text: string, min: number, max: number, what: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  if (!m) fail(flag, part, `has a bad ${what} '${text}'`);
  const lo = Number(m[1]);
  const hi = Number(m[2] ?? m[1]);
  if (lo < min || hi > max) fail(flag, part, `has ${what} ${text} outside ${min}-${max}`);
  if (lo > hi) fail(flag, part, `has a ${what} range ${text} that runs backwards`);
  return [lo, hi];
}

/** Splits `host:port` where host may be `[v6]`, a name, or a dotted quad with a last-octet range. */
function splitAuthority(flag: string, part: string, authority: string, defaultPort?: number): { host: string; ports: string } {
  if (authority.startsWith("[")) {
    const end = authority.indexOf("]");
    if (end < 0) fail(flag, part, "has an unclosed [ in its IPv6 address");
    const rest = authority.slice(end + 1);
    if (rest === "" && defaultPort !== undefined) return { host: authority.slice(1, end), ports: String(defaultPort) };
    if (!rest.startsWith(":")) fail(flag, part, "needs a port after the IPv6 address, e.g. [::1]:8080");
    return { host: authority.slice(1, end), ports: rest.slice(1) };
  }
  const colon = authority.lastIndexOf(":");
  if (colon < 0) {
    if (defaultPort !== undefined) return { host: authority, ports: String(defaultPort) };
    fail(flag, part, "has no port");
  }
  if (authority.indexOf(":") !== colon) fail(flag, part, "looks like a bare IPv6 address; write it as [addr]:port");
  return { host: authority.slice(0, colon), ports: authority.slice(colon + 1) };
}

function expandHosts(flag: string, part: string, host: string): string[] {
  if (host === "") fail(flag, part, "has no host");
  const quad = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:-(\d+))?$/.exec(host);
  if (quad) {
    const head = [quad[1], quad[2], quad[3]].map(Number);
    if (head.some((o) => o > 255)) fail(flag, part, `has an IPv4 address with an octet above 255`);
    const [lo, hi] = range(flag, part, quad[5] === undefined ? quad[4]! : `${quad[4]}-${quad[5]}`, 0, 255, "last octet");
    const out: string[] = [];
    for (let o = lo; o <= hi; o++) out.push(`${head.join(".")}.${o}`);
    return out;
  }
  if (host.includes("-") && /^[\d.-]+$/.test(host)) fail(flag, part, "has a range outside the last octet (only 127.0.0.1-16 style ranges are accepted)");
  if (!/^[A-Za-z0-9.:_-]+$/.test(host)) fail(flag, part, `has a host '${host}' that is neither an address nor a name`);
  return [host];
}

function parsePart(flag: string, part: string): Target[] {
  let authority = part;
  let defaultPort: number | undefined;
  const url = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/i.exec(part);
  if (url) {
    const scheme = url[1]!.toLowerCase();
    if (scheme !== "ws" && scheme !== "wss") fail(flag, part, `has scheme ${scheme}:// where ws:// or wss:// is expected`);
    authority = url[2]!.replace(/^[^@]*@/, ""); // user:pass@ is the server's business, not an address
    defaultPort = scheme === "wss" ? 443 : 80;
  }
  const { host, ports } = splitAuthority(flag, part, authority, defaultPort);
  const hosts = host.includes(":") ? [host] : expandHosts(flag, part, host);
  const [lo, hi] = range(flag, part, ports, 1, 65535, "port");
  if (hosts.length * (hi - lo + 1) > MAX_TARGETS) fail(flag, part, `expands to more than ${MAX_TARGETS} targets`);
  const out: Target[] = [];
  for (const h of hosts) for (let p = lo; p <= hi; p++) out.push({ host: h, port: p });
  return out;
}

/**
 * Parses a target list: `127.0.0.1-16:8080`, `127.0.0.1:8080-8083`, both at once, `a:1,b:2`, or
 * `ws://host:port/path`. Duplicates are dropped, since a repeated pair adds no ports. `flag` names the
 * option in error messages so the load command can reuse this with its own flag name.
 */
export function parseTargets(spec: string, flag = "--targets"): Target[] {
  const parts = spec.split(",").map((p) => p.trim());
  if (spec.trim() === "" || parts.some((p) => p === "")) throw new UsageError(`${flag}: empty target in '${spec}'; use ${FORMS}`);
  const seen = new Set<string>();
  const out: Target[] = [];
  for (const part of parts) {
    for (const t of parsePart(flag, part)) {
      const key = `${t.host}|${t.port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(t);
      if (out.length > MAX_TARGETS) throw new UsageError(`${flag}: more than ${MAX_TARGETS} targets in '${spec.slice(0, 60)}'`);
    }
  }
  return out;
}

/**
 * `ws://host:port/path?query`: its destinations, its request target (path and query, as a server sees
 * them; null when the URL names none) and whether it is wss://. The one place a URL becomes targets and a
 * path. Callers that cannot speak TLS leave `acceptWss` false and wss:// is refused.
 */
export function parseWsUrl(url: string, flag: string, acceptWss = false): { targets: Target[]; path: string | null; tls: boolean } {
  if (!/^wss?:\/\//i.test(url)) throw new UsageError(`${flag}: the URL must start with ws://, got '${url}'`);
  const tls = /^wss:/i.test(url);
  if (tls && !acceptWss) throw new UsageError(`${flag}: wss:// (TLS) is not supported here yet; use ws://`);
  const m = /^wss?:\/\/[^/?#]*([^#]*)/i.exec(url);
  const rest = m?.[1] ?? "";
  return { targets: parseTargets(url, flag), path: rest === "" ? null : rest.startsWith("/") ? rest : `/${rest}`, tls };
}

/** Whether a target spec names wss:// (true), ws:// (false) or no scheme (null); a spec that mixes both is refused. */
export function specScheme(spec: string, flag: string): boolean | null {
  let tls: boolean | null = null;
  for (const part of spec.split(",")) {
    const m = /^\s*(wss?):\/\//i.exec(part);
    if (!m) continue;
    const wss = m[1]!.toLowerCase() === "wss";
    if (tls !== null && tls !== wss) throw new UsageError(`${flag}: '${spec}' mixes ws:// and wss://; one run is either TLS or not`);
    tls = wss;
  }
  return tls;
}

/** `127.0.0.1:8080`, `[::1]:8080`. */
export function formatTarget(t: Target): string {
  return t.host.includes(":") ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** Loopback destinations, where the whole 127/8 block answers without any interface setup. */
export function isLoopback(host: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || host === "::1" || host === "localhost";
}

/**
 * A `--targets` spec with at least `pairs` destinations, grown from the first target: more loopback
 * addresses when it is on 127/8 (nothing to configure; more ports once the octet runs out), else more
 * ports on the same host (the server must listen on them).
 */
export function suggestTargets(pairs: number, first: Target = { host: "127.0.0.1", port: 8080 }): string {
  if (pairs <= 1) return formatTarget(first);
  const quad = /^(127\.\d+\.\d+)\.(\d+)$/.exec(first.host);
  if (quad) {
    const start = Number(quad[2]);
    const addrs = Math.min(pairs, 256 - start);
    const ports = Math.ceil(pairs / addrs);
    const hosts = addrs > 1 ? `${quad[1]}.${start}-${start + addrs - 1}` : first.host;
    return ports > 1 ? `${hosts}:${first.port}-${Math.min(65535, first.port + ports - 1)}` : `${hosts}:${first.port}`;
  }
  const host = first.host.includes(":") ? `[${first.host}]` : first.host;
  return `${host}:${first.port}-${Math.min(65535, first.port + pairs - 1)}`;
}

/** `pairs` loopback destinations on one port: 127.0.0.1..254, then 127.0.1.1..254, and so on. */
export function loopbackTargets(pairs: number, port: number): Target[] {
  return Array.from({ length: pairs }, (_, i) => ({ host: `127.0.${Math.floor(i / 254)}.${(i % 254) + 1}`, port }));
}
