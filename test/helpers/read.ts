// Reading a child process's output until it says something, with a deadline. Two ways to own the stream:
// - with a sink: the stream is read to its end into the sink (one pump per stream), so a child that keeps
//   printing never blocks on a full pipe and everything it said is there for error messages;
// - without: only as much is read as the match needs, then the stream is released for the caller to read
//   on (e.g. a test peer that prints a verdict line later); text read past the match goes to the next
//   readUntil on that stream.

/** Everything read from the stream so far; keeps growing after readUntil returns. */
export interface Sink {
  text: string;
}

interface Pump {
  sink: Sink;
  ended: boolean;
  /** Resolves at the next chunk or at the end of the stream. */
  changed(): Promise<void>;
}

const pumps = new WeakMap<ReadableStream<Uint8Array>, Pump>();
const leftovers = new WeakMap<ReadableStream<Uint8Array>, string>();

/** Starts (once per stream) the pump that appends every chunk to `sink` and wakes whoever waits. */
function pump(stream: ReadableStream<Uint8Array>, sink: Sink | undefined): Pump {
  const known = pumps.get(stream);
  if (known) {
    if (sink !== undefined && sink !== known.sink) throw new Error("readUntil: this stream is already being read into another sink");
    return known;
  }
  const decoder = new TextDecoder();
  let waiters: (() => void)[] = [];
  const wakeAll = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const state: Pump = {
    sink: sink ?? { text: "" },
    ended: false,
    changed: () => new Promise<void>((resolve) => waiters.push(resolve)),
  };
  state.sink.text += leftovers.get(stream) ?? "";
  leftovers.delete(stream);
  pumps.set(stream, state);
  void (async () => {
    try {
      for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
        state.sink.text += decoder.decode(chunk, { stream: true });
        wakeAll();
      }
    } finally {
      state.ended = true;
      wakeAll();
    }
  })().catch(() => {});
  return state;
}

/** Reads `stream` to its end into `sink` in the background (e.g. a child's stderr, kept for error messages). */
export function drain(stream: ReadableStream<Uint8Array>, sink: Sink): void {
  pump(stream, sink);
}

type Until = RegExp | ((text: string) => boolean);

const describe = (until: Until): string => (until instanceof RegExp ? String(until) : "the condition");

/** The match in `text` and where it ends, or null. */
function find(text: string, until: Until): { value: RegExpExecArray | string; end: number } | null {
  if (until instanceof RegExp) {
    const m = until.exec(text);
    return m ? { value: m, end: m.index + m[0].length } : null;
  }
  return until(text) ? { value: text, end: text.length } : null;
}

/**
 * Reads `stream` until its text matches `until` (a regex: resolves with the match; a predicate: resolves
 * with the text so far), or fails naming what it waited for and what it got when the stream ends or
 * `timeoutMs` passes. With `sink`, the stream is read to its end into it (see the top of this file).
 */
export function readUntil(stream: ReadableStream<Uint8Array>, until: RegExp, timeoutMs: number, sink?: Sink): Promise<RegExpExecArray>;
export function readUntil(stream: ReadableStream<Uint8Array>, until: (text: string) => boolean, timeoutMs: number, sink?: Sink): Promise<string>;
export async function readUntil(stream: ReadableStream<Uint8Array>, until: Until, timeoutMs: number, sink?: Sink): Promise<RegExpExecArray | string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
  try {
    return sink !== undefined || pumps.has(stream) ? await readPumped(pump(stream, sink), until, timeoutMs, timedOut) : await readReleasing(stream, until, timeoutMs, timedOut);
  } finally {
    clearTimeout(timer);
  }
}

async function readPumped(p: Pump, until: Until, timeoutMs: number, timedOut: Promise<"timeout">): Promise<RegExpExecArray | string> {
  for (;;) {
    const hit = find(p.sink.text, until);
    if (hit !== null) return hit.value;
    if (p.ended) throw new Error(`output ended before it matched ${describe(until)}; got:\n${p.sink.text}`);
    if ((await Promise.race([p.changed(), timedOut])) === "timeout") {
      const last = find(p.sink.text, until);
      if (last !== null) return last.value;
      throw new Error(`no match for ${describe(until)} within ${timeoutMs} ms; got:\n${p.sink.text}`);
    }
  }
}

async function readReleasing(stream: ReadableStream<Uint8Array>, until: Until, timeoutMs: number, timedOut: Promise<"timeout">): Promise<RegExpExecArray | string> {
  let text = leftovers.get(stream) ?? "";
  leftovers.delete(stream);
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const hit = find(text, until);
      if (hit !== null) {
        text = text.slice(hit.end);
        return hit.value;
      }
      const got = await Promise.race([reader.read(), timedOut]);
      if (got === "timeout") throw new Error(`no match for ${describe(until)} within ${timeoutMs} ms; got:\n${text}`);
      if (got.done) throw new Error(`output ended before it matched ${describe(until)}; got:\n${text}`);
      text += decoder.decode(got.value, { stream: true });
    }
  } finally {
    // A read still pending after a timeout is cancelled by the release; its bytes stay in the stream.
    reader.releaseLock();
    if (text !== "") leftovers.set(stream, text);
  }
}
