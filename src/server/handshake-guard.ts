// The --handshake-timeout, held to the tick: Bun gives a socket with no complete request 8 to 12 s whatever
// its idleTimeout says (uWS arms a fixed 10 s on a 4 s timer wheel before any request; measured, see
// docs/RELIABILITY.md), and it never shows us a socket before its request is parsed. So the guard looks at
// the kernel's side of our own descriptors: an established TCP socket on which the server has sent nothing
// is waiting for its request, and TCP_INFO says how long ago it was established (the time since data was
// last sent counts from the handshake while nothing has been). One past the timeout, with nothing unread
// in its buffer, is shut down; Bun reads EOF and closes it as if the client had.
//
// Looking at every descriptor costs ~0.5 us each (~4 us with a TCP_INFO), too much to do 4 times a second at
// 20,000 connections per worker. So a walk over all of them happens only when something may be waiting:
// each tick compares the descriptors open (one stat of /proc/self/fd) with the WebSockets held, and more
// than at the last walk, for long enough, means sockets that are neither. A walk lists the waiting sockets
// it finds with when they fall due; each tick then looks at the due ones only. What a walk learnt of a
// socket is kept by its cookie, so the next walk asks TCP_INFO only about sockets it has not seen.
import { statSync } from "node:fs";
import { ENOTSOCK, TCP_ESTABLISHED, type Sockets } from "./sockets.ts";

/** Longest between two looks at the descriptor count while nothing is waiting (an idle worker at a million connections is one of ~50). */
const IDLE_LOOK_MS = 1000;
/**
 * Walks may take at most this share of the worker's time: a flood of half-sent requests keeps it walking
 * (measured: 10,000 of them cost 50 to 130 ms a walk on a loaded 2-core box), and the walk's pace sets how
 * late past the timeout a socket goes.
 */
const MAX_DUTY = 0.25;

/** Descriptors open in this process: the size of /proc/self/fd (Linux 6.2+; 0 on older kernels). */
function openDescriptors(): number {
  try {
    return statSync("/proc/self/fd").size;
  } catch {
    return 0;
  }
}

export interface GuardOptions {
  timeoutMs: number;
  /** How often tick() is called: the guard's resolution. */
  tickMs: number;
  /** Highest descriptor to walk to when /proc/self/fd has no size (the soft open-files limit). */
  fdLimit: number;
}

/** `born` of a socket that is not waiting: answered, not a connection, or a listener. */
const NOT_WAITING = -1;
/** `born` of a socket the guard shut down that Bun has not closed yet. */
const SHUT_DOWN = -2;

/** A socket the guard keeps an eye on: waiting for its request, or shut down and not closed yet. */
interface Tracked {
  fd: number;
  cookie: number;
  born: number;
}

export class HandshakeGuard {
  /** Sockets shut down for not completing their request in time. */
  closed = 0;
  private readonly timeoutMs: number;
  private readonly grace: number;
  private readonly tickMs: number;
  /** `closed` at the last walk: sockets shut down since mean someone is holding them open on purpose. */
  private closedAtWalk = 0;
  private readonly fdLimit: number;
  /** Per descriptor: the cookie of the socket last looked at there (0: none), and when it was established if it is waiting (else NOT_WAITING or SHUT_DOWN). */
  private cookies = new Float64Array(1024);
  private born = new Float64Array(1024);
  /** Waiting sockets from the last walk, by when they were established (oldest first), and the next one to look at. */
  private queue: Tracked[] = [];
  private next = 0;
  /** Due sockets with bytes Bun has not read yet, or a request being answered: looked at again every tick. */
  private retry: Tracked[] = [];
  /** Descriptors that were neither WebSockets nor waiting at the last walk (-1: no walk yet). */
  private quiet = -1;
  /** Waiting sockets from the last walk, less as many as have gone since. */
  private waiting = 0;
  /** Sockets shut down and not closed yet: their descriptors are still open, and will go (checked every tick). */
  private dying: Tracked[] = [];
  private risenAt = -1;
  /** Something other than a waiting socket closed: one opened at the same moment would hide behind it until this walk. */
  private recheckAt = Number.POSITIVE_INFINITY;
  private notBefore = 0;
  private walkedAt = Number.NEGATIVE_INFINITY;
  private lookedAt = Number.NEGATIVE_INFINITY;
  private readonly idleLook: number;
  /** Peer ports of requests being answered asynchronously: read in full, not answered yet, not waiting. */
  private readonly answering = new Map<number, number>();

