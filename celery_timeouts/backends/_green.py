"""What the gevent and eventlet backends share: a timer on the hub per scope, that throws
the timeout into the scope's greenlet at its deadline, and the green guard for the
greenlets of the main thread's hub that never yield (which starve the hub's timers).

A subclass says how to start and stop its library's timer (`_start_timer`, the
timer's `close`), and calls `at_deadline` from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._context import is_main_thread
from .._current import RESUME_POLL, DeliveryState, suspended
from .._on_timeout import run_deadline_callbacks
from .._unwind import protected
from .base import Backend
from .green_guard import GreenGuard, main_thread_guard

if TYPE_CHECKING:
    from .._scope import TimeoutScope


_PENDING = DeliveryState.PENDING


class ArmedGreenlet:
    """What a green backend armed for one scope: the greenlet it interrupts, and the
    hub's timer for the scope's deadline (replaced when the deadline moves). Built
    field by field in `arm`, with no `__init__` (see `WatchedScope`)."""

    __slots__ = ("greenlet", "timer")

    greenlet: Any
    timer: Any


class GreenTimerBackend(Backend):
    """A hub timer per scope; the scopes of the main thread's hub are also guarded.

    Only scopes of the main thread's hub are guarded: a signal reaches no other thread.
    """

    _guarded_hub: object = None
    _guard: GreenGuard | None = None

    _context: Callable[[], object]  # _context's: None where the library's hub can't time
    _not_here: str  # why not, and the fix

    def __init__(self, get_hub: Callable[[], Any], sleep: Callable[[float], None]) -> None:
        from greenlet import getcurrent

        self._get_hub = get_hub  # the library's: the calling thread's hub
        self._getcurrent = getcurrent
        self._sleep = sleep

    def unavailable_reason(self) -> str | None:
        return self._not_here if self._context() is None else None

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)

    def _start_timer(
        self, scope: TimeoutScope, armed: ArmedGreenlet, hub: Any, seconds: float | None
    ) -> Any:
        """A timer of `hub` that calls `at_deadline` for `armed.greenlet` in `seconds`
        (None: no limit yet, an unstarted timer that reschedule() starts); cleans up
        after itself if it fails. Its `close()` stops it."""
        raise NotImplementedError

    @protected
    def arm(self, scope: TimeoutScope) -> ArmedGreenlet:
        hub = self._get_hub()
        seconds = scope.seconds
        if seconds is None or scope._cancel_called:
            seconds = 0.0 if scope._deadline != math.inf else None
        armed = ArmedGreenlet()
        armed.greenlet = self._getcurrent()
        armed.timer = self._start_timer(scope, armed, hub, seconds)
        try:
            guard = self._guard if hub is self._guarded_hub else self._adopt_hub(hub)
            if guard is not None:
                guard.add(scope)
                if not guard.ticking:
                    guard.start()
        except BaseException:  # entry failed: leave no timer and no guard behind
            armed.timer.close()
            self._unguard(scope)
            raise
        return armed

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        scope._backend_state.timer.close()
        self._unguard(scope)
        if scope._delivery is not _PENDING and self._guard is not None:
            self._guard.withdraw(scope)  # a delivery the guard may have asked the watchdog for

    def _unguard(self, scope: TimeoutScope) -> None:
        """Replaced by the guard's set removal once a guard is adopted."""

    def _adopt_hub(self, hub: object) -> GreenGuard | None:
        """The guard for scopes of `hub` (not the hub seen so far), or None."""
        if not is_main_thread():
            return None
        self._guarded_hub = hub
        guard = self._guard = main_thread_guard()
        if guard is not None:
            self._unguard = guard.discard  # type: ignore[method-assign,assignment]
        return guard


def at_deadline(scope: TimeoutScope, greenlet: Any) -> float | None:
    """In the hub, when `scope`'s timer rings: throw its timeout into `greenlet` and
    return None; or return how long to wait before ringing again (the deadline moved
    later and the timer was not replaced yet, or the body is a generator's, suspended:
    delivered once it runs again, or at its exit)."""
    left = scope._deadline - time.monotonic()
    if left > 0:
        return left
    frame = greenlet.gr_frame  # None once the greenlet is dead
    if frame is not None and suspended(scope, frame):
        scope._mark_overdue()
        return RESUME_POLL
    if scope._deadline_calls:
        run_deadline_callbacks(scope)
        if scope._deadline > time.monotonic():
            return None  # a callback moved the deadline later: reschedule() re-times it
    if scope._delivery is not DeliveryState.FIRED:
        greenlet.throw(scope._fire())
    return None
