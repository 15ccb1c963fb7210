// The `ws` package as an independent client: open, open many, and one echo round trip.
import WebSocket from "ws";

export function wsOpen(url: string, opts?: WebSocket.ClientOptions): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

export async function openMany(url: string, n: number, batch = 50): Promise<WebSocket[]> {
  const all: WebSocket[] = [];
  for (let i = 0; i < n; i += batch) all.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => wsOpen(url)))));
  return all;
}

/** The next message `ws` receives, as text. */
export function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once("message", (m) => resolve(String(m))));
}

/** Sends `text` and resolves with what comes back (an echo server answers the same). */
export function echo(ws: WebSocket, text: string): Promise<string> {
  const reply = nextMessage(ws);
  ws.send(text);
  return reply;
}
