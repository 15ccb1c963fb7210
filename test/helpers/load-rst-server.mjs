// Test peer: a TCP server that resets every connection as soon as the upgrade request arrives.
import net from "node:net";
const s = net.createServer((c) => {
  c.once("data", () => c.resetAndDestroy());
});
s.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ port: s.address().port }) + "\n"));
process.on("SIGTERM", () => process.exit(0));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
