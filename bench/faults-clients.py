#!/usr/bin/env python3
# Misbehaving WebSocket clients for bench/faults.ts, in a process of their own (their CPU is neither the
# server's nor the load generator's). Python because a slow reader must set its own socket buffers, which
# neither Bun.connect nor node:net offers:
#   slow     upgrade, then read nothing until told to ("drain" on stdin); then read everything the server
#            still delivers, counting its messages, so what the server dropped is what never arrived.
#            Receive buffer 16 KB and MSS 1448, an internet client's: with loopback's 64 KB segments the
#            server's kernel alone queues 4 MB per socket (measured) before the server's own buffer, which
#            --max-buffered bounds, holds a byte.
#   half     send the first half of an upgrade request and nothing more; when the server drops one, open
#            another, so COUNT stay pending (a slowloris). Reports how long the server let them hang.
#   garbage  upgrade, then send a frame no server may accept (reserved opcode 3); COUNT connections spread
#            evenly over SECONDS, each read until the server closes it. Reports the close codes seen.
# Usage: faults-clients.py MODE PORT COUNT HOSTS [SECONDS]
# Connects to 127.0.0.1..HOSTS (spread, so no address pair runs out of ephemeral ports). Prints a JSON line
# of figures every second, and a last one when stdin closes; then it exits. A server's close is seen only
# once everything before it was read (the FIN queues behind the data), so a slow reader sees it on "drain".
import json
import os
import select
import socket
import sys
import time

MODE, PORT, COUNT, HOSTS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
SECONDS = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# Dials in flight at once: a burst of thousands would only overflow the server's accept queue.
CONNECTING_MAX = 256


def request(host):
    return (
        f"GET /ws HTTP/1.1\r\nHost: {host}:{PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


HALF = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
# FIN + opcode 3 (reserved), unmasked, 5 bytes: a protocol error twice over.
GARBAGE = bytes([0x83, 0x05]) + b"hello"

ep = select.epoll()
conns = {}  # fd -> Conn
stats = {"mode": MODE, "opened": 0, "failed": 0, "upgraded": 0, "refused": 0, "closedByServer": 0, "pending": 0, "closeCodes": {}, "messages": 0}
received = []  # slow: messages each connection had received when it ended or the report was taken
draining = False
held = []  # half: seconds each pending request was left hanging before the server dropped it
next_index = 0
connecting = 0
t0 = time.monotonic()


class Conn:
    __slots__ = ("sock", "state", "head", "since", "tail", "messages", "code")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"
        self.head = b""
        self.since = time.monotonic()
        self.tail = b""
        self.messages = 0
        self.code = None  # the server's close code, once its close frame came


def dial():
    global next_index, connecting
    host = f"127.0.0.{next_index % HOSTS + 1}"
    next_index += 1
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if MODE == "slow":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
    s.setblocking(False)
    c = Conn(s)
    c.head = request(host)
    try:
        s.connect((host, PORT))
    except BlockingIOError:
        pass
    except OSError:
        stats["failed"] += 1
        s.close()
        return
    connecting += 1
    conns[s.fileno()] = c
    ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLRDHUP)


def finish(fd, c):
    ep.unregister(fd)
    c.sock.close()
    del conns[fd]


def on_connected(fd, c):
    global connecting
    connecting -= 1
    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err != 0:
        stats["failed"] += 1
        finish(fd, c)
        return
    stats["opened"] += 1
    if MODE == "half":
        c.sock.send(HALF)
        c.state = "pending"
        c.since = time.monotonic()
        stats["pending"] += 1
    else:
        c.sock.send(c.head)
        c.state = "upgrading"
    c.head = b""
    ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)


def frames(c):
    """Counts the whole data frames at the head of c.tail and drops them; notes a close frame's code."""
    data, at = c.tail, 0
    while at + 2 <= len(data):
        op, n = data[at] & 0x0F, data[at + 1] & 0x7F
        h = 2
        if n == 126:
            if at + 4 > len(data):
                break
            n, h = int.from_bytes(data[at + 2 : at + 4], "big"), 4
        elif n == 127:
            if at + 10 > len(data):
                break
            n, h = int.from_bytes(data[at + 2 : at + 10], "big"), 10
        if at + h + n > len(data):
            break
        if op == 8:
            c.code = int.from_bytes(data[at + h : at + h + 2], "big") if n >= 2 else 1005
        elif op in (0, 1, 2):
            c.messages += 1
            stats["messages"] += 1
        at += h + n
    c.tail = data[at:]


def ended(fd, c):
    key = str(c.code) if c.code is not None else "none"
    stats["closeCodes"][key] = stats["closeCodes"].get(key, 0) + 1
    stats["closedByServer"] += 1
    if MODE == "slow":
        received.append(c.messages)
    finish(fd, c)


def start_draining():
    global draining
    draining = True
    for fd, c in conns.items():
        if c.state == "open":
            ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)


def on_readable(fd, c):
    if MODE == "slow" and c.state == "open" and not draining:
        # Not reading yet: a reset is the only news that can come (a FIN waits behind the data).
        ended(fd, c)
        return
    try:
        data = c.sock.recv(65536)
    except OSError:
        data = b""
    if c.state == "pending":
        if data:
            return
        stats["pending"] -= 1
        stats["closedByServer"] += 1
        held.append(time.monotonic() - c.since)
        finish(fd, c)
        dial()
        return
    if c.state == "upgrading":
        c.head += data
        end = c.head.find(b"\r\n\r\n")
        if not data and end < 0:
            stats["failed"] += 1
            finish(fd, c)
            return
        if end < 0:
            return
        if not c.head.startswith(b"HTTP/1.1 101"):
            stats["refused"] += 1
            finish(fd, c)
            return
        stats["upgraded"] += 1
        c.state = "open"
        c.tail = c.head[end + 4 :]
        c.head = b""
        if MODE == "slow":
            frames(c)
            if not draining:
                ep.modify(fd, select.EPOLLRDHUP)
        else:
            c.sock.send(GARBAGE)
        return
    # Open: read until the server ends it, counting what it sent.
    c.tail += data
    frames(c)
    if not data:
        ended(fd, c)


def report(last=False):
    out = dict(stats, open=len(conns), t=round(time.monotonic() - t0, 3), last=last)
    if MODE == "slow":
        each = received + [c.messages for c in conns.values() if c.state == "open"]
        if each:
            out["perConnection"] = {"min": min(each), "max": max(each)}
    if held:
        out["heldSeconds"] = {"count": len(held), "min": round(min(held), 3), "max": round(max(held), 3), "mean": round(sum(held) / len(held), 3)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


ep.register(sys.stdin.fileno(), select.EPOLLIN)
next_report = time.monotonic() + 1
while True:
    now = time.monotonic()
    due = COUNT if MODE != "garbage" or SECONDS <= 0 else min(COUNT, int((now - t0) / SECONDS * COUNT) + 1)
    while next_index < due and connecting < CONNECTING_MAX:
        dial()
    for fd, _events in ep.poll(0.05):
        if fd == sys.stdin.fileno():
            line = os.read(fd, 4096)
            if not line:
                report(last=True)
                sys.exit(0)
            if b"drain" in line:
                start_draining()
            continue
        c = conns.get(fd)
        if c is None:
            continue
        if c.state == "connecting":
            on_connected(fd, c)
        else:
            on_readable(fd, c)
    if now >= next_report:
        report()
        next_report = now + 1
