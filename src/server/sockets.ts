// Socket calls Bun does not expose, made on this process's own descriptors through bun:ffi and the C
// library: what the kernel knows of a socket (TCP_INFO, its cookie, whether it listens, its ports, bytes
// not read yet), and the two things we do to sockets Bun owns: shutdown (Bun then reads EOF and closes the
// socket itself, so its bookkeeping stays right) and listen again (to lengthen a listener's accept queue).
// Linux only: the constants and the tcp_info layout below are Linux's, the same on x86_64 and aarch64.
import { dlopen, FFIType, read, type Library, type Pointer } from "bun:ffi";

const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const SO_COOKIE = 57;
const IPPROTO_TCP = 6;
const TCP_INFO = 11;
const FIONREAD = 0x541b;
const SHUT_RDWR = 2;
export const ENOTSOCK = 88;

/** struct tcp_info: tcpi_state (u8), tcpi_last_data_sent (u32, ms), tcpi_data_segs_out (u32, Linux 4.6+). */
const INFO_STATE = 0;
const INFO_LAST_DATA_SENT = 44;
const INFO_DATA_SEGS_OUT = 156;
const INFO_BYTES = 160;
export const TCP_ESTABLISHED = 1;

const SYMBOLS = {
  getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  getpeername: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  shutdown: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
} as const;

type Libc = Library<typeof SYMBOLS>["symbols"];

/** A TCP socket as TCP_INFO describes it. */
export interface TcpFacts {
  state: number;
  /** Data segments this end has sent: 0 until the server answers anything. */
  dataSegsOut: number;
  /** Milliseconds since this end last sent data; with nothing sent yet, since the connection was established. */
  lastDataSentMs: number;
}

export class Sockets {
  private readonly info = new Uint8Array(256);
  private readonly infoView = new DataView(this.info.buffer);
  private readonly word = new Uint8Array(8);
  private readonly wordView = new DataView(this.word.buffer);
  private readonly len = new Uint32Array(1);
  private readonly addr = new Uint8Array(128);
  private readonly errnoAt: Pointer | null;

  constructor(private readonly c: Libc) {
    // The declared return type also admits a bigint (Bun's 64-bit integer mapping); a pointer comes back as a number.
    const at = c.__errno_location();
    this.errnoAt = typeof at === "number" ? at : null;
  }

  /** errno of the last call that failed. */
  errno(): number {
    return this.errnoAt === null ? 0 : read.i32(this.errnoAt, 0);
  }

  /** The socket's cookie (unique while the network namespace lives: tells a reused descriptor from its predecessor), or -1. */
  cookie(fd: number): number {
    this.len[0] = 8;
    if (this.c.getsockopt(fd, SOL_SOCKET, SO_COOKIE, this.word, this.len) !== 0) return -1;
    return this.wordView.getUint32(0, true) + this.wordView.getUint32(4, true) * 2 ** 32;
  }

  tcp(fd: number): TcpFacts | null {
    this.len[0] = this.info.byteLength;
    if (this.c.getsockopt(fd, IPPROTO_TCP, TCP_INFO, this.info, this.len) !== 0 || this.len[0]! < INFO_BYTES) return null;
    const v = this.infoView;
    return { state: v.getUint8(INFO_STATE), dataSegsOut: v.getUint32(INFO_DATA_SEGS_OUT, true), lastDataSentMs: v.getUint32(INFO_LAST_DATA_SENT, true) };
  }

  listening(fd: number): boolean {
    this.len[0] = 4;
    return this.c.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, this.word, this.len) === 0 && this.wordView.getInt32(0, true) === 1;
  }

  /** Local port of an IPv4 or IPv6 socket (sin_port and sin6_port sit at the same offset), or -1. */
  localPort(fd: number): number {
    this.len[0] = this.addr.byteLength;
    return this.c.getsockname(fd, this.addr, this.len) === 0 ? (this.addr[2]! << 8) | this.addr[3]! : -1;
  }

  peerPort(fd: number): number {
    this.len[0] = this.addr.byteLength;
    return this.c.getpeername(fd, this.addr, this.len) === 0 ? (this.addr[2]! << 8) | this.addr[3]! : -1;
  }

  /** Bytes received and not yet read by the process. */
  unread(fd: number): number {
    return this.c.ioctl(fd, FIONREAD, this.word) === 0 ? this.wordView.getInt32(0, true) : 0;
  }

  /** Sends FIN and makes further reads return EOF, without closing the descriptor (its owner still holds it). */
  shutdown(fd: number): boolean {
    return this.c.shutdown(fd, SHUT_RDWR) === 0;
  }

  /** listen() on a listening socket sets its accept-queue length (the kernel caps it at net.core.somaxconn). */
  listen(fd: number, backlog: number): boolean {
    return this.c.listen(fd, backlog) === 0;
  }
}

const LIBC_NAMES = ["libc.so.6", `libc.musl-${process.arch === "arm64" ? "aarch64" : "x86_64"}.so.1`];

/** The socket calls, or why they are not available here. */
export function openSockets(): Sockets | string {
  if (process.platform !== "linux") return `needs Linux (this is ${process.platform})`;
  const errors: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      return new Sockets(dlopen(name, SYMBOLS).symbols);
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
    }
  }
  return `no C library to call (${errors.join("; ")})`;
}
