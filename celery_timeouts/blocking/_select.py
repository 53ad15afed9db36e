"""`select.select`, `select.poll`, `select.epoll` and `selectors`, ended by the deadline.

`select.poll()` objects and `select.epoll` are C types that cannot be subclassed or
patched: while patched, `select.poll` and `select.epoll` make thin wrappers around the
real objects. `selectors` keeps the originals it looked up at import, and its classes'
`select` methods are patched instead.
"""

from __future__ import annotations

import math
import select as _stdlib
import selectors
from collections.abc import Callable
from typing import Any

from .._current import innermost as _innermost
from ._deadline import TIMED_OUT, limiting_scope, under_limiting_scope, until_deadline

original_select = _stdlib.select
original_poll: Callable[[], Any] | None = getattr(_stdlib, "poll", None)
original_epoll: Any = getattr(_stdlib, "epoll", None)


def select(
    rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None
) -> tuple[list[Any], list[Any], list[Any]]:
    """`select.select`, ended by the deadline of the thread's scope."""
    if _innermost.get() is None:
        return original_select(rlist, wlist, xlist, timeout)
    scope = limiting_scope()
    if scope is None:
        return original_select(rlist, wlist, xlist, timeout)

    def bounded(bound: float) -> Any:
        ready = original_select(rlist, wlist, xlist, bound)
        return ready if any(ready) else TIMED_OUT

    return until_deadline(  # type: ignore[no-any-return]
        scope, timeout, bounded, lambda own: original_select(rlist, wlist, xlist, own)
    )


def _milliseconds_to_seconds(timeout: Any) -> float | None:
    """A poll timeout (ms; None or negative: forever) in seconds."""
    return None if timeout is None or timeout < 0 else timeout / 1000


def _poll_in_scope(poll: Callable[..., list[Any]], timeout: Any, *rest: Any) -> list[Any]:
    """`poll(timeout_ms, *rest)` ended by the deadline; `timeout` as the caller gave it."""
    scope = limiting_scope()
    try:
        seconds = _milliseconds_to_seconds(timeout)
    except TypeError:
        scope = None  # the original names the bad value
    if scope is None:
        return poll(timeout, *rest)

    def bounded(bound: float) -> Any:
        return poll(math.ceil(bound * 1000), *rest) or TIMED_OUT

    return until_deadline(scope, seconds, bounded, lambda _: poll(timeout, *rest))


class _Poll:
    """A `select.poll()` object whose `poll()` ends at the deadline of the thread's scope."""

    __slots__ = ("_poll",)

    def __init__(self, poll: Any) -> None:
        self._poll = poll

    def register(self, *args: Any) -> None:
        self._poll.register(*args)

    def modify(self, *args: Any) -> None:
        self._poll.modify(*args)

    def unregister(self, *args: Any) -> None:
        self._poll.unregister(*args)

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        if _innermost.get() is None:
            return self._poll.poll(timeout)  # type: ignore[no-any-return]
        return _poll_in_scope(self._poll.poll, timeout)


def poll() -> _Poll:
    """`select.poll()`: its `poll()` ends at the deadline of the thread's scope."""
    assert original_poll is not None
    return _Poll(original_poll())


class epoll:  # it stands in for `select.epoll`
    """`select.epoll`: its `poll()` ends at the deadline of the thread's scope.

    A wrapper around the real epoll object; everything but `poll` is the real one's.
    """

    __slots__ = ("_epoll",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._epoll = original_epoll(*args, **kwargs)

    @classmethod
    def fromfd(cls, fd: int) -> epoll:
        wrapper = cls.__new__(cls)
        wrapper._epoll = original_epoll.fromfd(fd)
        return wrapper

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        if _innermost.get() is None:
            return self._epoll.poll(timeout, maxevents)  # type: ignore[no-any-return]
        scope = limiting_scope()
        if scope is None:
            return self._epoll.poll(timeout, maxevents)  # type: ignore[no-any-return]
        real = self._epoll
        try:
            own = None if timeout is None or timeout < 0 else timeout
        except TypeError:
            return real.poll(timeout, maxevents)  # type: ignore[no-any-return]
        return until_deadline(
            scope, own, lambda bound: real.poll(bound, maxevents) or TIMED_OUT,
            lambda _: real.poll(timeout, maxevents),
        )

    def __getattr__(self, name: str) -> Any:
        if name == "_epoll":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self._epoll, name)

    def __enter__(self) -> epoll:
        self._epoll.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._epoll.__exit__(*exc_info)


def _selector_select(cls: type[selectors.BaseSelector]) -> Callable[..., Any]:
    """`cls.select`, ended by the deadline of the thread's scope."""
    original = cls.select

    def select(self: selectors.BaseSelector, timeout: float | None = None) -> Any:
        if _innermost.get() is None:
            return original(self, timeout)
        return under_limiting_scope(
            timeout, lambda bound: original(self, bound) or TIMED_OUT,
            lambda own: original(self, own),
        )

    select.__qualname__ = f"{cls.__name__}.select"
    select.__doc__ = original.__doc__
    return select


_SELECTORS = [
    getattr(selectors, name)
    for name in (
        "SelectSelector", "PollSelector", "EpollSelector", "DevpollSelector", "KqueueSelector",
    )
    if hasattr(selectors, name)
]
TARGETS: list[tuple[object, str, object]] = [
    (_stdlib, "select", select),
    *([(_stdlib, "poll", poll)] if original_poll is not None else []),
    *([(_stdlib, "epoll", epoll)] if original_epoll is not None else []),
    *((cls, "select", _selector_select(cls)) for cls in _SELECTORS),
]
