"""A local HTTP server for the example to fetch from: quick, slow, endless and silent URLs.

It listens on 127.0.0.1 on a port the system picks, in a thread of the runner, so the
example needs no network. `/hang` never answers: its handlers wait until the server is
closed, which releases them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STREAM_CHUNK = b"x" * 1024
STREAM_EVERY = 0.1  # seconds between chunks of /stream
STREAM_FOR = 30.0  # /stream's length, far past any limit of the example


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not hold up the runner's exit
    request_queue_size = 128  # a burst of connections, not the default backlog of 5

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.closing = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that gave up (a task past its limit) close their socket: not news."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/ok":
            self._reply(b"ok")
        elif url.path == "/slow":
            self.server.closing.wait(float(query.get("seconds", ["1"])[0]))
            self._reply(b"slow but there")
        elif url.path == "/stream":
            self._stream()
        elif url.path == "/hang":
            self.server.closing.wait(60)
        else:
            self.send_error(404)

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        """A body without Content-Length that trickles in until the server closes."""
        self.send_response(200)
        self.end_headers()
        end = time.monotonic() + STREAM_FOR
        while time.monotonic() < end and not self.server.closing.wait(STREAM_EVERY):
            self.wfile.write(STREAM_CHUNK)
            self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the runner prints what the tasks saw."""


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """Serve in a background thread; yield the base URL, ``http://127.0.0.1:PORT``."""
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, name="local-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.closing.set()
        server.shutdown()
        server.server_close()
        thread.join()
