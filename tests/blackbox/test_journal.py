#!/usr/bin/env python3
"""Journal records: with stderr as the journal stream, echod sends each event as one record
in journald's native protocol (here to a socket of the test's, ECHOD_TEST_JOURNAL_SOCKET):
per-connection records from the main process with every field, ready and refusal records
with their MESSAGE_ID, --log-peer masking text and fields, and a journal socket that is
full or absent falling back to stderr lines without stalling."""

import os
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (LINE_RE, SLOW, children_of, connect, recv_exact, recv_to_eof,  # noqa: E402
                       run, started, wait_until)

ID_READY = "66a4943ec13549c0a2c2db15236f291b"
ID_CONNECTION = "0c68e2459c6b44839b88e6a7b6b42503"
ID_REFUSED_SOURCE = "353c6aef310741cbb330c788a626606b"
ID_STOPPED = "02f34c3cb3084b688c34440c61c6d98e"


def parse_record(data):
    """{name: [values]} of one native-protocol datagram (both the plain and binary forms)."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        eq = data.find(b"=", i, nl)
        if eq >= 0:
            name, value, i = data[i:eq], data[eq + 1:nl], nl + 1
        else:
            n = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
            name, value = data[i:nl], data[nl + 9:nl + 9 + n]
            if data[nl + 9 + n:nl + 10 + n] != b"\n":
                raise ValueError(f"binary field {name!r} not ended by a newline")
            i = nl + 10 + n
        fields.setdefault(name.decode(), []).append(value.decode("utf-8", "replace"))
    return fields


class JournalSocket:
    """A datagram socket standing in for journald's: env() points echod at it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="echod-journal-")
        self.path = os.path.join(self.dir, "socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.records = []

    def env(self):
        return {"ECHOD_TEST_JOURNAL_SOCKET": self.path}

    def read(self, timeout):
        """Reads what arrives within timeout into self.records."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self.records.append(parse_record(self.sock.recv(65536)))
                self.sock.settimeout(0.05)
        except (socket.timeout, BlockingIOError):
            pass

    def wait_for(self, pred, timeout, count=1):
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records if pred(r)]
            left = deadline - time.monotonic()
            if len(found) >= count or left <= 0:
                return found
            self.read(min(left, 0.2))

    def fill(self):
        """Fills the queue from another socket, as a busy journald's would be."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setblocking(False)
        n = 0
        try:
            while n < 100000:
                s.sendto(b"MESSAGE=filler\n", self.path)
                n += 1
        except BlockingIOError:
            pass
        s.close()
        return n

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def one(r, name):
    return r.get(name, [None])[0]


def connection(addr, daemon, payload, timeout):
    """A connection of payload echoed to its end: (local port, the child's pid)."""
    before = {p for p, _ in children_of(daemon.pid)}
    with connect(addr, timeout) as s:
        port = s.getsockname()[1]
        s.sendall(payload[:1])
        recv_exact(s, 1, timeout)
        new = []
        wait_until(lambda: new.extend(p for p, _ in children_of(daemon.pid) if p not in before) or new,
                   timeout)
        s.sendall(payload[1:])
        s.shutdown(socket.SHUT_WR)
        recv_to_eof(s, timeout)
    return port, (new[0] if new else None)


def by_port(port):
    return lambda r: one(r, "ECHOD_END") is not None and one(r, "ECHOD_PEER_PORT") == str(port)


def test_connection_records(t, exe):
    j = JournalSocket()
    try:
        with started(exe, journal=True, env=j.env()) as (d, ls):
            made = [connection(ls.getsockname(), d, b"x" * n, 5 * SLOW) for n in (64, 4096)]
            for (port, pid), n in zip(made, (64, 4096)):
                rs = j.wait_for(by_port(port), 10 * SLOW)
                t.ok(len(rs) == 1, f"one record for the connection from port {port}", str(j.records[-3:]))
                if not rs:
                    continue
                r = rs[0]
                m = LINE_RE.search(one(r, "MESSAGE") or "")
                t.ok(m and m.group(0) == one(r, "MESSAGE") and m.group(1) == "127.0.0.1"
                     and m.group(2) == str(port) and m.group(4) == "eof" and m.group(5) == str(n),
                     "MESSAGE is the connection line's text", one(r, "MESSAGE"))
                want = {"ECHOD_PEER_ADDR": "127.0.0.1", "ECHOD_PEER_PORT": str(port),
                        "ECHOD_CHILD_PID": str(pid), "ECHOD_BYTES": str(n), "ECHOD_END": "eof",
                        "PRIORITY": "6", "SYSLOG_IDENTIFIER": "echod", "MESSAGE_ID": ID_CONNECTION,
                        "DOCUMENTATION": "man:echod(8)"}
                got = {k: one(r, k) for k in want}
                t.ok(pid is not None and got == want, f"... with every field, the child's pid {pid}",
                     f"got {got}")
                t.ok(m and one(r, "ECHOD_CHILD_PID") == m.group(3), "... the pid the text names")
                dur = one(r, "ECHOD_DURATION_USEC") or ""
                t.ok(dur.isdigit() and int(dur) < 60_000_000 and "ERRNO" not in r,
                     f"... a duration in microseconds ({dur}) and no ERRNO at eof")
            t.ok(not d.wait_line(r"connection from", 0.5),
                 "no connection line on stderr: the record carries it", d.stderr_text())
            ready = j.wait_for(lambda r: one(r, "MESSAGE_ID") == ID_READY, 5 * SLOW)
            r = ready[0] if ready else {}
            t.ok(ready and (one(r, "MESSAGE") or "").startswith("ready: ") and one(r, "PRIORITY") == "5"
                 and one(r, "ECHOD_MAX_CLIENTS") == "1024" and "ECHOD_LISTENERS" in r,
                 "the ready record: its MESSAGE_ID, text, priority and fields", str(r))
            d.stop()
            stopped = j.wait_for(lambda r: one(r, "MESSAGE_ID") == ID_STOPPED, 5 * SLOW)
            r = stopped[0] if stopped else {}
            t.ok(stopped and one(r, "MESSAGE") == "stopped: 2 served, 0 refused" and one(r, "ECHOD_SERVED") == "2"
                 and one(r, "ECHOD_REFUSED") == "0" and one(r, "ECHOD_JOURNAL_DROPPED") == "0",
                 "the stop record: served, refused, and no record dropped", str(r))
    finally:
        j.close()


def test_refusal_record(t, exe):
    j = JournalSocket()
    try:
        with started(exe, ["--max-per-source", "1"], journal=True, env=j.env()) as (d, ls):
            with connect(ls.getsockname(), 5 * SLOW) as held:
                held.sendall(b"h")
                recv_exact(held, 1, 5 * SLOW)
                with connect(ls.getsockname(), 5 * SLOW) as refused:
                    recv_to_eof(refused, 5 * SLOW)
                rs = j.wait_for(lambda r: one(r, "MESSAGE_ID") == ID_REFUSED_SOURCE, 15 * SLOW)
            r = rs[0] if rs else {}
            t.ok(rs and one(r, "ECHOD_REFUSED") == "1" and one(r, "ECHOD_SOURCES") == "127.0.0.1 (1)"
                 and one(r, "ECHOD_MAX_PER_SOURCE") == "1" and one(r, "PRIORITY") == "4"
                 and (one(r, "MESSAGE") or "").startswith("Refused 1 connection over the limit of 1"),
                 "the refusal record: MESSAGE_ID, count, sources and text", str(r))
            d.stop()
    finally:
        j.close()


def test_log_peer(t, exe):
    for mode, text, field in (("network", "127.0.0.0/24", "127.0.0.0/24"), ("none", "(hidden)", None)):
        j = JournalSocket()
        try:
            with started(exe, ["--log-peer", mode], journal=True, env=j.env()) as (d, ls):
                port, _ = connection(ls.getsockname(), d, b"abc", 5 * SLOW)
                rs = j.wait_for(by_port(port), 10 * SLOW)
                r = rs[0] if rs else {}
                t.ok(rs and (one(r, "MESSAGE") or "").startswith(f"connection from {text} port {port} (pid "),
                     f"--log-peer {mode}: the text names {text}", str(r))
                t.ok(rs and one(r, "ECHOD_PEER_ADDR") == field and one(r, "ECHOD_PEER_PORT") == str(port),
                     f"--log-peer {mode}: ECHOD_PEER_ADDR is {field}", str(r))
                d.stop()
        finally:
            j.close()
        # and on a plain stderr, the line
        with started(exe, ["--log-peer", mode]) as (d, ls):
            port, _ = connection(ls.getsockname(), d, b"abc", 5 * SLOW)
            ms = d.wait_line(rf"connection from \S+ port {port} \(pid", 10 * SLOW)
            t.ok(ms and ms[0].group(0).startswith(f"connection from {text} port"),
                 f"--log-peer {mode}: the stderr line names {text}", d.stderr_text())
            t.ok(not d.wait_line(r"connection from 127\.0\.0\.1", 0), f"--log-peer {mode}: no full address "
                 "on stderr", d.stderr_text())
            d.stop()


def test_journal_unavailable(t, exe):
    # absent: the harness's default socket does not exist
    with started(exe, journal=True) as (d, ls):
        port, _ = connection(ls.getsockname(), d, b"abc", 5 * SLOW)
        ms = d.wait_line(rf"<6>connection from 127.0.0.1 port {port} \(pid", 10 * SLOW)
        t.ok(ms, "no journal socket: the connection line goes to stderr", d.stderr_text())
        t.ok(d.wait_line(r"^<5>ready: ", 1), "... and the ready line", d.stderr_text())
        d.stop()
    # full: nothing is read from it
    j = JournalSocket()
    try:
        with started(exe, journal=True, env=j.env()) as (d, ls):
            n = j.fill()
            start = time.monotonic()
            ports = [connection(ls.getsockname(), d, b"full", 5 * SLOW)[0] for _ in range(20)]
            took = time.monotonic() - start
            t.ok(n > 0 and took < 10 * SLOW, f"a full journal socket ({n} queued) does not stall accepting: "
                 f"20 connections in {took:.2f} s")
            found = [bool(d.wait_line(rf"<6>connection from 127.0.0.1 port {p} \(pid", 10 * SLOW)) for p in ports]
            t.ok(all(found), "... every connection's line goes to stderr instead", d.stderr_text()[-2000:])
            d.stop()
    finally:
        j.close()


if __name__ == "__main__":
    run([test_connection_records, test_refusal_record, test_log_peer, test_journal_unavailable])
