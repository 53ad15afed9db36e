"""Cooperative helpers for code an asynchronous timeout cannot reach.

A thread blocked in C (a socket read, `time.sleep`, a lock) only sees an injected
exception once it is back in Python. Long loops and waits can poll instead: all three
helpers act on the innermost active scope of the current thread, greenlet or task.
"""

from __future__ import annotations

import time

from ._current import current_scope, earliest, enclosing
from ._scope import TimeoutScope
from ._validation import real_number
from .backends.base import Backend


def remaining() -> float | None:
    """Seconds left before the nearest enclosing deadline; None outside any scope."""
    deadline = _nearest_deadline(current_scope())
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.0)


def check() -> None:
    """Raise the timeout now if an enclosing scope's deadline has passed.

    The scope whose deadline passed first receives it and raises its public exception
    (`TaskTimeout` by default) as it exits.
    """
    scope = current_scope()
    if scope is None:
        return
    now = time.monotonic()
    owner = _earliest_expired(scope, now)
    if owner is None:
        return
    if owner._backend is not None:
        owner._backend.claim(owner)  # the backend must not deliver it a second time
    raise owner._unwinding()


_SLEEP_TAKES = "a number of seconds >= 0"
_SLEEP_FIX = "pass e.g. sleep(0.5)"


def sleep(seconds: float) -> None:
    """Sleep like `time.sleep`, but raise the timeout as soon as the deadline comes.

    Works in every backend, including a worker thread, where a plain `time.sleep`
    cannot be interrupted before it returns.
    """
    number = real_number(seconds, "sleep()'s seconds", _SLEEP_TAKES, _SLEEP_FIX)
    if number < 0:
        raise ValueError(f"sleep()'s seconds must be {_SLEEP_TAKES}, got {seconds!r}; {_SLEEP_FIX}")
    end = time.monotonic() + number
    while True:
        check()
        scope = current_scope()
        now = time.monotonic()
        if now >= end:
            return
        chunk = end - now
        deadline = _nearest_deadline(scope)
        if deadline is not None:
            chunk = min(chunk, max(deadline - now, 0.0))
        backend = _nearest_backend(scope)
        if backend is None:
            time.sleep(chunk)
        else:
            backend.sleep(chunk)


def _earliest_expired(scope: TimeoutScope, now: float) -> TimeoutScope | None:
    """The enclosing active scope whose deadline passed first (None if none)."""
    return earliest(scope, lambda node: node.deadline <= now)  # type: ignore[operator]


def _nearest_deadline(scope: TimeoutScope | None) -> float | None:
    """The earliest deadline of `scope` and the active scopes around it (reschedule()
    may have moved any of them since they were entered)."""
    nearest = earliest(scope, _any_scope)
    return None if nearest is None else nearest.deadline


def _any_scope(scope: TimeoutScope) -> bool:
    return True


def _nearest_backend(scope: TimeoutScope | None) -> Backend | None:
    return next((node._backend for node in enclosing(scope) if node._backend is not None), None)
