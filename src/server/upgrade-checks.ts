// Upgrade checks done before Bun takes over a connection: each refusal is a precise HTTP answer,
// counted under a short reason, so a bad client learns what was wrong and the server keeps serving.
import type { ServerConfig } from "./config.ts";

export interface Refusal {
  status: number;
  /** Short reason used as the stats key, e.g. "426 version". */
  reason: string;
  body: string;
  headers?: Record<string, string>;
}

const KEY_PATTERN = /^[A-Za-z0-9+/]{22}==$/;

function refuse(status: number, word: string, body: string, headers?: Record<string, string>): Refusal {
  return { status, reason: `${status} ${word}`, body, headers };
}

/** Checks an upgrade request (already known to target the WebSocket path); undefined when it may proceed. */
export function checkUpgrade(req: Request, url: URL, config: ServerConfig): Refusal | undefined {
  const h = req.headers;
  if (req.method !== "GET") return refuse(405, "method", "WebSocket upgrades use GET\n", { Allow: "GET" });
  if (!/\bwebsocket\b/i.test(h.get("upgrade") ?? "")) {
    return refuse(426, "upgrade", "this path serves WebSocket only: send Upgrade: websocket\n", { Upgrade: "websocket", Connection: "Upgrade" });
  }
  if (!/\bupgrade\b/i.test(h.get("connection") ?? "")) return refuse(400, "connection", "missing Connection: Upgrade\n");
  const version = h.get("sec-websocket-version");
  if (version !== "13") {
    return refuse(426, "version", `unsupported Sec-WebSocket-Version ${JSON.stringify(version ?? "")}; this server speaks 13\n`, {
      "Sec-WebSocket-Version": "13",
    });
  }
  // RFC 6455 4.2.1: the key is 16 random bytes, base64-encoded (24 characters ending in ==).
  if (!KEY_PATTERN.test(h.get("sec-websocket-key") ?? "")) return refuse(400, "key", "missing or malformed Sec-WebSocket-Key\n");
  if (config.token !== undefined) {
    const bearer = /^Bearer\s+(.+)$/i.exec(h.get("authorization") ?? "")?.[1];
    if ((bearer ?? url.searchParams.get("token")) !== config.token) {
      return refuse(401, "token", "a token is required: Authorization: Bearer <token> or ?token=<token>\n", { "WWW-Authenticate": "Bearer" });
    }
  }
  if (config.origins.length > 0) {
    const origin = h.get("origin");
    if (origin === null || !config.origins.includes(origin)) return refuse(403, "origin", `origin ${JSON.stringify(origin ?? "")} is not allowed\n`);
  }
  if (config.subprotocol !== undefined) {
    const offered = (h.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
    if (!offered.includes(config.subprotocol)) {
      return refuse(400, "subprotocol", `this server requires Sec-WebSocket-Protocol: ${config.subprotocol}\n`);
    }
  }
  return undefined;
}

export function refusalResponse(r: Refusal): Response {
  return new Response(r.body, { status: r.status, headers: { "Content-Type": "text/plain", ...r.headers } });
}
