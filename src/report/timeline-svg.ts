// A run's timeline as one self-contained SVG (connections by both counts, system memory), small enough to
// commit next to a write-up and readable on a code host that shows no scripts.
import type { TimelineSample } from "./timeline.ts";
import { count } from "../format.ts";

const W = 900;
const H = 360;
const PAD = { left: 70, right: 70, top: 40, bottom: 40 };

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

function path(points: [number, number][]): string {
  return points.map(([x, y], i) => `${i === 0 ? "M" : "L"}${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
}

/** Connections (ours and the server's /conns) on the left axis, system memory used (GiB) on the right. */
export function timelineSvg(samples: readonly TimelineSample[], title: string): string {
  const tMax = Math.max(1, ...samples.map((s) => s.t));
  const cMax = Math.max(1, ...samples.map((s) => Math.max(s.open, s.serverConns)));
  const gMax = Math.max(0.001, ...samples.map((s) => s.memUsedBytes / 2 ** 30));
  const x = (t: number) => PAD.left + (t / tMax) * (W - PAD.left - PAD.right);
  const yL = (v: number) => H - PAD.bottom - (v / cMax) * (H - PAD.top - PAD.bottom);
  const yR = (v: number) => H - PAD.bottom - (v / gMax) * (H - PAD.top - PAD.bottom);
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const grid = ticks
    .map((f) => {
      const y = H - PAD.bottom - f * (H - PAD.top - PAD.bottom);
      return (
        `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y}" y2="${y}" stroke="#e5e7eb"/>` +
        `<text x="${PAD.left - 6}" y="${y + 4}" text-anchor="end">${count(f * cMax)}</text>` +
        `<text x="${W - PAD.right + 6}" y="${y + 4}">${(f * gMax).toFixed(1)} GiB</text>`
      );
    })
    .join("");
  const xTicks = ticks.map((f) => `<text x="${x(f * tMax)}" y="${H - PAD.bottom + 18}" text-anchor="middle">${Math.round(f * tMax)} s</text>`).join("");
  const ours = path(samples.map((s) => [x(s.t), yL(s.open)]));
  const server = path(samples.filter((s) => s.serverConns >= 0).map((s) => [x(s.t), yL(s.serverConns)]));
  const mem = path(samples.map((s) => [x(s.t), yR(s.memUsedBytes / 2 ** 30)]));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12" fill="#374151">
<rect width="${W}" height="${H}" fill="#fff"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>
${grid}${xTicks}
<path d="${mem}" fill="none" stroke="#7c3aed" stroke-width="1.5"/>
<path d="${server}" fill="none" stroke="#f97316" stroke-width="4" opacity="0.6"/>
<path d="${ours}" fill="none" stroke="#2563eb" stroke-width="1.5"/>
<g transform="translate(${PAD.left + 10},${PAD.top + 8})">
<rect width="12" height="3" y="-4" fill="#2563eb"/><text x="18">open (generator)</text>
<rect width="12" height="3" y="14" fill="#f97316"/><text x="18" y="18">open (server /conns)</text>
<rect width="12" height="3" y="32" fill="#7c3aed"/><text x="18" y="36">system memory used (right axis)</text>
</g>
</svg>
`;
}