  constructor(
    private readonly sockets: Sockets,
    opts: GuardOptions,
  ) {
    this.timeoutMs = opts.timeoutMs;
    // A rise that lasts half the timeout is looked at: a socket waiting since is found with half its time left,
    // while upgrades in flight (always some, through a ramp) cost a walk only that often.
    this.grace = Math.max(opts.tickMs, opts.timeoutMs / 2);
    this.tickMs = opts.tickMs;
    this.fdLimit = opts.fdLimit;
    // Looking this often finds a rise within a quarter of the timeout, so it is walked before anything falls due.
    this.idleLook = Math.min(IDLE_LOOK_MS, Math.max(opts.tickMs, opts.timeoutMs / 4));
  }

  /** Marks the request from `peerPort` as being answered (true) or answered (false). */
  answeringFor(peerPort: number, on: boolean): void {
    const n = (this.answering.get(peerPort) ?? 0) + (on ? 1 : -1);
    if (n > 0) this.answering.set(peerPort, n);
    else this.answering.delete(peerPort);
  }

  /** `websockets`: descriptors the worker holds as WebSockets (open and upgrading). */
  tick(now: number, websockets: number): void {
    this.dying = this.dying.filter((d) => this.sockets.cookie(d.fd) === d.cookie);
    this.shutDue(now);
    const idle = this.next === this.queue.length && this.retry.length === 0 && this.dying.length === 0 && this.risenAt < 0;
    if (idle && this.quiet >= 0 && now < this.recheckAt && now - this.lookedAt < this.idleLook) return;
    this.lookedAt = now;
    const open = openDescriptors();
    if (open === 0) {
      // No descriptor count on this kernel: walk every half timeout, so a socket is seen before it falls due.
      if (now >= this.notBefore && now - this.walkedAt >= this.timeoutMs / 2) this.walk(now, websockets, 0);
      return;
    }
    const others = open - websockets;
    if (this.quiet >= 0) {
      let drop = this.quiet + this.waiting + this.dying.length - others;
      if (drop > 0) {
        // Fewer than expected: waiting sockets were upgraded or went away, or else something else closed.
        const gone = Math.min(drop, this.waiting);
        this.waiting -= gone;
        drop -= gone;
        if (drop > 0) {
          this.quiet -= drop;
          this.recheckAt = Math.min(this.recheckAt, now + this.timeoutMs / 2);
        }
      }
      if (others > this.quiet + this.waiting + this.dying.length) this.risenAt = this.risenAt < 0 ? now : this.risenAt;
      else this.risenAt = -1;
    }
    // While sockets are being shut down, new ones are likely the same kind: look a tick after they appear (an
    // upgrade in flight during a ramp is never shut down, so ramps keep the longer grace).
    const grace = this.closed > this.closedAtWalk ? this.tickMs : this.grace;
    const due = this.quiet < 0 || now >= this.recheckAt || (this.risenAt >= 0 && now - this.risenAt >= grace);
    if (due && now >= this.notBefore) this.walk(now, websockets, open);
  }

