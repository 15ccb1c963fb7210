// `sweep --list`: the rounds as they will run on this machine (scaled, for a preset), without running
// anything; an aligned table, or one JSON document with --json.
import { count } from "../format.ts";
import { fmtSize, offered, split } from "../sweep/rounds.ts";
import type { Round, SweepReport } from "../sweep/schema.ts";
import { fmtBytes } from "./sweep-md.ts";
import { renderTable, type Align } from "./table.ts";

export interface ListedRound {
  /** 1-based, in the order they run (the field report's numbering for the classic preset). */
  round: number;
  /** The field report's client machines and each one's share ("4 x N"); 1 and the total for an unsplit round. */
  clients: number;
  perClient: number;
  /** What runs, all from this machine today. */
  connections: number;
  size: number;
  intervalMs: number;
  offeredPerSec: number;
  /** Payload bytes per second one way (an echo moves as much back). */
  bytesPerSec: number;
}

/** What `--list --json` prints. */
export interface RoundList {
  schema: "wsmillion.sweep-list/1";
  source: SweepReport["settings"]["source"];
  preset: SweepReport["settings"]["preset"];
  rounds: ListedRound[];
}

export function roundList(rounds: readonly Round[], source: RoundList["source"], preset: RoundList["preset"]): RoundList {
  return {
    schema: "wsmillion.sweep-list/1",
    source,
    preset,
    rounds: rounds.map((r, i) => {
      const clients = r.clients ?? 1;
      const rate = offered(r);
      return { round: i + 1, clients, perClient: r.connections / clients, connections: r.connections, size: r.size, intervalMs: r.intervalMs, offeredPerSec: rate, bytesPerSec: rate * r.size };
    }),
  };
}

const HEADERS = ["#", "clients x N", "connections", "payload", "every", "offered msg/s", "payload bytes/s"] as const;
const ALIGN: readonly Align[] = ["right", "right", "right", "right", "right", "right", "right"];

export function renderRoundList(list: RoundList): string {
  const p = list.preset;
  const head = p
    ? p.name === "classic"
      ? `the field report's thirteen rounds (--preset classic), scale ${p.scale}: ${p.rule}`
      : `preset ${p.name}, scale ${p.scale}: ${p.rule}`
    : `${list.rounds.length} round${list.rounds.length === 1 ? "" : "s"} from ${list.source === "file" ? "the rounds file" : "the flag matrix"}`;
  const rows = list.rounds.map((r) => [
    String(r.round),
    split(r) ?? "-",
    count(r.connections),
    fmtSize(r.size),
    `${count(r.intervalMs)} ms`,
    count(r.offeredPerSec),
    `${fmtBytes(r.bytesPerSec)}/s`,
  ]);
  const out = [head, "", renderTable([...HEADERS], rows, { align: ALIGN })];
  if (list.rounds.some((r) => r.clients > 1)) {
    out.push(
      "",
      "clients x N: the field report ran each round from that many client machines, N connections each; here all of them run from this machine " +
        "(the connections column, their sum). Four load agents on four machines are the coming distributed mode.",
    );
  }
  out.push("Offered: every connection sends once per interval; payload bytes/s is one way (the echo sends as much back).");
  return out.join("\n") + "\n";
}
