"""A small HTTP proxy in front of the local registry that can fail on purpose.

Loopback only, threads only, bounded: it serves until stopped by the test. ``fail`` is a
predicate over (method, path); a failing request alternates between a 503 answer and a
dropped connection, the two kinds of fault mab must retry.

For timed faults, ``intercept(method, path)`` runs first (it may block: a held request)
and returns an answer to send instead of forwarding ``(status, headers, body)``, or None
to forward; ``after(method, path, status)`` runs once the upstream answered.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
Answer = tuple[int, dict[str, str], bytes]


class FaultProxy:
    def __init__(self, upstream_port: int = 5000) -> None:
        self.upstream_port = upstream_port
        self.fail: Callable[[str, str], bool] = lambda method, path: False
        self.intercept: Callable[[str, str], Answer | None] = lambda method, path: None
        self.after: Callable[[str, str, int], None] = lambda method, path, status: None
        self.faults = 0
        self.requests: list[tuple[str, str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                answer_instead = proxy.intercept(self.command, self.path)
                if answer_instead is not None:
                    status, headers_out, data_out = answer_instead
                    proxy.requests.append((self.command, self.path, status))
                    self.send_response(status)
                    for key, value in {**headers_out, "content-length": str(len(data_out))}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data_out)
                    return
                if proxy.fail(self.command, self.path):
                    proxy.faults += 1
                    proxy.requests.append((self.command, self.path, 0))
                    if proxy.faults % 2:
                        self.send_response(503)
                        self.send_header("content-length", "0")
                        self.end_headers()
                    else:  # drop the connection without an answer
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                proxy.requests.append((self.command, self.path, answer.status))
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    # HEAD answers carry the real length of what GET would return
                    if key.lower() not in HOP and (
                        key.lower() != "content-length" or self.command == "HEAD"
                    ):
                        self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()
                proxy.after(self.command, self.path, answer.status)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
