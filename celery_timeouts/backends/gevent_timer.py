"""gevent: a timer on the hub's loop throws the timeout into the current greenlet.

Lands only where the greenlet yields to the hub, so never inside the library's own
enter/exit code. A greenlet that never yields starves the hub: for those, the green
guard (`green_guard`) interrupts the main thread while that greenlet holds it.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from .._context import gevent_context
from .._current import DeliveryState, ScopeState
from .._unwind import protected
from ._green import ArmedGreenlet, GreenTimerBackend, at_deadline

if TYPE_CHECKING:
    from .._scope import TimeoutScope


class GeventBackend(GreenTimerBackend):
    name = "gevent"

    _context = staticmethod(gevent_context)
    _not_here = (
        "the current code is not running in a gevent greenlet (no gevent hub here, or "
        "this is the hub itself); use backend='auto'"
    )

    def __init__(self) -> None:
        import gevent

        super().__init__(gevent.get_hub, gevent.sleep)

    def _start_timer(
        self, scope: TimeoutScope, armed: ArmedGreenlet, hub: Any, seconds: float | None
    ) -> Any:
        # update=True measures from now, not from the loop's last iteration (stale after
        # a long CPU-bound stretch). A scope without a limit gets a timer too, left
        # unstarted: reschedule() starts it.
        timer = hub.loop.timer(seconds or 0.0)
        if seconds is not None:
            try:
                timer.start(_throw, scope, armed, update=True)
            except BaseException:
                timer.close()
                raise
        return timer

    @protected
    def reschedule(self, scope: TimeoutScope) -> None:
        # The hub's loop is not thread-safe: the timer is replaced in the hub's thread
        # (at its next turn). A greenlet that never yields meanwhile is stopped by the
        # guard, which reads the new deadline itself.
        armed: ArmedGreenlet | None = scope._backend_state
        if armed is not None:  # else arm() has not returned yet (see Backend.reschedule)
            armed.timer.loop.run_callback_threadsafe(_restart_timer, scope, armed)


@protected
def _restart_timer(scope: TimeoutScope, armed: ArmedGreenlet, not_before: float = 0.0) -> None:
    """In the hub's thread: the scope's timer, for its new deadline (or `not_before`
    seconds from now, if that is later)."""
    if scope._state is not ScopeState.ACTIVE or scope._delivery is DeliveryState.FIRED:
        return  # left, or fired, meanwhile
    old = armed.timer
    old.close()
    deadline = scope._deadline
    timer = armed.timer = old.loop.timer(
        0.0 if deadline == math.inf else max(deadline - time.monotonic(), not_before)
    )
    if deadline != math.inf:
        timer.start(_throw, scope, armed, update=True)


def _throw(scope: TimeoutScope, armed: ArmedGreenlet) -> None:
    """Runs in the hub when the deadline passes: raise in the scope's greenlet."""
    wait = at_deadline(scope, armed.greenlet)
    if wait is not None:
        _restart_timer(scope, armed, wait)
