"""asyncio: cancel the current task at the deadline, like `asyncio.timeout`.

Cancellation is delivered only at an `await` inside the body. The owning scope turns
its own cancellation into the timeout exception and, on Python 3.11+, uncancels the
task so an outer `asyncio.timeout` or `TaskGroup` keeps counting correctly.
"""

from __future__ import annotations

import asyncio
from contextvars import Context
from typing import TYPE_CHECKING

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
        when = loop.time() + scope.seconds  # type: ignore[operator]  # armed: not None
        scope._handle = loop.call_at(when, _cancel_task, scope, context=Context())

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        scope._handle.cancel()


def _cancel_task(scope: TimeoutScope) -> None:
    if scope._deadline_calls:
        run_deadline_callbacks(scope)
    if not scope._fired:
        scope._fired = True
        scope._cancel_sent = True
        scope._task.cancel()
