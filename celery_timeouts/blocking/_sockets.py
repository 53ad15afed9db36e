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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._current import innermost as _innermost
from .._unwind import protected
from ._deadline import TIMED_OUT, limiting_scope, until_deadline

if TYPE_CHECKING:
    from .._scope import TimeoutScope

METHODS = (
    "connect", "accept", "recv", "recv_into", "recvfrom", "recvfrom_into",
    "send", "sendall", "sendto",
)
SSL_METHODS = (*METHODS, "do_handshake")


# Where the recv methods of `socket.socket` take their flags: inside a scope, on a
# blocking socket, they first try with MSG_DONTWAIT added, which returns what is already
# there in one system call (as stock) and changes nothing on the socket; only a call that
# would block goes on to the timeout below (two more system calls to set it and put it
# back, one to poll).
_DONTWAIT = int(getattr(socket, "MSG_DONTWAIT", 0))  # an int: IntFlag arithmetic costs 0.2 us
_FLAGS_AT = {"recv": 1, "recvfrom": 1, "recv_into": 2, "recvfrom_into": 2}
# Calls that cannot be cut into rounds: a second connect fails with EALREADY, and a
# sendall that timed out may have sent part of its data.
_NOT_RESUMABLE = frozenset({"connect", "sendall"})
_POSITIONAL_ONLY = frozenset({"connect", "accept", "recv", "recvfrom", "send", "sendall", "sendto"})


def _deadline_aware(owner: type, name: str) -> Callable[..., Any]:
    """`owner.name`, ended by the deadline of the thread's scope."""
    original = getattr(owner, name)
    get_innermost = _innermost.get
    flags_at = _FLAGS_AT.get(name) if owner is socket.socket and _DONTWAIT else None

    def method(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        if get_innermost() is None:
            return original(self, *args, **kwargs)
        if flags_at is not None and not kwargs and len(args) <= flags_at + 1:
            return _receive_in_scope(original, self, args, flags_at)
        return _call_in_scope(original, self, args, kwargs)

    def positional(self: socket.socket, *args: Any) -> Any:
        # The C methods that take no keywords: no dict to build on every call.
        if get_innermost() is None:
            return original(self, *args)
        if flags_at is not None and len(args) <= flags_at + 1:
            return _receive_in_scope(original, self, args, flags_at)
        return _call_in_scope(original, self, args, {})

    if owner is socket.socket and name in _POSITIONAL_ONLY:
        method = positional

    method.__name__ = name
    method.__qualname__ = f"{owner.__name__}.{name}"
    method.__doc__ = original.__doc__
    return method


def _receive_in_scope(
    original: Callable[..., Any], sock: socket.socket, args: Any, flags_at: int
) -> Any:
    scope = limiting_scope()
    if scope is None:
        return original(sock, *args)
    return _receive(scope, original, sock, args, flags_at)


@protected  # no injection may land between taking the data and returning it
def _receive(
    scope: TimeoutScope, original: Callable[..., Any], sock: socket.socket, args: Any,
    flags_at: int,
) -> Any:
    """A recv method: what is already there, or else wait as `_call`."""
    flags = args[flags_at] if len(args) > flags_at else 0
    # Only a blocking socket: with a timeout of its own, CPython polls for that timeout
    # before the first recv, MSG_DONTWAIT or not (sock_call_ex), so the try would wait.
    if sock.gettimeout() is None and not flags & _DONTWAIT:
        now = (*args[:flags_at], *(0,) * (flags_at - len(args)), flags | _DONTWAIT)
        try:
            return original(sock, *now)
        except BlockingIOError:
            pass
    return _call(scope, original, sock, args, {})


def _call_in_scope(
    original: Callable[..., Any], sock: socket.socket, args: Any, kwargs: Any
) -> Any:
    scope = limiting_scope()
    if scope is None:  # the main thread, a greenlet, no thread-backend scope: stock
        return original(sock, *args, **kwargs)
    return _call(scope, original, sock, args, kwargs)


@protected
def _call(
    scope: TimeoutScope, original: Callable[..., Any], sock: socket.socket, args: Any,
    kwargs: Any,
) -> Any:
    """The call with a socket timeout ending at the deadline, and the old one back after."""
    own = sock.gettimeout()
    if own == 0.0:  # a non-blocking socket never waits
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

    return until_deadline(
        scope, own, bounded, lambda _: original(sock, *args, **kwargs),
        resumable=original.__name__ not in _NOT_RESUMABLE,
    )


try:
    import ssl
except ImportError:  # a Python built without OpenSSL
    _SSL_SOCKETS: list[type] = []
else:
    _SSL_SOCKETS = [ssl.SSLSocket]
TARGETS: list[tuple[object, str, object]] = [
    *((socket.socket, name, _deadline_aware(socket.socket, name)) for name in METHODS),
    *((cls, name, _deadline_aware(cls, name)) for cls in _SSL_SOCKETS for name in SSL_METHODS),
]
