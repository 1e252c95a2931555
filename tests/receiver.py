"""A real HTTP(S) receiver on 127.0.0.1 for webhook tests (the `receiver` fixture in conftest.py).

It records what arrived on the wire (method, raw path, headers, raw body) and
the TCP connections it accepted, and answers from a script: a status per
request (then 200), a body (bytes, or made from the request), optionally held
back `delay` seconds. `close()` releases held answers and stops the server.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str  # as sent: query included, percent-escapes kept
    headers: dict[str, str]  # names as sent; values as http.server reads them (latin-1)
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class Receiver:
    """An HTTP server in a thread; with `ssl_context`, HTTPS (the handshake happens per connection)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        body: bytes | Callable[[Received], bytes] = b'{"ok": true}',
        content_type: str = "application/json",
    ):
        self.requests: list[Received] = []
        self.connections = 0
        self.statuses: list[int] = []  # answered in order, one per request; then 200
        self.body = body
        self.content_type = content_type
        self.delay = 0.0  # seconds each answer is held back (close() releases it)
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(self.command, self.path, dict(self.headers), self.rfile.read(length))
                receiver.requests.append(got)
                if receiver.delay:
                    receiver._release.wait(receiver.delay)
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                body = receiver.body(got) if callable(receiver.body) else receiver.body
                self.send_response(status)
                self.send_header("Content-Type", receiver.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def get_request(self):
                conn, addr = super().get_request()
                receiver.connections += 1
                return conn, addr

            def handle_error(self, request, client_address):
                pass  # a client that hangs up (or refuses our certificate) is expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self.server.server_address[1]
        self.url = f"{'https' if ssl_context is not None else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