  /** Shuts down the listed sockets that are past the timeout and still waiting. */
  private shutDue(now: number): void {
    const due = this.retry;
    this.retry = [];
    while (this.next < this.queue.length && now - this.queue[this.next]!.born >= this.timeoutMs) due.push(this.queue[this.next++]!);
    const s = this.sockets;
    for (const w of due) {
      if (s.cookie(w.fd) !== w.cookie) continue;
      const tcp = s.tcp(w.fd);
      if (tcp === null || tcp.state !== TCP_ESTABLISHED || tcp.dataSegsOut > 0) {
        // Answered since the walk: its leaving the waiting may have hidden a socket that started waiting at the
        // same moment (or, answered over HTTP, it stays among the others). The next tick walks.
        this.note(w.fd, w.cookie, NOT_WAITING);
        this.recheckAt = now;
        continue;
      }
      // Bytes not read yet belong to a request Bun has still to see (it was busy); a request being answered is complete.
      if (s.unread(w.fd) > 0 || this.answering.has(s.peerPort(w.fd))) this.retry.push(w);
      else if (s.shutdown(w.fd)) {
        this.note(w.fd, w.cookie, SHUT_DOWN);
        this.closed++;
        // From waiting to dying: its descriptor stays open until Bun has read the EOF.
        if (this.waiting > 0) this.waiting--;
        this.dying.push(w);
      }
    }
  }

  /** Looks at every open descriptor and lists the sockets waiting for their request, oldest first. */
  private walk(now: number, websockets: number, open: number): void {
    const started = performance.now();
    const s = this.sockets;
    const queue: Tracked[] = [];
    let seen = 0;
    const dying: Tracked[] = [];
    const limit = open > 0 ? Number.POSITIVE_INFINITY : this.fdLimit;
    for (let fd = 0; fd < limit && (open === 0 || seen < open); fd++) {
      const cookie = s.cookie(fd);
      if (cookie < 0) {
        if (s.errno() === ENOTSOCK) seen++;
        continue;
      }
      seen++;
      if (fd < this.cookies.length && this.cookies[fd] === cookie) {
        const born = this.born[fd]!;
        if (born >= 0) queue.push({ fd, cookie, born });
        else if (born === SHUT_DOWN) dying.push({ fd, cookie, born });
        continue;
      }
      const tcp = s.tcp(fd);
      // Not a connection, a listener, or one the server has answered: never waiting again.
      // The clock is read here, not taken from the walk's start: a long walk would make sockets look older than they are.
      const born = tcp === null || tcp.state !== TCP_ESTABLISHED || tcp.dataSegsOut > 0 ? NOT_WAITING : performance.now() - tcp.lastDataSentMs;
      this.note(fd, cookie, born);
      if (born >= 0) queue.push({ fd, cookie, born });
    }
    queue.sort((a, b) => a.born - b.born);
    this.queue = queue;
    this.next = 0;
    this.retry = [];
    this.quiet = (open > 0 ? open : seen) - websockets - queue.length - dying.length;
    this.waiting = queue.length;
    this.dying = dying;
    this.recheckAt = Number.POSITIVE_INFINITY;
    this.risenAt = -1;
    this.walkedAt = now;
    this.closedAtWalk = this.closed;
    this.shutDue(now);
    const took = performance.now() - started;
    this.notBefore = performance.now() + took / MAX_DUTY;
  }

  private note(fd: number, cookie: number, born: number): void {
    if (fd >= this.cookies.length) {
      let size = this.cookies.length;
      while (size <= fd) size *= 2;
      const cookies = new Float64Array(size);
      cookies.set(this.cookies);
      const borns = new Float64Array(size);
      borns.set(this.born);
      this.cookies = cookies;
      this.born = borns;
    }
    this.cookies[fd] = cookie;
    this.born[fd] = born;
  }
}

/**
 * The descriptor of this process's listening socket on `port`, or -1. Bun does not say which descriptor
 * its listener is; the worker needs it to lengthen the queue and to find the queue in /proc/net/tcp.
 */
export function findListener(sockets: Sockets, port: number, fdLimit: number): number {
  const open = openDescriptors();
  let seen = 0;
  for (let fd = 0; fd < fdLimit && (open === 0 || seen < open); fd++) {
    if (sockets.cookie(fd) < 0) {
      if (sockets.errno() === ENOTSOCK) seen++;
      continue;
    }
    seen++;
    if (sockets.listening(fd) && sockets.localPort(fd) === port) return fd;
  }
  return -1;
}
