"""eventlet: a hub timer throws the timeout into the current green thread.

Lands only where the green thread yields to the hub, so never inside the library's own
enter/exit code. It cannot stop a green thread that never yields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._context import eventlet_context
from .._unwind import ScopeTimeout, protected
from .base import Backend

if TYPE_CHECKING:
    from .._scope import TimeoutScope


class EventletBackend(Backend):
    name = "eventlet"

    def __init__(self) -> None:
        import eventlet
        from eventlet.hubs import get_hub
        from greenlet import getcurrent

        self._get_hub = get_hub
        self._getcurrent = getcurrent
        self._sleep = eventlet.sleep

    def unavailable_reason(self) -> str | None:
        if eventlet_context() is None:
            return (
                "the current code is not running in an eventlet green thread (or this "
                "is the hub itself); use backend='auto'"
            )
        return None

    @protected
    def arm(self, scope: TimeoutScope) -> None:
        # Just armed: the deadline is `seconds` from now.
        scope._handle = self._get_hub().schedule_call_global(
            scope.seconds, _throw, scope, self._getcurrent()
        )

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        scope._handle.cancel()

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)


def _throw(scope: TimeoutScope, greenlet: Any) -> None:
    """Runs in the hub when the deadline passes: raise in the scope's green thread."""
    if not scope._fired:
        scope._fired = True
        greenlet.throw(ScopeTimeout(scope))
