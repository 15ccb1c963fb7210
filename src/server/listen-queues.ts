// What the kernel says about the listening side, read by the supervisor for /stats and /metrics, so a
// worker too busy to report still shows its queue: each listening socket's accept queue (Recv-Q of its LISTEN line
// in /proc/net/tcp and tcp6; with reusePort every worker has its own listener, found by the socket inode
// the worker reports) and the namespace's ListenOverflows and ListenDrops (/proc/net/netstat).
import { closeSync, openSync, readFileSync, readSync } from "node:fs";

const LISTEN_STATE = "0A";
const CHUNK = 64 * 1024;

/**
 * Accept-queue length by socket inode for the sockets listening on `port`. The kernel prints listening
 * sockets before established ones, so reading stops at the first other line: at a million connections the
 * whole file is hundreds of megabytes, its listening part a few lines.
 */
export function listenQueues(port: number, files = ["/proc/net/tcp", "/proc/net/tcp6"]): Map<number, number> {
  const portHex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const queues = new Map<number, number>();
  for (const file of files) {
    let fd: number;
    try {
      fd = openSync(file, "r");
    } catch {
      continue;
    }
    try {
      readListening(fd, (fields) => {
        if (!fields[1]!.endsWith(portHex)) return;
        const rx = fields[4]!.split(":")[1]!;
        queues.set(Number(fields[9]), Number.parseInt(rx, 16));
      });
    } finally {
      closeSync(fd);
    }
  }
  return queues;
}

/** Calls `line` with the fields of each LISTEN line, until the first line in another state. */
function readListening(fd: number, line: (fields: string[]) => void): void {
  const buf = Buffer.alloc(CHUNK);
  let rest = "";
  let header = true;
  for (;;) {
    const n = readSync(fd, buf, 0, CHUNK, null);
    if (n === 0) return;
    const lines = (rest + buf.toString("latin1", 0, n)).split("\n");
    rest = lines.pop()!;
    for (const l of lines) {
      if (header) {
        header = false;
        continue;
      }
      const fields = l.trim().split(/\s+/);
      if (fields[3] !== LISTEN_STATE) return;
      line(fields);
    }
  }
}

export interface ListenCounters {
  /** Times a connection found its listener's accept queue full (its SYN or final ACK was dropped). */
  listenOverflows: number;
  /** Connections dropped at the listener for any reason, overflows included. */
  listenDrops: number;
}

/** The network namespace's ListenOverflows and ListenDrops since boot, or null when unreadable. */
export function listenCounters(file = "/proc/net/netstat"): ListenCounters | null {
  try {
    const lines = readFileSync(file, "utf8").split("\n");
    const i = lines.findIndex((l) => l.startsWith("TcpExt:"));
    const names = lines[i]!.split(/\s+/);
    const values = lines[i + 1]!.split(/\s+/).map(Number);
    const at = (name: string): number => values[names.indexOf(name)] ?? Number.NaN;
    const c = { listenOverflows: at("ListenOverflows"), listenDrops: at("ListenDrops") };
    return Number.isFinite(c.listenOverflows) && Number.isFinite(c.listenDrops) ? c : null;
  } catch {
    return null;
  }
}
