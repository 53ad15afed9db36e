"""What the watchdog thread holds in its heap, and how it sleeps between deadlines.

Its items: a `WatchedScope` for each scope of the thread backend (its record of that
arming, see `Backend.arm`), a `Callback` for `call_at` and a `Delivery` for `deliver`.
All three answer what the heap and the injection read: the deadline, the thread, the
frame deliveries stay within, whether still armed, the delivery state. `Wakeup` is the
watchdog's condition variable, built on OS locks so that a monkey-patched process never
makes the watchdog thread take a green lock.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from .._context import native_thread_id, os_lock
from .._current import DeliveryState, being_closed, entered_in_generator, suspended

if TYPE_CHECKING:
    from .._on_timeout import OnTimeout
    from .._scope import TimeoutScope

_WAIT_MAX = min(threading.TIMEOUT_MAX, 3600.0)


class Wakeup:
    """`threading.Condition`'s wait/notify for the watchdog, on OS locks only.

    `lock` is held by whoever calls `wait` or `notify`. The bell is a lock kept acquired
    while no notification is pending; `notify` releases it, `wait` acquires it back.
    """

    __slots__ = ("_bell", "_lock")

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self._bell = os_lock()
        self._bell.acquire()

    def wait(self, timeout: float | None = None) -> None:
        self._lock.release()
        try:
            # A lock's timeout is capped (OverflowError beyond): a far deadline just
            # means waking up once in a while to look again.
            self._bell.acquire(True, -1 if timeout is None else min(timeout, _WAIT_MAX))
        finally:
            self._lock.acquire()

    def notify(self) -> None:
        if self._bell.locked():  # notifiers hold `lock`: no two release it at once
            self._bell.release()


class WatchedScope:
    """The watchdog's record of one scope it enforces: the thread it interrupts, and
    whether the scope is still armed. The rest it reads from the scope itself, whose
    deadline may move (`reschedule`). At disarm the record lets go of the scope: the
    scope holds the record, so the two would otherwise wait for the garbage collector;
    only armed records are read.

    Built field by field where it is armed, with no `__init__`: that halves the cost of
    the record on every scope's entry (benchmarks/bench_hot_path.py)."""

    __slots__ = ("_armed", "_thread_id", "scope")

    scope: TimeoutScope
    _thread_id: int
    _armed: bool

    @property
    def _deadline(self) -> float:
        return self.scope._deadline

    @property
    def _delivery(self) -> DeliveryState:
        return self.scope._delivery

    @property
    def _entry_frame(self) -> FrameType | None:
        frame: FrameType | None = self.scope._entry_frame
        return frame

    @property
    def _deadline_calls(self) -> list[OnTimeout] | None:
        return self.scope._deadline_calls

    def _mark_overdue(self) -> None:
        self.scope._mark_overdue()

    def not_running(self, frame: FrameType) -> bool:
        """The scope's body is suspended (its thread paused at `frame`), or its generator
        is being closed."""
        scope = self.scope
        if not entered_in_generator(scope):
            return False  # (cheap: no look at every thread's exception)
        return suspended(scope, frame) or being_closed(
            scope, sys._current_exceptions().get(self._thread_id)
        )


def body_runs_in(scope: TimeoutScope) -> bool:
    """In the target thread, where an instruction delivery would land: True if the
    generator that entered `scope` is running (its frame is on the stack here)."""
    return not suspended(scope)


class Callback:
    """A function the watchdog runs on its own thread at a deadline (see `call_at`)."""

    __slots__ = ("_armed", "_deadline", "_delivery", "_entry_frame", "_thread_id", "function")

    def __init__(self, deadline: float, function: Callable[[], object]) -> None:
        self._deadline = deadline
        self.function = function
        self._armed = True
        self._delivery = DeliveryState.PENDING
        self._entry_frame = None
        self._thread_id = native_thread_id()  # survives a fork only in the forking thread


class Delivery:
    """An exception on its way into a thread (see `deliver`)."""

    __slots__ = (
        "_armed",
        "_deadline",
        "_delivery",
        "_entry_frame",
        "_exception",
        "_thread_id",
    )
    _deadline_calls = None  # as a scope that registered no `on_timeout` callback

    def __init__(
        self, thread_id: int, exception: BaseException, entry_frame: FrameType | None
    ) -> None:
        self._thread_id = thread_id
        self._exception = exception
        self._entry_frame = entry_frame
        self._deadline = time.monotonic()
        self._armed = True
        self._delivery = DeliveryState.PENDING

    def _mark_fired(self) -> None:
        self._delivery = DeliveryState.FIRED

    def _fire(self) -> BaseException:
        """As a scope's: mark it delivered, and return what is raised in the thread."""
        self._delivery = DeliveryState.FIRED
        return self._exception

    def _mark_overdue(self) -> None:
        if self._delivery is DeliveryState.PENDING:
            self._delivery = DeliveryState.OVERDUE
