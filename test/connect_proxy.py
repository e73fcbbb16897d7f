#!/usr/bin/env python3
"""A small HTTP CONNECT proxy for the tests: 127.0.0.1 only, standard library.

    python3 test/connect_proxy.py --port-file FILE --log FILE [--parent-pid PID]

It listens on 127.0.0.1 (a free port, written to --port-file), answers CONNECT
host:port by opening a tunnel to that target, which must be a loopback
address, and appends each target to --log as one line before it connects.
Any other method is answered 405.  With --user USER:PASSWORD it requires
Proxy-Authorization (Basic) and answers 407 otherwise.  It exits on SIGTERM,
when --parent-pid is gone, or after --max-lifetime seconds.
"""
import argparse
import base64
import ipaddress
import os
import select
import signal
import socket
import sys
import threading
import time
from socketserver import StreamRequestHandler, ThreadingTCPServer

HOST = "127.0.0.1"


class ProxyHandler(StreamRequestHandler):
    timeout = 30
    rbufsize = 0  # unbuffered: nothing of the tunnel is left in a read buffer

    def reply(self, status):
        self.wfile.write(("HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                          % status).encode("ascii"))

    def handle(self):
        line = self.rfile.readline(8192).decode("latin-1").strip()
        headers = {}
        for _ in range(100):
            h = self.rfile.readline(8192).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            name, _, value = h.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = line.split()
        if len(parts) != 3 or parts[0] != "CONNECT":
            self.server.record("REFUSED %s" % (parts[0] if parts else "?"))
            self.reply("405 Method Not Allowed")
            return
        target = parts[1]
        if self.server.user is not None:
            expected = "Basic " + base64.b64encode(self.server.user.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self.server.record("UNAUTHORIZED %s" % target)
                self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        try:
            if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
                raise ValueError
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except (OSError, ValueError):
            self.server.record("FAILED %s" % target)
            self.reply("502 Bad Gateway")
            return
        self.server.record("CONNECT %s" % target)
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        self.tunnel(self.connection, upstream)

    def tunnel(self, client, upstream):
        sockets = [client, upstream]
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select(sockets, [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is client else client).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()


class ProxyServer(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, log, user):
        super().__init__((HOST, 0), ProxyHandler)
        self.log = log
        self.user = user
        self.lock = threading.Lock()

    def record(self, line):
        with self.lock, open(self.log, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def main():
    parser = argparse.ArgumentParser(description="CONNECT proxy for tests (127.0.0.1 only).")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True, help="one line per CONNECT target")
    parser.add_argument("--user", help="USER:PASSWORD required in Proxy-Authorization")
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--max-lifetime", type=float, default=900.0)
    args = parser.parse_args()

    server = ProxyServer(args.log, args.user)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="ascii") as out:
        out.write("%d\n" % server.server_address[1])
    os.replace(tmp, args.port_file)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    deadline = time.monotonic() + args.max_lifetime
    while not stop.is_set() and time.monotonic() < deadline:
        if args.parent_pid is not None:
            try:
                os.kill(args.parent_pid, 0)
            except ProcessLookupError:
                break
        stop.wait(0.5)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
