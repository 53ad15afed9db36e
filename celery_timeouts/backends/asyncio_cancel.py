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

from .._current import ScopeState
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
    def arm(self, scope: TimeoutScope) -> None:
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
        scope._task = task
        scope._cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
        # Just armed: the deadline is `seconds` from now. A fresh, empty context for the
        # callback: a copy of the current one would keep the scope alive (and the garbage
        # collector busy) for as long as the cancelled handle sits in the loop's heap.
        seconds = scope.seconds
        if seconds is None or scope._cancel_called:
            if scope._deadline == math.inf:
                scope._handle = _NO_TIMER  # no limit (yet): reschedule() may set one
                return
            seconds = 0.0
        scope._handle = loop.call_at(loop.time() + seconds, _cancel_task, scope, context=Context())

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        scope._handle.cancel()

    def reschedule(self, scope: TimeoutScope) -> None:
        loop = scope._task.get_loop()
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            _restart_timer(scope)
        else:
            loop.call_soon_threadsafe(_restart_timer, scope, context=Context())


class _NoTimer:
    """The timer of a scope without a limit: nothing to cancel."""

    @staticmethod
    def cancel() -> None:
        return None


_NO_TIMER = _NoTimer()


@protected
def _restart_timer(scope: TimeoutScope) -> None:
    """In the loop's thread: the scope's timer, for its new deadline."""
    if scope._state is not ScopeState.ACTIVE or scope._fired:
        return  # left, or fired, meanwhile
    scope._handle.cancel()
    deadline = scope._deadline
    if deadline == math.inf:
        scope._handle = _NO_TIMER
        return
    loop = scope._task.get_loop()
    delay = max(deadline - time.monotonic(), 0.0)
    scope._handle = loop.call_at(loop.time() + delay, _cancel_task, scope, context=Context())


def _cancel_task(scope: TimeoutScope) -> None:
    if scope._deadline > time.monotonic():  # moved later, not replaced yet: wait the rest
        _restart_timer(scope)
        return
    if scope._deadline_calls:
        run_deadline_callbacks(scope)
        if scope._deadline > time.monotonic():
            return  # a callback moved the deadline later: reschedule() restarts the timer
    if not scope._fired:
        scope._fired = True
        scope._cancel_sent = True
        scope._task.cancel()
