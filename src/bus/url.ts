// redis://[user:pass@]host:port[/db] parsed once, so every message can name the server without its
// password and the connection diagnosis knows what to try. A leaf: it imports nothing of ours.

export interface RedisUrl {
  /** The URL as given, credentials included: what the client connects with. */
  href: string;
  tls: boolean;
  host: string;
  port: number;
  user: string | null;
  password: string | null;
  db: number;
  /** The URL without the password, for messages and reports. */
  display: string;
}

export class RedisUrlError extends Error {}

const DEFAULT_PORT = 6379;

export function parseRedisUrl(raw: string): RedisUrl {
  const shape = "redis://[user:pass@]host:port[/db]";
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new RedisUrlError(`--redis takes ${shape}, got '${raw}'`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new RedisUrlError(`--redis takes ${shape} (or rediss:// for TLS), got '${raw}'`);
  if (!u.hostname) throw new RedisUrlError(`--redis: no host in '${raw}'; use ${shape}`);
  const port = u.port ? Number(u.port) : DEFAULT_PORT;
  const path = u.pathname.replace(/^\//, "");
  const db = path === "" ? 0 : Number(path);
  if (!Number.isInteger(db) || db < 0) throw new RedisUrlError(`--redis: the database must be a number (redis://host:port/0), got '/${path}'`);
  const user = u.username ? decodeURIComponent(u.username) : null;
  const password = u.password ? decodeURIComponent(u.password) : null;
  const auth = user || password ? `${user ?? ""}${password ? ":***" : ""}@` : "";
  return {
    href: raw,
    tls: u.protocol === "rediss:",
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port,
    user,
    password,
    db,
    display: `${u.protocol}//${auth}${u.hostname}:${port}${db ? `/${db}` : ""}`,
  };
}
