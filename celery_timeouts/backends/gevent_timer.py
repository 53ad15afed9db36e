"""gevent: a timer on the hub's loop throws the timeout into the current greenlet.

Lands only where the greenlet yields to the hub, so never inside the library's own
enter/exit code. Like every gevent timeout, it cannot stop a greenlet that never yields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._context import gevent_context
from .._unwind import protected
from .base import Backend

if TYPE_CHECKING:
    from .._scope import TimeoutScope


class GeventBackend(Backend):
    name = "gevent"

    def __init__(self) -> None:
        import gevent
        from gevent import get_hub
        from greenlet import getcurrent

        self._get_hub = get_hub
        self._getcurrent = getcurrent
        self._sleep = gevent.sleep

    def unavailable_reason(self) -> str | None:
        if gevent_context() is None:
            return (
                "the current code is not running in a gevent greenlet (no gevent hub "
                "here, or this is the hub itself); use backend='auto'"
            )
        return None

    @protected
    def arm(self, scope: TimeoutScope) -> None:
        # Just armed: the deadline is `seconds` from now. update=True measures from now,
        # not from the loop's last iteration (stale after a long CPU-bound stretch).
        timer = scope._handle = self._get_hub().loop.timer(scope.seconds)
        timer.start(_throw, scope, self._getcurrent(), update=True)

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        scope._handle.close()

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)


def _throw(scope: TimeoutScope, greenlet: Any) -> None:
    """Runs in the hub when the deadline passes: raise in the scope's greenlet."""
    if not scope._fired:
        scope._fired = True
        greenlet.throw(scope._unwinding())
