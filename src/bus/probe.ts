// Why a connection to Redis failed, in one line. Bun's client reports a refused connection, a wrong
// password and a missing one alike ("Connection closed", measured on Bun 1.4), so when it fails we ask
// ourselves: a plain TCP connect (refused, unreachable, unknown host, timeout), then AUTH, PING and SELECT
// spoken by hand, and the server's own error text names the cause.
import { connect, type Socket } from "node:net";
import type { RedisUrl } from "./url.ts";

/** One RESP command as bytes. */
function command(...parts: string[]): string {
  return `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join("")}`;
}

const NET_CAUSES: Record<string, string> = {
  ECONNREFUSED: "connection refused (is redis-server running there, listening on that address and port?)",
  EHOSTUNREACH: "host unreachable (no route to it)",
  ENETUNREACH: "network unreachable (no route to it)",
  ENOTFOUND: "unknown host name",
  EAI_AGAIN: "the host name could not be resolved now",
  ETIMEDOUT: "no answer (a firewall, or the wrong address)",
  ECONNRESET: "the server reset the connection (protected mode, or not a Redis server?)",
};

/** The first line of every reply, in order, until `count` replies or the socket ends. */
function replies(sock: Socket, count: number, timeoutMs: number): Promise<string[]> {
  return new Promise((resolve) => {
    let buf = "";
    const done = (): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(buf.split("\r\n").filter((l) => /^[+\-:]/.test(l)));
    };
    const timer = setTimeout(done, timeoutMs);
    sock.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      if (buf.split("\r\n").filter((l) => /^[+\-:]/.test(l)).length >= count) done();
    });
    sock.on("close", done);
    sock.on("error", done);
  });
}

/** A one-line reason why `url` cannot be used, or null when a hand-made session works (the failure was elsewhere). */
export async function diagnose(url: RedisUrl, timeoutMs = 3000): Promise<string | null> {
  const where = `Redis at ${url.host}:${url.port}`;
  const sock = connect({ host: url.host, port: url.port });
  const opened = await new Promise<string | null>((resolve) => {
    const timer = setTimeout(() => resolve("ETIMEDOUT"), timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      resolve(null);
    });
    sock.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
  });
  if (opened !== null) {
    sock.destroy();
    return `cannot reach ${where}: ${NET_CAUSES[opened] ?? opened}`;
  }
  if (url.tls) {
    sock.destroy();
    return null;
  }
  const cmds: string[] = [];
  if (url.password !== null) cmds.push(url.user ? command("AUTH", url.user, url.password) : command("AUTH", url.password));
  cmds.push(command("PING"));
  if (url.db) cmds.push(command("SELECT", String(url.db)));
  sock.write(cmds.join(""));
  const got = await replies(sock, cmds.length, timeoutMs);
  const err = got.find((l) => l.startsWith("-"));
  if (!err) return got.length < cmds.length ? `${where} accepted the connection but did not answer like Redis` : null;
  const text = err.slice(1);
  if (/^WRONGPASS/.test(text)) return `${where} refused the credentials: ${text}`;
  if (/^NOAUTH/.test(text)) return `${where} needs a password: give it as redis://:PASSWORD@${url.host}:${url.port} (${text})`;
  if (/without any password configured/i.test(text)) return `${where} has no password set; drop it from the URL (${text})`;
  if (/DB index is out of range/i.test(text)) return `${where} has no database ${url.db} (${text})`;
  if (/^DENIED .*protected mode/.test(text)) return `${where} is in protected mode (no password set, loopback clients only): give it a password (requirepass) and put it in the URL, or start it with --protected-mode no on a private network`;
  if (/^DENIED/.test(text)) return `${where} refuses this client: ${text}`;
  return `${where} said: ${text}`;
}
