#!/usr/bin/env python3
"""The README's *Operate* (its status and logs) under a real systemd (nspawn.py): echo on
127.0.0.1:7 and [::1]:7 as the README shows it; the live counts in StatusText and
systemctl status; the ready line and one info line per connection in the journal, the
structured records with every field, MESSAGE_ID= filtering and the catalog's text; the
--log-peer network drop-in; the UDP drop-in.

usage: test_nspawn_operate.py SOURCE_ROOT BUILD_ROOT BUILT_SERVICE_UNIT"""

import os
import socket

import nspawn  # noqa: E402  (beside this script; reads the same arguments)
from nspawn import (CONN_RE, ID_CONNECTION, ID_READY, PORT, Failed, check, family,  # noqa: E402
                    port_echo, wait_for)



class OperateTest(nspawn.SystemTest):
    def t_echo(self):
        self.echo_ok("127.0.0.1", 256 * 1024)
        self.echo_ok("::1", 64 * 1024)
        self.socat_hello()  # the README's example

    def t_status(self):
        # one connection held open, mid-stream
        held = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        try:
            held.sendall(b"x" * 100)
            got = b""
            while len(got) < 100:
                got += held.recv(100 - len(got))
            text, m = wait_for("StatusText with 1 client active",
                               lambda: (lambda t, m: (t, m) if m and m.group(1) == "1" else None)(
                                   *self.status()), 5)
            served = int(m.group(3))
            check(int(m.group(2)) == 1024, f"cap in {text!r}")
            check(served >= self.n_conns, f"{text!r}: served < {self.n_conns} finished")
            p = self.c.run(["systemctl", "status", "--no-pager", "echo.service"], check=False)
            check(f"Status: \"{text}\"" in p.stdout, f"systemctl status: {p.stdout}")
            held.shutdown(socket.SHUT_WR)
            while held.recv(4096):
                pass
        finally:
            held.close()
        self.n_conns += 1
        self.conn_bytes.append(100)
        text2, _ = wait_for("StatusText with 0 clients active",
                            lambda: (lambda t, m: (t, m) if m and m.group(1) == "0"
                                     and int(m.group(3)) >= self.n_conns else None)(
                                *self.status()), 5)
        return f"{text!r} then {text2!r}"

    def t_journal(self):
        def lines():
            j = self.journal()
            conns = [(e, CONN_RE.search(e["MESSAGE"])) for e in j]
            conns = [(e, m) for e, m in conns if m]
            return (j, conns) if len(conns) >= self.n_conns else None
        j, conns = wait_for(f"{self.n_conns} connection lines", lines, 5)
        ready = [e for e in j if e["MESSAGE"].startswith("ready: ")]
        check(ready, "no ready line")
        check(ready[0].get("PRIORITY") == "5", f"ready line priority {ready[0].get('PRIORITY')}")
        check(f"tcp [::]:{PORT}" in ready[0]["MESSAGE"], f"ready line: {ready[0]['MESSAGE']}")
        check(len(conns) == self.n_conns,
              f"{len(conns)} connection lines for {self.n_conns} connections")
        prios = sorted(set(e.get("PRIORITY") for e, _ in conns))
        check(prios == ["6"], f"connection line priorities {prios}, want info (6)")
        peers = sorted(set(m.group(1) for _, m in conns))
        check(set(peers) <= {"127.0.0.1", "::1"}, f"peers {peers}")
        got = sorted(int(m.group(5)) for _, m in conns)
        check(got == sorted(self.conn_bytes), f"bytes {got}, sent {sorted(self.conn_bytes)}")
        main = int(self.c.show("echo.service", "MainPID") or 0)
        child_pids = set(int(m.group(3)) for _, m in conns)
        check(main not in child_pids and len(child_pids) == len(conns),
              f"child pids {child_pids}, main {main}")
        check(all(m.group(4) == "eof" for _, m in conns), "reasons: "
              + " ".join(m.group(4) for _, m in conns))
        # what an operator types
        p = self.c.run(["journalctl", "-u", "echo.service", "-p", "info", "--no-pager", "-o", "cat"])
        check(sum(1 for l in p.stdout.splitlines() if CONN_RE.search(l)) == self.n_conns,
              "journalctl -p info does not show them all")
        return f"ready: {ready[0]['MESSAGE']!r}; e.g. {conns[0][0]['MESSAGE']!r}"

    def t_journal_records(self):
        conns = {("127.0.0.1", port_echo("127.0.0.1", n)): n for n in (10, 7000)}
        conns[("::1", port_echo("::1", 333))] = 333

        def found():
            rs = self.records("ECHOD_END=eof")
            by = {(r.get("ECHOD_PEER_ADDR"), int(r.get("ECHOD_PEER_PORT", 0))): r for r in rs}
            return by if set(conns) <= set(by) else None
        by = wait_for(f"records of {len(conns)} connections (ECHOD_END=eof)", found, 10)
        main = int(self.c.show("echo.service", "MainPID") or 0)
        for key, n in conns.items():
            r = by[key]
            m = CONN_RE.search(r.get("MESSAGE", ""))
            check(m and m.group(1) == key[0] and int(m.group(2)) == key[1], f"MESSAGE {r.get('MESSAGE')!r}")
            want = {"ECHOD_BYTES": str(n), "ECHOD_END": "eof", "ECHOD_CHILD_PID": m.group(3),
                    "MESSAGE_ID": ID_CONNECTION, "SYSLOG_IDENTIFIER": "echod", "PRIORITY": "6",
                    "DOCUMENTATION": "man:echod(8)", "_SYSTEMD_UNIT": "echo.service"}
            got = {k: r.get(k) for k in want}
            check(got == want, f"record of {key}: {got}, want {want}")
            check(r.get("ECHOD_DURATION_USEC", "").isdigit(), f"ECHOD_DURATION_USEC {r.get('ECHOD_DURATION_USEC')}")
            check(int(r["ECHOD_CHILD_PID"]) != main and r.get("_PID") == str(main),
                  f"child pid {r['ECHOD_CHILD_PID']}, sent by {r.get('_PID')}, MainPID {main}")
        # MESSAGE_ID= filtering: only that kind of record
        rs = self.records(f"MESSAGE_ID={ID_CONNECTION}")
        check(len(rs) >= len(conns) and all(r.get("MESSAGE_ID") == ID_CONNECTION for r in rs)
              and all(CONN_RE.search(r.get("MESSAGE", "")) for r in rs),
              f"MESSAGE_ID={ID_CONNECTION}: {len(rs)} records, not all connection records")
        ready = self.records(f"MESSAGE_ID={ID_READY}")
        check(ready and ready[-1].get("MESSAGE", "").startswith("ready: ")
              and ready[-1].get("ECHOD_MAX_CLIENTS") == "1024" and ready[-1].get("ECHOD_LISTENERS"),
              f"MESSAGE_ID={ID_READY}: {ready[-1:] }")
        # journalctl -x: the catalog's text under the records
        for mid, subject in ((ID_READY, "echod is ready"), (ID_CONNECTION, "A connection to echod ended")):
            p = self.c.run(["journalctl", "-u", "echo.service", f"MESSAGE_ID={mid}", "-x", "-n", "1",
                            "--no-pager"], timeout=30)
            check(subject in p.stdout and "man:echod(8)" in p.stdout,
                  f"journalctl -x MESSAGE_ID={mid} shows no catalog text:\n{p.stdout}")
        return f"e.g. {by[next(iter(conns))]['MESSAGE']!r}"

    def t_journal_log_peer(self):
        self.c.sh("mkdir -p /etc/systemd/system/echo.service.d\n"
                  "printf '[Service]\\nExecStart=\\nExecStart=/usr/sbin/echod --log-peer network\\n' "
                  "> /etc/systemd/system/echo.service.d/log-peer.conf\n"
                  "systemctl daemon-reload\nsystemctl restart echo.service\n", timeout=60)
        try:
            port = port_echo("127.0.0.1", 5)
            rs = wait_for("the masked record", lambda: [
                r for r in self.records("ECHOD_END=eof", f"ECHOD_PEER_PORT={port}")] or None, 10)
            r = rs[-1]
            check(r.get("ECHOD_PEER_ADDR") == "127.0.0.0/24", f"ECHOD_PEER_ADDR {r.get('ECHOD_PEER_ADDR')}")
            check(r.get("MESSAGE", "").startswith(f"connection from 127.0.0.0/24 port {port} (pid "),
                  f"MESSAGE {r.get('MESSAGE')!r}")
            return repr(r["MESSAGE"])
        finally:
            self.c.sh("rm -f /etc/systemd/system/echo.service.d/log-peer.conf\n"
                      "systemctl daemon-reload\nsystemctl restart echo.service\n", timeout=60)
            self.reset()

    def t_udp(self):
        self.reset()
        # as in the README
        self.c.sh("mkdir -p /etc/systemd/system/echo.socket.d && "
                  "cp /usr/share/doc/echod/examples/echo-udp.conf "
                  "/etc/systemd/system/echo.socket.d/udp.conf && "
                  "systemctl daemon-reload && systemctl restart echo.socket", timeout=60)
        listen = self.c.show("echo.socket", "Listen")
        check(f"[::]:{PORT} (Datagram)" in listen, f"Listen={listen}")
        for host in ("127.0.0.1", "::1"):
            with socket.socket(family(host), socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                payload = os.urandom(1200)
                s.sendto(payload, (host, PORT))
                try:
                    back, _ = s.recvfrom(65536)
                except socket.timeout:
                    raise Failed(f"no UDP echo from {host} in 5 s")
                check(back == payload, f"UDP {host}: {len(back)} bytes back, different")
        # a privileged source port gets nothing back
        for port in range(1023, 900, -1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                s.close()
        with s:
            s.settimeout(1.5)
            s.sendto(b"loop?", ("127.0.0.1", PORT))
            try:
                back = s.recv(65536)
                raise Failed(f"answered a datagram from port {port}: {back!r}")
            except socket.timeout:
                pass
        text, m = wait_for("StatusText with 2 datagrams echoed, 1 dropped",
                           lambda: (lambda t, m: (t, m) if m and m.group(5) and
                                    int(m.group(5)) >= 2 and int(m.group(6)) >= 1 else None)(
                               *self.status()), 5)
        return f"source port {port} ignored; {text!r}"


if __name__ == "__main__":
    t = OperateTest(nspawn.Container())
    nspawn.main(t, t.install_steps() + [
        ("TCP echo on 127.0.0.1:7 and [::1]:7, and the README's socat line", t.t_echo, False),
        ("systemctl show -p StatusText echo.service shows live counts", t.t_status, False),
        ("journalctl -u echo.service: ready line (notice), one info line per connection",
         t.t_journal, False),
        ("journald records: journalctl -u echo.service ECHOD_END=eof -o json has every field "
         "(peer, port, pid, bytes, unit); MESSAGE_ID= filters; journalctl -x shows the catalog",
         t.t_journal_records, False),
        ("--log-peer network (a drop-in) masks the address in the text and the fields",
         t.t_journal_log_peer, False),
        ("UDP drop-in: datagrams echoed, privileged source port ignored", t.t_udp, False),
    ])
