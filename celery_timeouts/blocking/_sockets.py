"""Socket calls, `ssl` included, ended by the deadline of the thread's scope.

A blocking call gets, for its duration, a socket timeout that ends at the deadline; the
socket's own timeout comes back afterwards (a blocking socket is blocking again). A
socket whose own timeout ends first keeps it, and raises `socket.timeout` as before.
Everything built on these methods follows: `create_connection`, `makefile` readers,
`http.client`, `urllib.request`, `smtplib`, `ftplib`, redis-py, requests/urllib3, ...

The timeout lives on the socket object, so another thread using the same socket at the
same moment sees it too (and may get `socket.timeout` early); sockets are rarely shared
that way.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

from .._scope import _innermost
from ._deadline import TIMED_OUT, limiting_scope, until_deadline

METHODS = (
    "connect", "accept", "recv", "recv_into", "recvfrom", "recvfrom_into",
    "send", "sendall", "sendto",
)
SSL_METHODS = (*METHODS, "do_handshake")


def _deadline_aware(owner: type, name: str) -> Callable[..., Any]:
    """`owner.name`, ended by the deadline of the thread's scope."""
    original = getattr(owner, name)

    def method(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        if _innermost.get() is None:
            return original(self, *args, **kwargs)
        return _call_in_scope(original, self, args, kwargs)

    method.__name__ = name
    method.__qualname__ = f"{owner.__name__}.{name}"
    method.__doc__ = original.__doc__
    return method


def _call_in_scope(
    original: Callable[..., Any], sock: socket.socket, args: Any, kwargs: Any
) -> Any:
    scope = limiting_scope()
    own = sock.gettimeout()
    if scope is None or own == 0.0:  # a non-blocking socket never waits
        return original(sock, *args, **kwargs)

    def bounded(bound: float) -> Any:
        try:
            sock.settimeout(bound)
            return original(sock, *args, **kwargs)
        except TimeoutError as error:
            if error.errno is not None:  # the OS's ETIMEDOUT, not the socket timeout
                raise
            return TIMED_OUT
        finally:
            sock.settimeout(own)

    return until_deadline(scope, own, bounded, lambda _: original(sock, *args, **kwargs))


TARGETS: list[tuple[object, str, object]] = [
    *((socket.socket, name, _deadline_aware(socket.socket, name)) for name in METHODS),
    *((ssl.SSLSocket, name, _deadline_aware(ssl.SSLSocket, name)) for name in SSL_METHODS),
]
