// Client CPU per echoed 100-byte message: our load client vs the `ws` client under Node, same connections
// and offered rate, against the same Bun echo server (in its own process). Target: <= 0.5x the ws client.
// Two shapes:
// - busy sockets (100 connections, each every 1 ms, 100,000 msg/s): a tick finds several messages due per
//   socket and our scheduler sends them in one write; the ratio is judged here. The ws client cannot offer
//   this rate from one process (it saturates near 40,000 echoes/s); CPU per echo is still per echo.
// - single (1,000 connections, each every 50 ms): one write per message for any client, and on loopback
//   the kernel's per-write cost is most of the CPU (perf: ~80% kernel). Its floor, raw Bun sockets doing
//   nothing but write pre-built frames and count bytes, is printed beside it.
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { NOFILE, finish, node, rawEchoFloor, startServer, WS_CLIENTS } from "./load-lib.ts";
import { loopbackTargets } from "../src/system/targets.ts";

const SECS = Number(process.argv[2] ?? 5);
const SIZE = 100;

const server = await startServer("echo");
try {
  const shape = async (n: number, interval: number) => {
    const ours = await runLoad(completePlan({
      targets: loopbackTargets(2, server.ws), connections: n, concurrency: 200, durationS: SECS,
      intervalMs: interval, size: SIZE, mode: "echo", workers: 1,
      maxMessage: 1 << 20, statusUrl: null,
    }, NOFILE));
    const t = ours.traffic;
    // CPU per moved message (sent + received) -> per echo (one send and one receive).
    const moved = t.achievedPerSec + t.receivedPerSec;
    const oursPerEcho = t.receivedPerSec > 0 ? (ours.generator.cpuMicrosPerMessage * moved) / t.receivedPerSec : NaN;
    await Bun.sleep(1000);
    const proc = Bun.spawn(node(WS_CLIENTS, String(server.ws), String(n), "200", "2"), { cwd: `${import.meta.dir}/..`, env: { ...process.env, ECHO: `${interval},${SIZE},${SECS}` }, stdout: "pipe", stderr: "inherit" });
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    const ws = JSON.parse(out.trim().split("\n").at(-1)!) as Record<string, number>;
    const figures = {
      connections: n, intervalMs: interval, offeredPerSec: t.offeredPerSec,
      oursEchoesPerSec: t.receivedPerSec, oursCpuUsPerEcho: Math.round(oursPerEcho * 100) / 100, oursRttP99Ms: ours.latency.rtt.p99Ms,
      oursLatenessP99Ms: ours.latency.lateness.p99Ms,
      wsNodeEchoesPerSec: ws.echoesPerSec!, wsNodeCpuUsPerEcho: Math.round(ws.cpuUsPerEcho! * 100) / 100,
      ratio: Math.round((oursPerEcho / ws.cpuUsPerEcho!) * 100) / 100,
    };
    console.log(
      `${n} connections every ${interval} ms (${t.offeredPerSec}/s offered): CPU per echoed ${SIZE}-byte message ours ${figures.oursCpuUsPerEcho} µs ` +
        `(${t.receivedPerSec} echoes/s), ws under Node ${figures.wsNodeCpuUsPerEcho} µs (${ws.echoesPerSec} echoes/s): ${figures.ratio}x`,
    );
    return figures;
  };
  const busy = await shape(100, 1);
  const single = await shape(1000, 50);
  const floor = await rawEchoFloor(server.ws, 1000, 50, SECS);
  const floorRatio = Math.round((floor.cpuUsPerEcho / single.wsNodeCpuUsPerEcho) * 100) / 100;
  console.log(`floor for the single shape, raw Bun sockets (no parsing, no stamps, pre-built frames): ${floor.cpuUsPerEcho} µs per echo (${floor.echoesPerSec}/s): ${floorRatio}x ws`);
  finish("load-echo-cpu", { busy, single, singleFloor: { ...floor, ratioToWs: floorRatio } }, busy.ratio);
} finally {
  await server.stop();
}
