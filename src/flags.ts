// Flag parsing shared by every command, and the errors every layer may raise for the user to fix (a usage
// error, an expected failure): one line that names the cause and the fix, exit code 2. A leaf: it imports
// nothing of ours.
import { InvalidArgumentError } from "commander";

/** A mistake in how the command was called: printed as one line, exit code 2. */
export class UsageError extends Error {}

/**
 * Something the machine will not do for a well-formed command (a port taken, an address it does not have):
 * printed as one line naming the cause and the fix, exit code 2, and no stack trace, since no code is wrong.
 */
export class ExpectedFailure extends Error {}

export function integer(flag: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (raw: string): number => {
    const n = Number(raw.replace(/_/g, ""));
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${flag} takes a whole number from ${min} to ${max}, got '${raw}'`);
    }
    return n;
  };
}

export function decimal(flag: string, min: number, max = Number.MAX_VALUE) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${flag} takes a number from ${min} to ${max}, got '${raw}'`);
    }
    return n;
  };
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1 << 20, mb: 1 << 20, mib: 1 << 20, g: 1 << 30, gb: 1 << 30, gib: 1 << 30 };

/** Byte sizes such as 100, 64k, 1MiB. */
export function bytes(flag: string, min = 0, max = 1 << 30) {
  return (raw: string): number => {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw.trim());
    const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
    const n = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : NaN;
    if (!Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${flag} takes a size in bytes from ${min} to ${max} (e.g. 100, 64k, 1MiB), got '${raw}'`);
    }
    return n;
  };
}

export function choice<T extends string>(flag: string, values: readonly T[]) {
  return (raw: string): T => {
    if (!(values as readonly string[]).includes(raw)) {
      throw new InvalidArgumentError(`${flag} takes one of ${values.join(", ")}, got '${raw}'`);
    }
    return raw as T;
  };
}

/** `auto` or a whole number of worker processes. */
export function workers(flag: string) {
  return (raw: string): number | "auto" => (raw === "auto" ? "auto" : integer(flag, 1, 1024)(raw));
}

/** Repeatable flag collector, e.g. --header K:V --header K2:V2. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * A duration in seconds: `10`, `2.5`, `10s` or `2500ms`. Every command takes durations in seconds.
 * `legacyMs`: a bare number of at least 1000 is read in milliseconds, the flag's old unit, with a line
 * saying so (nobody means a handshake timeout of 17 minutes).
 */
export function seconds(flag: string, min: number, max: number, legacyMs = false) {
  return (raw: string): number => {
    const m = /^(\d+(?:\.\d+)?)\s*(ms|s)?$/i.exec(raw.trim());
    let s = m ? Number(m[1]) / (m[2]?.toLowerCase() === "ms" ? 1000 : 1) : NaN;
    if (m && legacyMs && !m[2] && s >= 1000) {
      s /= 1000;
      process.stderr.write(`warning: ${flag} ${raw} read as milliseconds (the old unit); it takes seconds now: write ${s} or ${raw}ms\n`);
    }
    if (!Number.isFinite(s) || s < min || s > max) {
      throw new InvalidArgumentError(`${flag} takes seconds from ${min} to ${max} (e.g. 10, 2.5s, 2500ms), got '${raw}'`);
    }
    return s;
  };
}
