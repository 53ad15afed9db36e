"""Webhook subscribers for the example: a local HTTP server that answers fast, slowly or never.

It listens on 127.0.0.1 on a port the system picks, in a thread of the runner, so the
example needs no network. ``POST /hook/<name>?delay=S`` answers 204 after S seconds;
``POST /hook/stuck`` never answers, and notes when the client hangs up on it, which is
how the runner sees that the worker really closed the calls it gave up on.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STUCK_FOR = 60.0  # seconds /hook/stuck waits, far past any limit of the example


@dataclass
class Call:
    """One webhook call as the subscriber saw it."""

    path: str
    body: bytes
    opened: float  # time.monotonic() when its request arrived
    #: For /hook/stuck: seconds until the client closed the connection (None: it did not).
    hung_up_after: float | None = None


@dataclass
class Subscribers:
    """What the server received, filled in by its handler threads."""

    base_url: str
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def received(self, name: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.path == f"/hook/{name}"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck handler must not hold up the runner's exit
    request_queue_size = 128  # dozens of calls at once, not the default backlog of 5

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.closing = threading.Event()
        self.subscribers = Subscribers(f"http://127.0.0.1:{self.server_address[1]}")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up closes its socket mid-call: expected here, not an error."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        call = Call(url.path, body, time.monotonic())
        self.server.subscribers.record(call)
        if url.path == "/hook/stuck":
            call.hung_up_after = self._until_hang_up(call.opened)
            return
        if not url.path.startswith("/hook/"):
            self.send_error(404)
            return
        self.server.closing.wait(float(parse_qs(url.query).get("delay", ["0"])[0]))
        self.send_response(204)
        self.end_headers()

    def _until_hang_up(self, opened: float) -> float | None:
        """Wait, answering nothing, until the client closes; seconds it took (None: never)."""
        connection: socket.socket = self.connection
        end = opened + STUCK_FOR
        while time.monotonic() < end and not self.server.closing.is_set():
            readable, _, _ = select.select([connection], [], [], 0.05)
            if readable and not _peek(connection):
                return time.monotonic() - opened
        return None

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the runner prints what the tasks and the subscribers saw."""


def _peek(connection: socket.socket) -> bytes:
    """The next byte without reading it; b"" once the client has closed (or reset)."""
    try:
        return connection.recv(1, socket.MSG_PEEK)
    except OSError:
        return b""


@contextlib.contextmanager
def local_server() -> Iterator[Subscribers]:
    """Serve in a background thread; yield what it receives (and its ``base_url``)."""
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, name="local-http", daemon=True)
    thread.start()
    try:
        yield server.subscribers
    finally:
        server.closing.set()
        server.shutdown()
        server.server_close()
        thread.join()
