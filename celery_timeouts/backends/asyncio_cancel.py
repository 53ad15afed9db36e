"""asyncio: cancel the current task at the deadline, like `asyncio.timeout`.

Cancellation is delivered only at an `await` inside the body. The owning scope turns
its own cancellation into the timeout exception and, on Python 3.11+, uncancels the
task so an outer `asyncio.timeout` or `TaskGroup` keeps counting correctly.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .._unwind import protected
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
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # unavailable_reason() checked it
        scope._task = task
        scope._cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
        when = loop.time() + (scope._deadline - time.monotonic())
        scope._handle = loop.call_at(when, _cancel_task, scope)

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        scope._handle.cancel()


def _cancel_task(scope: TimeoutScope) -> None:
    if not scope._fired:
        scope._fired = True
        scope._cancel_sent = True
        scope._task.cancel()
