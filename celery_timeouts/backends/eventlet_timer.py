"""eventlet: a hub timer throws the timeout into the current green thread.

Lands only where the green thread yields to the hub, so never inside the library's own
enter/exit code. A green thread that never yields starves the hub: for those, the green
guard (`green_guard`) interrupts the main thread while that green thread holds it.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._context import eventlet_context, os_lock
from .._current import DeliveryState, ScopeState
from .._unwind import protected
from ._green import ArmedGreenlet, GreenTimerBackend, at_deadline

if TYPE_CHECKING:
    from .._scope import TimeoutScope


class EventletBackend(GreenTimerBackend):
    name = "eventlet"

    _context = staticmethod(eventlet_context)
    _not_here = (
        "the current code is not running in an eventlet green thread (or this is the "
        "hub itself); use backend='auto'"
    )

    def __init__(self) -> None:
        import eventlet
        from eventlet.hubs import get_hub

        super().__init__(get_hub, eventlet.sleep)
        self._waking: object = None
        # The hub of the calling OS thread, without creating one in a thread that has
        # none (get_hub would); eventlet keeps it in an OS-thread local.
        local = getattr(eventlet.hubs, "_threadlocal", None)
        self._hub_here: Callable[[], object] = (
            get_hub if local is None else (lambda: getattr(local, "hub", None))
        )


    def _start_timer(
        self, scope: TimeoutScope, armed: ArmedGreenlet, hub: Any, seconds: float | None
    ) -> Any:
        timer = _throw_timer(scope, armed.greenlet, hub, seconds)
        if hub is not self._waking:
            _set_up_waker(hub)
            self._waking = hub  # the hub of the last arm: set up (cheap to check)
        if seconds is not None:  # a scope without a limit: reschedule() adds it
            hub.add_timer(timer)
        return timer

    def reschedule_refusal(self, scope: TimeoutScope) -> str | None:
        armed: ArmedGreenlet | None = scope._backend_state
        if armed is None:
            return None  # arm() has not returned: the scope reschedules from its thread
        hub = armed.timer._hub
        if self._hub_here() is hub or _waker_of(hub) is not None:
            return None
        return (
            f"this eventlet hub cannot be woken from another OS thread (its wake-up pipe "
            f"could not be set up), so its scopes can be cancelled or rescheduled only from "
            f"its own thread, not from {threading.current_thread()!r}"
        )

    @protected
    def reschedule(self, scope: TimeoutScope) -> None:
        armed: ArmedGreenlet | None = scope._backend_state
        if armed is None:
            return  # arm() has not returned yet (see Backend.reschedule)
        hub = armed.timer._hub
        if self._hub_here() is hub:
            _restart_timer(scope, armed)
            return
        # eventlet's hub is not thread-safe: wake it through its pipe, and the timer is
        # replaced there. A green thread that never yields meanwhile is stopped by the
        # guard, which reads the new deadline itself.
        waker = _waker_of(hub)
        if waker is not None:
            waker.restart(scope, armed)


class _HubWaker:
    """A pipe the hub listens to, so another OS thread can have a scope's timer replaced
    in the hub's own thread. Set up at the first scope of each hub."""

    def __init__(self, hub: Any) -> None:
        from eventlet import patcher

        # The OS's own read and write: eventlet's green ones would wait in the hub.
        self._os: Any = patcher.original("os")
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._moved: list[tuple[TimeoutScope, ArmedGreenlet]] = []
        self._lock = os_lock()  # taken by other OS threads: never eventlet's green lock
        hub.add(hub.READ, self._read, self._woken, _ignore, _ignore)

    def restart(self, scope: TimeoutScope, armed: ArmedGreenlet) -> None:
        """From any thread: replace `scope`'s timer in the hub's thread, soon."""
        with self._lock:
            self._moved.append((scope, armed))
        # A full pipe holds wake-ups already: the hub will read them.
        with contextlib.suppress(BlockingIOError):
            self._os.write(self._write, b"!")

    def _woken(self, fileno: int) -> None:
        """In the hub: drain the pipe and replace the timers of the moved scopes."""
        try:
            while self._os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            moved, self._moved = self._moved, []
        for scope, armed in moved:
            _restart_timer(scope, armed)


def _ignore(*args: object) -> None:
    return None


_WAKERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_NO_WAKER: Any = object()


def _waker_of(hub: Any) -> _HubWaker | None:
    waker = _WAKERS.get(hub)
    return waker if isinstance(waker, _HubWaker) else None


def _set_up_waker(hub: Any) -> None:
    """At a hub's first scope, in its thread: the pipe other threads wake it with."""
    if hub in _WAKERS:
        return
    try:
        _WAKERS[hub] = _HubWaker(hub)
    except Exception:  # no pipe, or a hub without listeners: same-thread moves only
        _WAKERS[hub] = _NO_WAKER


@protected
def _restart_timer(scope: TimeoutScope, armed: ArmedGreenlet) -> None:
    """In the hub's thread: the scope's timer, for its new deadline."""
    if scope._state is not ScopeState.ACTIVE or scope._delivery is DeliveryState.FIRED:
        return
    old = armed.timer
    hub = old._hub
    old.cancel()
    deadline = scope._deadline
    if deadline == math.inf:
        armed.timer = _throw_timer(scope, armed.greenlet, hub, None)
        return
    timer = armed.timer = _throw_timer(
        scope, armed.greenlet, hub, max(deadline - time.monotonic(), 0.0)
    )
    hub.add_timer(timer)


def _throw_timer(
    scope: TimeoutScope, greenlet: Any, hub: Any, seconds: float | None
) -> _ThrowTimer:
    """A timer of `hub` for `scope`, due in `seconds` once added (None: never added)."""
    timer = _ThrowTimer()
    timer.seconds = seconds
    timer.called = seconds is None  # no limit: never added to the hub, nothing to cancel
    timer._scope = scope
    timer._greenlet = greenlet
    timer._hub = hub
    return timer


class _ThrowTimer:
    """A hub timer that throws the scope's timeout into its green thread.

    Speaks the hub's timer protocol (`seconds`, `called`, call, order) without
    eventlet's general-purpose `Timer`, whose args tuple, kwargs dict and hub lookup on
    cancel cost more than the rest of a scope's entry and exit together. Made by
    `_throw_timer`, with no `__init__` (see `_watched.WatchedScope`).
    """

    __slots__ = ("_greenlet", "_hub", "_scope", "called", "seconds")

    seconds: float | None
    called: bool
    _scope: TimeoutScope | None
    _greenlet: Any
    _hub: Any

    def __call__(self) -> None:
        """Runs in the hub when the deadline passes."""
        scope = self._scope
        if self.called or scope is None:
            return
        self.called = True
        self._scope = None
        wait = at_deadline(scope, self._greenlet)
        if wait is not None:  # ring again later: moved later, or a suspended generator's
            self.called = False
            self._scope = scope
            self.seconds = wait
            self._hub.add_timer(self)

    def cancel(self) -> None:
        if not self.called:
            self.called = True
            self._hub.timer_canceled(self)
            # The hub keeps cancelled timers until its next turn; don't let them keep
            # the scope (and the scope -> timer cycle) alive for the garbage collector.
            self._scope = None

    close = cancel  # what GreenTimerBackend.disarm calls

    def __lt__(self, other: object) -> bool:
        # Only consulted for two timers due at the same instant; any stable order works.
        return id(self) < id(other)
