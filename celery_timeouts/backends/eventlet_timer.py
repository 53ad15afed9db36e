"""eventlet: a hub timer throws the timeout into the current green thread.

Lands only where the green thread yields to the hub, so never inside the library's own
enter/exit code. A green thread that never yields starves the hub: for those, the green
guard (`green_guard`) interrupts the main thread while that green thread holds it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._context import eventlet_context
from .._current import ScopeState
from .._on_timeout import run_deadline_callbacks
from .._unwind import protected
from .base import Backend
from .green_guard import GuardedHub

if TYPE_CHECKING:
    from .._scope import TimeoutScope


class EventletBackend(GuardedHub, Backend):
    name = "eventlet"

    def __init__(self) -> None:
        import eventlet
        from eventlet.hubs import get_hub
        from greenlet import getcurrent

        self._get_hub = get_hub
        self._getcurrent = getcurrent
        # The hub of the calling OS thread, without creating one in a thread that has
        # none (get_hub would); eventlet keeps it in an OS-thread local.
        local = getattr(eventlet.hubs, "_threadlocal", None)
        self._hub_here: Callable[[], object] = (
            get_hub if local is None else (lambda: getattr(local, "hub", None))
        )
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
        hub = self._get_hub()
        seconds = scope.seconds
        if seconds is None or scope._cancel_called:
            seconds = 0.0 if scope._deadline != math.inf else None
        timer = scope._handle = _ThrowTimer(scope, self._getcurrent(), hub, seconds)
        try:
            if seconds is not None:  # a scope without a limit: reschedule() adds it
                hub.add_timer(timer)
            guard = self._guard if hub is self._guarded_hub else self._adopt_hub(hub)
            if guard is not None:
                guard.add(scope)
                if not guard.ticking:
                    guard.start()
        except BaseException:  # entry failed: leave no timer and no guard behind
            self.disarm(scope)
            raise

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        scope._handle.cancel()
        self._unguard(scope)
        if scope._fire_attempts:  # the guard asked for a delivery at an instruction (3.13)
            self._withdraw(scope)

    def reschedule_refusal(self, scope: TimeoutScope) -> str | None:
        if self._hub_here() is scope._handle._hub:
            return None
        # eventlet has no thread-safe way into another thread's hub.
        return (
            f"an eventlet scope can be cancelled or rescheduled only from its own hub's "
            f"OS thread (any green thread there), not from {threading.current_thread()!r}; "
            f"hand the call to that hub, e.g. through a queue a green thread there reads"
        )

    @protected
    def reschedule(self, scope: TimeoutScope) -> None:
        old = scope._handle
        hub = old._hub
        if scope._state is not ScopeState.ACTIVE or scope._fired:
            return
        old.cancel()
        deadline = scope._deadline
        if deadline == math.inf:
            scope._handle = _ThrowTimer(scope, old._greenlet, hub, None)
            return
        timer = scope._handle = _ThrowTimer(
            scope, old._greenlet, hub, max(deadline - time.monotonic(), 0.0)
        )
        hub.add_timer(timer)

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)


class _ThrowTimer:
    """A hub timer that throws the scope's timeout into its green thread.

    Speaks the hub's timer protocol (`seconds`, `called`, call, order) without
    eventlet's general-purpose `Timer`, whose args tuple, kwargs dict and hub lookup on
    cancel cost more than the rest of a scope's entry and exit together.
    """

    __slots__ = ("_greenlet", "_hub", "_scope", "called", "seconds")

    def __init__(
        self, scope: TimeoutScope, greenlet: Any, hub: Any, seconds: float | None
    ) -> None:
        self.seconds = seconds
        self.called = seconds is None  # no limit: never added to the hub, nothing to cancel
        self._scope: TimeoutScope | None = scope
        self._greenlet = greenlet
        self._hub = hub

    def __call__(self) -> None:
        """Runs in the hub when the deadline passes."""
        if not self.called:
            self.called = True
            scope = self._scope
            self._scope = None
            if scope is not None and scope._deadline_calls:
                run_deadline_callbacks(scope)
            if scope is not None and not scope._fired:
                scope._fired = True
                self._greenlet.throw(scope._unwinding())

    def cancel(self) -> None:
        if not self.called:
            self.called = True
            self._hub.timer_canceled(self)
            # The hub keeps cancelled timers until its next turn; don't let them keep
            # the scope (and the scope -> timer cycle) alive for the garbage collector.
            self._scope = None

    def __lt__(self, other: object) -> bool:
        # Only consulted for two timers due at the same instant; any stable order works.
        return id(self) < id(other)
