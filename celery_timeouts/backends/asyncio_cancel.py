"""asyncio: cancel the current task at the deadline, like `asyncio.timeout`.

Cancellation is delivered only at an `await` inside the body. The owning scope turns
its own cancellation into the timeout exception and, on Python 3.11+, uncancels the
task so an outer `asyncio.timeout` or `TaskGroup` keeps counting correctly.
"""

from __future__ import annotations

import asyncio
import math
import time
from contextvars import Context
from typing import TYPE_CHECKING

from .._current import DeliveryState, ScopeState
from .._on_timeout import run_deadline_callbacks
from .._unwind import protected
from ..exceptions import BackendUnavailable
from .base import Backend

if TYPE_CHECKING:
    from .._scope import TimeoutScope


class AsyncioBackend(Backend):
    name = "asyncio"

    def unavailable_reason(self) -> str | None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return (
                "no asyncio event loop is running here; the asyncio backend times "
                "coroutines: use 'async with portable_timeout(...)' inside a coroutine, "
                "or decorate an 'async def' function"
            )
        if asyncio.current_task() is None:
            return "not running inside an asyncio task; run the code in a task"
        return None

    @protected
    def arm(self, scope: TimeoutScope) -> _ArmedTask:
        # `auto` skips unavailable_reason() for coroutines: the checks happen here, once.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        task = asyncio.current_task(loop) if loop is not None else None
        if loop is None or task is None:
            raise BackendUnavailable(
                f"backend='asyncio' cannot run here: {self.unavailable_reason()}"
            )
        armed = _ArmedTask()
        armed.task = task
        armed.cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
        armed.cancel_sent = False
        # Just armed: the deadline is `seconds` from now. A fresh, empty context for the
        # callback: a copy of the current one would keep the scope alive (and the garbage
        # collector busy) for as long as the cancelled handle sits in the loop's heap.
        seconds = scope.seconds
        if seconds is None or scope._cancel_called:
            if scope._deadline == math.inf:
                armed.timer = _NO_TIMER
                return armed  # no limit (yet): reschedule() may set one
            seconds = 0.0
        armed.timer = loop.call_at(
            loop.time() + seconds, _cancel_task, scope, armed, context=Context()
        )
        return armed

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        scope._backend_state.timer.cancel()

    def reschedule(self, scope: TimeoutScope) -> None:
        armed: _ArmedTask | None = scope._backend_state
        if armed is None:
            return  # arm() has not returned yet (see Backend.reschedule)
        loop = armed.task.get_loop()
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            _restart_timer(scope, armed)
        else:
            loop.call_soon_threadsafe(_restart_timer, scope, armed, context=Context())

    def own_cancellation(self, scope: TimeoutScope, exc: BaseException | None) -> bool | None:
        armed: _ArmedTask = scope._backend_state
        if not armed.cancel_sent or not (exc is None or isinstance(exc, asyncio.CancelledError)):
            return None
        task = armed.task
        # Python 3.11+: take our cancellation back; another one still counted is theirs.
        return not (hasattr(task, "uncancel") and task.uncancel() > armed.cancelling)


class _NoTimer:
    """The timer of a scope without a limit: nothing to cancel."""

    @staticmethod
    def cancel() -> None:
        return None


_NO_TIMER = _NoTimer()


class _ArmedTask:
    """What the backend armed for one scope: the task it cancels at the deadline, that
    task's count of cancellations then, the loop's timer, and whether it cancelled.
    Built field by field in `arm`, with no `__init__` (see `WatchedScope`)."""

    __slots__ = ("cancel_sent", "cancelling", "task", "timer")

    task: asyncio.Task[object]
    cancelling: int
    timer: asyncio.TimerHandle | _NoTimer
    cancel_sent: bool


@protected
def _restart_timer(scope: TimeoutScope, armed: _ArmedTask) -> None:
    """In the loop's thread: the scope's timer, for its new deadline."""
    if scope._state is not ScopeState.ACTIVE or scope._delivery is DeliveryState.FIRED:
        return  # left, or fired, meanwhile
    armed.timer.cancel()
    deadline = scope._deadline
    if deadline == math.inf:
        armed.timer = _NO_TIMER
        return
    loop = armed.task.get_loop()
    delay = max(deadline - time.monotonic(), 0.0)
    armed.timer = loop.call_at(
        loop.time() + delay, _cancel_task, scope, armed, context=Context()
    )


def _cancel_task(scope: TimeoutScope, armed: _ArmedTask) -> None:
    if scope._deadline > time.monotonic():  # moved later, not replaced yet: wait the rest
        _restart_timer(scope, armed)
        return
    if scope._deadline_calls:
        run_deadline_callbacks(scope)
        if scope._deadline > time.monotonic():
            return  # a callback moved the deadline later: reschedule() restarts the timer
    if scope._delivery is not DeliveryState.FIRED:
        scope._mark_fired()
        armed.cancel_sent = True
        armed.task.cancel()
