"""Task time limits that work the same on every Celery execution pool.

`portable_timeout(seconds)` is both a decorator and a context manager. It picks a
backend for the context the code runs in: SIGALRM in the main thread, gevent or
eventlet timers in greenlets, asyncio cancellation for coroutines, and one shared
watchdog thread everywhere else.
"""

from __future__ import annotations

from ._current import ScopeState, current_scope
from ._on_timeout import OnTimeout, on_timeout
from ._scope import TimeoutScope
from ._validation import MAX_SECONDS as _MAX_SECONDS
from .backends import BackendChoice, detect_backend
from .cooperative import check, remaining, sleep
from .exceptions import BackendUnavailable, TaskTimeout
from .integration import enable_time_limits

__version__ = "0.1.0"


def portable_timeout(
    seconds: float | None,
    *,
    backend: str = "auto",
    exception: type[BaseException] = TaskTimeout,
    catchable: bool = False,
) -> TimeoutScope:
    """A deadline `seconds` from entry, for a `with` block or for every call of a function.

    `with portable_timeout(5) as scope:` times one block (`async with` in a coroutine);
    `@portable_timeout(5)` times each call of a function, method or `async def`.
    `seconds=None` means no limit. `backend` is 'auto' (the default) or one of
    'signal', 'thread', 'gevent', 'eventlet', 'asyncio'. On timeout the scope raises
    `exception` (default `TaskTimeout`, a `TimeoutError`).

    Inside the body the timeout travels as a private `BaseException` that
    `except Exception:` cannot swallow. With `catchable=True` the body is interrupted
    with `exception` itself instead, so it can catch it, clean up and carry on, and the
    scope does not raise again (Celery's soft time limit works this way).

    Raises TypeError/ValueError for bad `seconds`, `backend` or `exception`, and
    `BackendUnavailable` on entry when an explicitly chosen backend cannot run there.
    """
    if backend == "auto" and exception is TaskTimeout and catchable is False:
        if (type(seconds) is int or type(seconds) is float) and 0 < seconds <= _MAX_SECONDS:
            # The common case, checked here: half the cost of TimeoutScope(seconds).
            return _fresh_scope(float(seconds), "auto", TaskTimeout, False)
        return TimeoutScope(seconds)  # validates, and names what is wrong
    return TimeoutScope(seconds, backend=backend, exception=exception, catchable=catchable)


_fresh_scope = TimeoutScope._trusted


class _MoveOnScope(TimeoutScope):
    """A scope whose own timeout ends the body and is swallowed as it exits."""

    __slots__ = ()
    _quiet = True


def move_on_after(seconds: float | None, *, backend: str = "auto") -> TimeoutScope:
    """A `with` block (or `async with`) that stops at the deadline and moves on quietly.

    At the deadline the body is interrupted as by `portable_timeout`, but the block
    then exits without an exception; `scope.fired` tells afterwards. Only its own
    timeout is swallowed: an enclosing scope's goes on out. `cancel()` ends it early.
    """
    return _MoveOnScope(seconds, backend=backend)


__all__ = [
    "BackendChoice",
    "BackendUnavailable",
    "OnTimeout",
    "ScopeState",
    "TaskTimeout",
    "TimeoutScope",
    "check",
    "current_scope",
    "detect_backend",
    "enable_time_limits",
    "move_on_after",
    "on_timeout",
    "portable_timeout",
    "remaining",
    "sleep",
]
