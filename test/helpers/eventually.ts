// Waiting for a condition instead of sleeping a fixed time: a fixed sleep either wastes time or, on a busy
// 2-core box, is too short and the test fails (or, worse, passes without having seen what it checks).

export interface EventuallyOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** What is awaited, for the error message: "timed out after 5000 ms waiting for <what>". */
  what?: string;
  /** Pause between polls (default 50 ms). */
  intervalMs?: number;
}

/**
 * Polls `cond` until it returns true; throws naming `what` (and the last error `cond` threw, if any) once
 * `timeoutMs` has passed. A throwing `cond` counts as "not yet": e.g. an HTTP keep-alive connection to a
 * worker that was just killed is reset once.
 */
export function eventually(cond: () => boolean | Promise<boolean>, opts?: EventuallyOptions): Promise<void>;
/**
 * Polls `get` until `check` holds for its value and resolves with that value; on timeout the error shows
 * the last value seen.
 */
export function eventually<T>(get: () => T | Promise<T>, check: (v: T) => boolean, timeoutMs?: number, what?: string): Promise<T>;
export async function eventually<T>(get: () => T | Promise<T>, checkOrOpts?: ((v: T) => boolean) | EventuallyOptions, timeoutMs?: number, what?: string): Promise<T | undefined> {
  const valueForm = typeof checkOrOpts === "function";
  const check = valueForm ? checkOrOpts : (v: T) => v === true;
  const opts: EventuallyOptions = valueForm ? { timeoutMs, what } : (checkOrOpts ?? {});
  const limit = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + limit;
  let last: { value: T } | { error: Error } | null = null;
  for (;;) {
    try {
      const value = await get();
      if (check(value)) return valueForm ? value : undefined;
      last = { value };
    } catch (err) {
      last = { error: err instanceof Error ? err : new Error(String(err)) };
    }
    if (Date.now() >= deadline) {
      const seen = last === null ? "nothing" : "error" in last ? `error ${last.error.message}` : JSON.stringify(last.value);
      throw new Error(`timed out after ${limit} ms waiting for ${opts.what ?? "a condition"}; last: ${seen}`);
    }
    await Bun.sleep(opts.intervalMs ?? 50);
  }
}
