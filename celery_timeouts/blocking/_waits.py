"""`time.sleep` and the threading waits: `Condition.wait` and `Thread.join`.

`Condition.wait` is the one Python-level wait under `Event.wait`, `Condition.wait_for`,
`Semaphore.acquire`, `Barrier.wait`, `queue.Queue`'s `get`/`put` and
`concurrent.futures` (`Future.result`/`exception`, `wait`, `as_completed` wait on an
`Event` or a `Condition`), so patching it covers them all. `Thread.join` waits on a C
lock (3.10-3.12) or a C thread handle (3.13) of its own.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from .._current import innermost as _innermost
from ._deadline import TIMED_OUT, limiting_scope, under_limiting_scope, until_deadline

# The stdlib's own, as they were when this module was imported.
original_sleep = time.sleep
original_condition_wait = threading.Condition.wait
original_thread_join = threading.Thread.join


def sleep(seconds: float) -> None:
    """`time.sleep`, ended by the deadline of the thread's scope (celery_timeouts.blocking)."""
    if _innermost.get() is None:
        return original_sleep(seconds)
    return _sleep_in_scope(seconds)


def _sleep_in_scope(seconds: float) -> None:
    scope = limiting_scope()
    try:
        finite = 0 < seconds < math.inf
    except TypeError:
        finite = False  # the original names the bad value
    if scope is None or not finite:
        return original_sleep(seconds)
    return until_deadline(scope, seconds, _sleep_bounded, _sleep_own)  # type: ignore[no-any-return]


def _sleep_bounded(bound: float) -> Any:
    original_sleep(bound)
    return TIMED_OUT


def _sleep_own(seconds: float | None) -> None:
    original_sleep(seconds)  # type: ignore[arg-type]  # never None: sleep passes a number


def condition_wait(self: threading.Condition, timeout: float | None = None) -> bool:
    """`threading.Condition.wait`, ended by the deadline of the thread's scope."""
    if _innermost.get() is None:
        return original_condition_wait(self, timeout)

    def bounded(bound: float) -> Any:
        # Notified means notified: never drop a wake-up another waiter would need.
        return original_condition_wait(self, bound) or TIMED_OUT

    return under_limiting_scope(  # type: ignore[no-any-return]
        timeout, bounded, lambda own: original_condition_wait(self, own)
    )


def thread_join(self: threading.Thread, timeout: float | None = None) -> None:
    """`threading.Thread.join`, ended by the deadline of the thread's scope."""
    if _innermost.get() is None:
        return original_thread_join(self, timeout)

    def bounded(bound: float) -> Any:
        original_thread_join(self, bound)
        return TIMED_OUT if self.is_alive() else None

    return under_limiting_scope(  # type: ignore[no-any-return]
        timeout, bounded, lambda own: original_thread_join(self, own)
    )


condition_wait.__name__, condition_wait.__qualname__ = "wait", "Condition.wait"
thread_join.__name__, thread_join.__qualname__ = "join", "Thread.join"
TARGETS: list[tuple[object, str, object]] = [
    (time, "sleep", sleep),
    (threading.Condition, "wait", condition_wait),
    (threading.Thread, "join", thread_join),
]
