"""Stops a greenlet that never yields, which the hub's own timers cannot do.

gevent and eventlet deliver a timeout from the hub, and the hub runs only when the
current greenlet yields to it: a CPU-bound greenlet past its deadline starves the hub,
so its timer never fires. While green scopes are armed, the watchdog thread looks every
`TICK` seconds for one that is overdue by more than `GRACE` and has not fired, and then
sends SIGURG to the hub's OS thread (the main thread). The handler runs in whatever
greenlet holds the CPU and raises only if one of *that* greenlet's own scopes is overdue,
so a timeout never lands in the hub or in another greenlet. `compat` alarms set in
greenlets are guarded the same way: the overdue greenlet's SIGALRM handler runs there.

SIGURG because its default disposition is to ignore it (a stray one harms nothing), no
Celery or gevent code uses it, and it is not SIGALRM, which the signal backend owns. If
the process already has a SIGURG handler, the guard stays off and says so.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from .._context import NO_SIGNALS, is_main_thread, native_thread_id, os_lock
from .._current import DeliveryState, current_scope, earliest, on_stack
from .._current import enclosing as enclosing_scopes
from .._interpreter import MECHANISMS
from .._on_timeout import run_deadline_callbacks
from .._unwind import at_handler_hole, must_not_land, protected
from ._landing import _DELIVERED_AT_NEXT_CHECK

if TYPE_CHECKING:
    from .._scope import TimeoutScope
    from .watchdog import WatchdogBackend

# Python 3.13 leaves some loop back-jumps outside their handlers (cpython#130279).
_INSTRUCTION_DELIVERY = MECHANISMS.instruction_delivery  # 3.12, 3.13 (see _interpreter)
# Without signals and without that delivery (3.10, 3.11): an injection lands where the
# thread was paused, so the watchdog can raise it there, in the overdue greenlet's code.
_PENDING, _FIRED = DeliveryState.PENDING, DeliveryState.FIRED
_INJECTION_WHERE_PAUSED = MECHANISMS.injection_refused is None and not _DELIVERED_AT_NEXT_CHECK
TICK = 0.02  # seconds between the watchdog's looks at the armed green scopes
GRACE = 0.01  # how long past its deadline the hub's own timer gets before the guard acts
# None where the process uses no signals (see _context.NO_SIGNALS): the guard stays off.
SIGNAL: int | None = getattr(signal, "SIGURG", None) if NO_SIGNALS is None else None

logger = logging.getLogger(__name__)


class GuardedAlarm(Protocol):
    """A `compat` alarm of a greenlet, as the guard sees it."""

    _fired: bool

    @property
    def _deadline(self) -> float: ...

    def overdue_here(self, now: float) -> bool:
        """True if it is overdue and set by the greenlet running now."""

    def ring(self, frame: FrameType | None) -> None:
        """Run its SIGALRM handler here, in the interrupted greenlet; may raise."""

    def abandoned(self) -> bool:
        """True once the greenlet that set it has ended (read on the watchdog thread)."""


class GreenGuard:
    """The armed green scopes and alarms of the main thread's hub, and the tick that
    watches them.

    `add`/`discard` are the per-call cost (a set insert and removal); everything else
    runs on the watchdog thread every `TICK`, and only while some scope or alarm is armed.
    """

    def __init__(self) -> None:
        self._scopes: set[TimeoutScope] = set()
        self.add = self._scopes.add
        self.discard = self._scopes.discard
        self._alarms: set[GuardedAlarm] = set()
        self.add_alarm = self._alarms.add
        self.discard_alarm = self._alarms.discard
        self.ticking = False
        self._lock = os_lock()
        self._generation = 0  # bumped by a fork: the parent's ticks then end
        self._main_thread_id = 0
        self._watchdog: WatchdogBackend | None = None
        self._handler = self._on_signal  # one bound method, so identity checks work
        self.installed = self._install()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _install(self) -> bool:
        """Install the SIGURG handler; runs once, in the main thread. Without signals
        (see _context.NO_SIGNALS) there is no handler: the guard delivers through the
        watchdog instead (`_deliver_without_signal`)."""
        if not is_main_thread():
            return False  # a hub in another thread: signals can't reach it
        if SIGNAL is None:
            self._main_thread_id = native_thread_id()
            return NO_SIGNALS is not None and (_INSTRUCTION_DELIVERY or _INJECTION_WHERE_PAUSED)
        current = signal.getsignal(SIGNAL)
        if current not in (signal.SIG_DFL, signal.SIG_IGN, None):
            logger.warning(
                "celery-timeouts: SIGURG already has a handler (%r): a greenlet that "
                "never yields will not be stopped at its deadline",
                current,
            )
            return False
        signal.signal(SIGNAL, self._handler)
        # Restart interrupted system calls (SA_RESTART), as an ignored SIGURG would leave
        # them: code blocked in C elsewhere in the process must not see EINTR.
        signal.siginterrupt(SIGNAL, False)
        self._main_thread_id = native_thread_id()
        return True

    def start(self) -> None:
        """Start ticking (called after `add` when `ticking` is False)."""
        with self._lock:
            if self.ticking:
                return
            self.ticking = True
        try:
            self._schedule()
        except BaseException:  # the next scope's entry tries again
            self.ticking = False
            raise

    def _schedule(self) -> None:
        watchdog = self._watchdog
        if watchdog is None:
            from .watchdog import shared_watchdog

            watchdog = self._watchdog = shared_watchdog()
        watchdog.call_at(time.monotonic() + TICK, functools.partial(self._tick, self._generation))

    def _tick(self, generation: int) -> None:
        """On the watchdog thread: signal the hub's thread if a scope is overdue."""
        if generation != self._generation:
            return  # a tick of the parent process, carried over by a fork
        try:
            overdue = time.monotonic() - GRACE
            # tuple() copies the set without running Python code, so the main thread
            # cannot change it halfway (the GIL).
            alarms = tuple(self._alarms)
            for alarm in alarms:
                if alarm.abandoned():
                    self.discard_alarm(alarm)  # its greenlet ended: nobody to ring
            due = any(
                scope._delivery is not _FIRED and scope._deadline <= overdue
                for scope in tuple(self._scopes)
            ) or any(not alarm._fired and alarm._deadline <= overdue for alarm in alarms)
            if not due:
                pass
            elif SIGNAL is None:
                self._deliver_without_signal(overdue)
            # Only while our handler is in place: another one may have replaced it since.
            elif signal.getsignal(SIGNAL) is self._handler:
                signal.pthread_kill(self._main_thread_id, SIGNAL)
        finally:  # whatever happened, the next tick comes (or `ticking` is cleared)
            if self._keep_ticking():
                self._schedule()

    def _deliver_without_signal(self, overdue: float) -> None:
        """No SIGURG (see `_install`): an overdue scope whose greenlet holds the hub's
        thread right now (its `with` is on that thread's stack) gets its timeout at that
        greenlet's next safe instruction, through sys.monitoring (3.12+; the callback
        raises only in that greenlet), or injected right where that greenlet is paused
        (3.10, 3.11). Scopes of greenlets that are not running get it from the hub's
        timer when they yield. Compat alarms are not rung this way."""
        watchdog = self._watchdog
        frame = sys._current_frames().get(self._main_thread_id)
        if watchdog is None or frame is None:
            return
        for scope in tuple(self._scopes):
            if scope._delivery is not _PENDING or scope._deadline > overdue:
                continue
            if not on_stack(scope._entry_frame, frame):
                continue
            if not _INSTRUCTION_DELIVERY:
                # The watchdog looks again under its lock: the greenlet may have moved.
                if watchdog.inject_where_it_runs(self._main_thread_id, scope):
                    scope._mark_overdue()  # its disarm withdraws it, if not landed
            elif watchdog.watch_next_instruction(
                self._main_thread_id, scope, frame,
                functools.partial(_fire, scope), functools.partial(_runs_here, scope),
                until=scope._entry_frame,
            ):
                scope._mark_overdue()  # its disarm withdraws the delivery
            return

    def _keep_ticking(self) -> bool:
        # add() puts the scope in the set before it reads `ticking`: so after clearing
        # `ticking`, a second look at the set catches an add that saw it still True.
        with self._lock:
            if self._scopes or self._alarms:
                return True
            self.ticking = False
            if self._scopes or self._alarms:
                self.ticking = True
                return True
            return False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Runs in the greenlet that holds the CPU: ring its overdue alarm, then raise
        its own overdue timeout, if any.

        Not library code itself: an alarm's handler runs from here, and a timeout of a
        scope that handler opens must be able to land in it.
        """
        if self._alarms:
            alarm = self._alarm_to_ring(frame)
            if alarm is not None:
                alarm.ring(frame)  # what its handler raises is raised here, as with SIGALRM
        self._raise_overdue_scope(frame)

    @protected
    def _overdue_scope_here(self, now: float) -> TimeoutScope | None:
        """The earliest overdue armed green scope of the greenlet running now, if any."""
        scopes = self._scopes  # armed green scopes
        return earliest(
            current_scope(),
            lambda scope: (
                scope in scopes and scope._delivery is not _FIRED and scope._deadline <= now
            ),
        )

    @protected
    def _alarm_to_ring(self, frame: FrameType | None) -> GuardedAlarm | None:
        """The overdue alarm of the greenlet running now, if it can ring here and no
        overdue scope of that greenlet was due before it."""
        now = time.monotonic()
        alarm = self._overdue_alarm_here(now)
        if alarm is None:
            return None
        if frame is not None and (must_not_land(frame) or at_handler_hole(frame)):
            # The next tick tries again. At a 3.13 loop back-jump the handler's exception
            # would skip the loop's handlers: such an alarm waits for a safe place, which
            # a loop with no call in it never reaches (an overdue scope still fires).
            return None
        target = self._overdue_scope_here(now)
        if target is not None and target._deadline <= alarm._deadline:
            return None  # the scope's timeout goes first
        return alarm

    @protected
    def _raise_overdue_scope(self, frame: FrameType | None) -> None:
        target = self._overdue_scope_here(time.monotonic())
        if target is None:
            return  # another greenlet's scope is overdue (the hub will deliver it), or none
        if target._deadline_calls:
            if not run_deadline_callbacks(target, wait=False):
                return  # this signal interrupted a registration: the next tick tries again
            if target._deadline > time.monotonic():
                return  # a callback moved the deadline later
        if frame is not None and must_not_land(frame):
            return  # library enter/exit code, or a lock being taken: the next tick retries
        if frame is not None and at_handler_hole(frame):
            # A loop back-jump that the try around it does not cover (3.13): raising here
            # would skip its handlers. A loop without calls is only ever interrupted
            # here, so on 3.13 have it raised at the next instruction instead.
            if _INSTRUCTION_DELIVERY:
                self._deliver_next_instruction(target, frame)
            return
        raise target._fire()

    def _overdue_alarm_here(self, now: float) -> GuardedAlarm | None:
        """The earliest overdue alarm of the greenlet running now, if any."""
        found: GuardedAlarm | None = None
        for alarm in tuple(self._alarms):
            if alarm.overdue_here(now) and (found is None or alarm._deadline < found._deadline):
                found = alarm
        return found

    def _deliver_next_instruction(self, target: TimeoutScope, frame: FrameType) -> None:
        watchdog = self._watchdog
        if watchdog is None:
            return
        # Its disarm withdraws the delivery (`withdraw`). Not waiting for the watchdog's
        # lock: this runs in a signal handler; when busy, the next tick tries again.
        if watchdog.watch_next_instruction(
            native_thread_id(), target, frame,
            functools.partial(_fire, target), functools.partial(_runs_here, target),
        ):
            target._mark_overdue()

    @protected
    def withdraw(self, scope: TimeoutScope) -> None:
        """Called on disarm for a scope given to `_deliver_next_instruction`."""
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.withdraw_next_instruction(self._main_thread_id, scope)

    def _after_fork_in_child(self) -> None:
        # Nothing that takes the watchdog's lock here: this may run before the watchdog
        # has replaced the lock its (parent's) thread held at fork time. The next green
        # scope starts ticking again; ticks left from the parent see a new generation.
        self._generation += 1
        self.ticking = False
        self._lock = os_lock()
        self._main_thread_id = native_thread_id()  # the forking thread: main in the child


def _fire(scope: TimeoutScope) -> BaseException:
    return scope._fire()


def _runs_here(scope: TimeoutScope) -> bool:
    """True in the greenlet that entered `scope` (it is on this context's scope chain)."""
    return any(enclosing is scope for enclosing in enclosing_scopes(current_scope()))


_guard: GreenGuard | None = None
_creating = threading.Lock()  # taken in the main thread only


def main_thread_guard() -> GreenGuard | None:
    """The process's guard, for scopes of the main thread's hub; call it from the main
    thread. None where it cannot run (no SIGURG, or SIGURG has another handler)."""
    global _guard
    with _creating:
        if _guard is None:
            _guard = GreenGuard()
    return _guard if _guard.installed else None


__all__ = [
    "GRACE", "SIGNAL", "TICK", "GreenGuard", "GuardedAlarm", "main_thread_guard",
]
