"""The lab's server processes; a standalone stdlib-only script run inside srv's namespace.

    python httpd.py serve  ADDR PORT PIDFILE   # HTTP/1.1: / (a small page), /big.bin
    python httpd.py stall  ADDR PORT PIDFILE   # listen(backlog=1) and never accept

`/big.bin` is BIG_SIZE deterministic bytes (SHA-256 in counter mode), so a test can check
what arrived and correlation sees non-repeating content.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIG_SIZE = 300_000
PAGE = b"<!doctype html><title>hopcap lab</title><p>hello from srv</p>\n"


def big_body(size: int = BIG_SIZE) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(b"hopcap-lab-%d" % i).digest()
        i += 1
    return bytes(out[:size])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hopcap-lab-srv"
    big = b""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, head_only: bool) -> None:
        if self.path == "/":
            status, body, ctype = 200, PAGE, "text/html"
        elif self.path == "/big.bin":
            status, body, ctype = 200, self.big, "application/octet-stream"
        else:
            status, body, ctype = 404, b"not found\n", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(False)

    def do_HEAD(self) -> None:
        self._send(True)


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the address (getfqdn): inside a namespace with
        # no route to a resolver that stalls for seconds
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


def _write_pid(path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def serve(addr: str, port: int, pidfile: str) -> None:
    _Handler.big = big_body()
    server = _Server((addr, port), _Handler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    _write_pid(pidfile)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def stall(addr: str, port: int, pidfile: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)  # the accept queue holds ~2 connections; it is never drained
    _write_pid(pidfile)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("serve", "stall"):
        sys.stderr.write(__doc__ or "")
        return 2
    mode, addr, port, pidfile = argv
    (serve if mode == "serve" else stall)(addr, int(port), pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
