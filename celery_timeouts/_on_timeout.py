"""Deadline callbacks: code that runs when a scope's deadline passes, before its timeout.

A thread blocked in C that no patch reaches (a raw `Lock.acquire`, psycopg waiting for
the server, a C extension's socket) sees no timeout until the call returns. A callback
registered with `scope.on_timeout(...)` makes it return: `conn.cancel()`,
`sock.shutdown()`, `proc.kill()`, a write to a wake-up pipe. Each backend calls
`run_deadline_callbacks` where it acts at the deadline (the watchdog thread, the hub,
the SIGALRM handler, the event loop) just before it delivers the timeout.

A scope holds its registrations in `_deadline_calls`: None (nothing registered, the
common case, so a scope that registers nothing costs one attribute more), a list of
handles, or one of two markers once they have run (`_DISPATCHED`) or the scope has
exited (`_DROPPED`). One OS lock orders registration against dispatch; a SIGALRM handler
or the green guard may interrupt the very thread that holds it, so they only try it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._context import os_lock
from ._current import DeliveryState, ScopeState, earliest, innermost

if TYPE_CHECKING:
    from ._scope import TimeoutScope

logger = logging.getLogger("celery_timeouts")

_DISPATCHED: list[OnTimeout] = []  # markers, compared by identity, never appended to
_DROPPED: list[OnTimeout] = []
_lock = os_lock()


class OnTimeout:
    """The handle `on_timeout` returns: `cancel()` keeps the callback from running."""

    __slots__ = ("_args", "_callback", "_outcome", "_token")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback = callback
        self._args = args
        self._outcome = "pending"
        # Whoever pops the token (the deadline or cancel()) decides; list.pop is atomic
        # under the GIL and takes no lock, so a signal handler may do it.
        self._token = [True]

    def cancel(self) -> bool:
        """Keep the callback from running; False if it has run, is running, or was
        cancelled already."""
        if not self._claim("cancelled"):
            return False
        self._callback = self._args = None  # type: ignore[assignment]
        return True

    @property
    def pending(self) -> bool:
        """True until the callback runs, its scope exits or it is cancelled."""
        return bool(self._token)

    @property
    def ran(self) -> bool:
        """True once the callback was called (whether or not it raised)."""
        return self._outcome == "ran"

    @property
    def cancelled(self) -> bool:
        """True if `cancel()` or the scope's exit kept the callback from running."""
        return self._outcome in ("cancelled", "dropped")

    def __repr__(self) -> str:
        name = _name(self._callback) if self._callback is not None else "-"
        return f"<OnTimeout {name} {self._outcome}>"

    def _claim(self, outcome: str) -> bool:
        try:
            self._token.pop()
        except IndexError:
            return False
        self._outcome = outcome
        return True

    def _run(self) -> None:
        if not self._claim("ran"):
            return
        callback, args = self._callback, self._args
        self._callback = self._args = None  # type: ignore[assignment]
        try:
            callback(*args)
        except BaseException:  # never into the watchdog, the hub or the signal handler
            logger.exception("celery-timeouts: on_timeout callback %s failed", _name(callback))


def _name(callback: Callable[..., object]) -> str:
    name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
    if name is None:
        return repr(callback)
    module = getattr(callback, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def register(
    scope: TimeoutScope, callback: Callable[..., object], args: tuple[Any, ...]
) -> OnTimeout:
    """Add a callback to `scope`; it runs at once, here, if the scope's callbacks have
    run or its timeout was delivered already (the deadline has passed)."""
    if not callable(callback):
        raise TypeError(
            f"on_timeout() takes a callable and its arguments, got {callback!r}; "
            f"pass the function itself, e.g. on_timeout(conn.cancel), not conn.cancel()"
        )
    handle = OnTimeout(callback, args)
    with _lock:
        calls = scope._deadline_calls
        if calls is _DROPPED or scope.deadline is None:
            raise RuntimeError(not_active(scope))
        if calls is not _DISPATCHED and scope._delivery is not DeliveryState.FIRED:
            if calls is None:
                calls = []
                scope._swap_deadline_calls(calls)
            calls.append(handle)
            return handle
    handle._run()
    return handle


def not_active(scope: TimeoutScope) -> str:
    if scope.deadline is None and scope._state is ScopeState.ACTIVE:
        return (
            f"on_timeout() needs a scope with a limit, and {scope!r} has none: "
            f"there is no deadline to call back at"
        )
    return (
        f"on_timeout() needs an active scope, and {scope!r} is not: register callbacks "
        f"inside its 'with' block"
    )


def take(scope: TimeoutScope, wait: bool = True) -> list[OnTimeout] | None:
    """The deadline has passed: the callbacks to run now (once), or None if none.

    With `wait=False` (a signal handler, which may have interrupted a registration in
    its own thread), returns `_DISPATCHED` itself when the lock is busy: try again later.
    """
    if not _lock.acquire(wait):
        return _DISPATCHED
    try:
        calls = scope._deadline_calls
        if calls is _DROPPED or calls is _DISPATCHED:
            return None
        return scope._swap_deadline_calls(_DISPATCHED)
    finally:
        _lock.release()


def run_deadline_callbacks(scope: TimeoutScope, wait: bool = True) -> bool:
    """Run `scope`'s callbacks if they have not run yet. False only when `wait` is False
    and the lock was busy (the caller tries again a moment later)."""
    calls = take(scope, wait)
    if calls is _DISPATCHED:
        return False
    if calls:
        for handle in calls:
            handle._run()
    return True


def drop(scope: TimeoutScope) -> None:
    """The scope exits: callbacks that have not started will never run."""
    with _lock:
        calls = scope._swap_deadline_calls(_DROPPED)
    if calls is not None and calls is not _DISPATCHED and calls is not _DROPPED:
        for handle in calls:
            if handle._claim("dropped"):
                handle._callback = handle._args = None  # type: ignore[assignment]


def innermost_with_limit(scope: TimeoutScope | None) -> TimeoutScope:
    """The enclosing scope whose deadline comes first and has not fired: the one whose
    timeout will reach the code running now."""
    best = earliest(scope, _not_fired)
    if best is None:
        raise RuntimeError(
            "on_timeout() needs an active portable_timeout scope with a limit around the "
            "code that calls it (a task with time limits, or 'with portable_timeout(s):'); "
            "none is active here"
        )
    return best


def _not_fired(scope: TimeoutScope) -> bool:
    return scope._delivery is not DeliveryState.FIRED


def on_timeout(callback: Callable[..., object], *args: Any) -> OnTimeout:
    """`scope.on_timeout(callback, *args)` for the enclosing scope whose deadline comes
    first (and has not fired yet): the one whose timeout will reach the code here.

    Raises RuntimeError when no active scope with a limit encloses the caller.
    """
    return innermost_with_limit(innermost.get()).on_timeout(callback, *args)
