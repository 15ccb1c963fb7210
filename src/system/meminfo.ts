// System memory from /proc/meminfo, sampled during long runs to split what a million connections cost.
import { readFileSync } from "node:fs";

export interface MemSample {
  totalBytes: number;
  /** MemTotal - MemAvailable: what the kernel would not hand out without reclaiming. */
  usedBytes: number;
  /** Kernel slab, where sockets, their inodes and file objects live. */
  slabBytes: number;
}

export function parseMeminfo(text: string): MemSample {
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN) * 1024;
  const total = kib("MemTotal");
  return { totalBytes: total, usedBytes: total - kib("MemAvailable"), slabBytes: kib("Slab") };
}

export function readMeminfo(path = "/proc/meminfo"): MemSample {
  return parseMeminfo(readFileSync(path, "utf8"));
}
