// Send lateness at 100,000 messages/s offered by ONE load worker (send mode, into a sink server in its own
// process), in two shapes:
// - busy sockets (100 connections, each every 1 ms): the target, p99 send lateness < 10 ms. Ratio: p99 / 10 ms.
// - many sockets (10,000 connections, each every 100 ms): every message needs a write of its own, and on
//   loopback a write costs 7 to 14 µs of kernel time, more than a core at 100,000/s. Compared with the floor
//   for one write per message (raw Bun sockets writing as fast as they can, same sink, same run): the
//   scheduler batches a socket's overdue sends into one write, so it holds more than that floor.
import { runLoad } from "../src/load/coordinator.ts";
import { completePlan } from "../src/load/plan.ts";
import { NOFILE, finish, rawWriteFloor, startServer } from "./load-lib.ts";
import { loopbackTargets } from "../src/system/targets.ts";

const SECS = Number(process.argv[2] ?? 5);

const server = await startServer("sink");
try {
  const shape = async (connections: number, intervalMs: number) => {
    const r = await runLoad(completePlan({
      targets: loopbackTargets(2, server.ws), connections, concurrency: 500, durationS: SECS,
      intervalMs, size: 100, mode: "send", workers: 1,
      maxMessage: 1 << 20, statusUrl: null,
    }, NOFILE));
    const l = r.latency.lateness;
    console.log(
      `${connections} connections every ${intervalMs} ms (${r.traffic.offeredPerSec} msg/s offered by one worker): achieved ${r.traffic.achievedPerSec}/s, ` +
        `send lateness p50 ${l.p50Ms} ms, p99 ${l.p99Ms} ms, max ${l.maxMs} ms; ${r.generator.cpuMicrosPerMessage} µs CPU per message`,
    );
    return {
      connections, intervalMs, offeredPerSec: r.traffic.offeredPerSec, achievedPerSec: r.traffic.achievedPerSec,
      latenessP50Ms: l.p50Ms, latenessP99Ms: l.p99Ms, latenessMaxMs: l.maxMs, loopLagP99Ms: r.workers[0]!.loopLagP99Ms,
      cpuUsPerMessage: r.generator.cpuMicrosPerMessage, skipped: r.traffic.skippedBackpressure,
    };
  };
  const busy = await shape(100, 1);
  const many = await shape(10_000, 100);
  const floor = await rawWriteFloor(server.tcp, 10_000, SECS);
  console.log(`floor, one write per message over 10,000 raw Bun sockets: ${floor.writesPerSec} writes/s at ${floor.cpuUsPerWrite} µs CPU each`);
  finish("load-lateness", { busy, many, floor, manyAchievedVsFloor: Math.round((many.achievedPerSec / floor.writesPerSec) * 100) / 100 }, busy.latenessP99Ms / 10);
} finally {
  await server.stop();
}
