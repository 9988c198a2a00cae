#!/usr/bin/env python3
"""Memory per idle keep-alive client connection (run by hand, not by CI).

    python3 tests/bench/idle_conns.py N PORT PID

Opens N connections to 127.0.0.1:PORT, sends one `GET /api/` on each, reads the answer, keeps
every socket open, and prints the VmRSS of process PID before and after. Start gatewayd with
tests/bench/gatewayd.toml and the bench upstream first (tests/bench/profile.sh shows how); N is
bounded by the open-files limit of both processes.
"""
import resource
import socket
import sys
import time


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    n, port, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"before: {rss(pid):.1f} MiB")
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /api/ HTTP/1.1\r\nHost: a\r\n\r\n")
        socks.append(s)
    for s in socks:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("connection closed before the answer")
            data += chunk
    time.sleep(1)
    print(f"{n} idle keep-alive connections (one request each): {rss(pid):.1f} MiB")


if __name__ == "__main__":
    main()
