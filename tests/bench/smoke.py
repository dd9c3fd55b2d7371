#!/usr/bin/env python3
"""Smoke test: loadgen runs rate, pingpong and bulk for about a second against ref-epoll and
reports zero errors. It checks the tools, not any timing."""
import socket
import subprocess
import sys
import time

loadgen, ref_epoll = sys.argv[1], sys.argv[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(line):
    return dict(kv.split("=", 1) for kv in line.split())


runs = [
    ["rate", "-c", "4", "-d", "1"],
    ["pingpong", "-n", "200", "-d", "1"],
    ["pingpong", "-s", "-n", "200", "-d", "1"],
    ["bulk", "-c", "2", "-n", "16M"],
    ["hold", "-n", "50"],
]
print("1..%d" % (len(runs) + 1))
port = free_port()
server = subprocess.Popen([ref_epoll, str(port), "127.0.0.1"])
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    ceiling = subprocess.run([loadgen, "ceiling", "-c", "1", "-n", "16M"],
                             capture_output=True, text=True, timeout=30)
    r = parse(ceiling.stdout) if ceiling.returncode == 0 else {}
    ok = r.get("errors") == "0" and r.get("verified") == str(16 << 20)
    print("%s 1 - ceiling: %s" % ("ok" if ok else "not ok", ceiling.stdout.strip()))
    for i, args in enumerate(runs, 2):
        cmd = [loadgen, args[0], "-p", str(port)] + args[1:]
        if args[0] == "hold":
            cmd += ["-P", str(server.pid)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        r = parse(p.stdout) if p.returncode == 0 and p.stdout.strip() else {}
        ok = r.get("errors") == "0" and r.get("mode") == args[0]
        if args[0] == "rate":
            ok = ok and int(r.get("conns", 0)) > 0
        if args[0] == "hold":
            ok = ok and r.get("held") == "50"
        print("%s %d - %s: %s" % ("ok" if ok else "not ok", i, " ".join(args),
                                  p.stdout.strip() or p.stderr.strip()))
finally:
    server.kill()
    server.wait()
