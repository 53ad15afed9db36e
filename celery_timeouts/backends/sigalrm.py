"""SIGALRM + `setitimer(ITIMER_REAL)`: the precise backend for the main thread.

One itimer serves every nested scope: it is armed for the earliest deadline. The
handler is installed once; when it displaced the default disposition it stays between
scopes and behaves exactly like the default for any SIGALRM that is not ours. A handler
or a pending alarm/itimer that the user had before the outermost scope is put back as
it was when that scope exits.
"""

from __future__ import annotations

# The C functions: compat.patch() does not reach them, and getsignal skips ~2 us of
# enum conversion.
import _signal  # type: ignore[import-not-found]
import math
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from .._context import is_main_thread, os_lock, signal_unavailable_reason
from .._current import RESUME_POLL, DeliveryState, being_closed, suspended
from .._on_timeout import run_deadline_callbacks
from .._unwind import (
    at_handler_hole,
    in_interruptible_wait,
    in_protected_code,
    in_stdlib_locking,
    protected,
)
from .base import Backend

if TYPE_CHECKING:
    from .._scope import TimeoutScope

_NOTHING: Any = object()
_IDLE = math.inf  # _armed_for when the itimer is not ours (never compared as "earlier")
_monotonic = time.monotonic
_PENDING, _FIRED = DeliveryState.PENDING, DeliveryState.FIRED
_ITIMER_REAL = getattr(signal, "ITIMER_REAL", 0)  # (a platform without it never arms)
_MIN_DELAY = 1e-6  # setitimer(…, 0) would disarm instead of firing at once
_RETRY_DELAY = 0.0005  # when the signal lands in library code, try again shortly
# How far an itimer read back may be from what we set and still be ours.
_TIMER_TOLERANCE = 0.002
_REMEMBERED = 8  # how many of the deadlines we set are remembered


class SignalBackend(Backend):
    name = "signal"

    def __init__(self) -> None:
        self._active: list[TimeoutScope] = []
        self._armed_for = _IDLE  # absolute deadline our itimer is set for; _IDLE when not ours
        self._handler = self._on_sigalrm  # one bound method, so identity checks work
        self._restore_handler: Any = _NOTHING  # user's handler, put back at the outermost exit
        self._user_timer: tuple[float, float] | None = None  # (deadline, interval)
        self._leave_pending = False  # the outermost scope was left in another thread
        self._handled_at = -math.inf  # when our handler last ran (time.monotonic), for tests
        # When the kernel rings the itimers we set lately: [earliest, latest] (_is_ours)
        self._recent: list[list[float]] = []
        # Another thread moved a deadline (reschedule, cancel) and signalled the main
        # thread to look: how many such signals are on their way, and the lock that
        # keeps one from reaching a handler the outermost exit puts back.
        self._pokes = 0
        self._poke_lock = os_lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    def unavailable_reason(self) -> str | None:
        return signal_unavailable_reason()

    @protected
    def arm(self, scope: TimeoutScope) -> None:
        active = self._active
        active.append(scope)
        try:
            if len(active) == 1:
                self._enter_outermost(scope)
            elif scope._deadline < self._armed_for:
                self._set_timer(scope._deadline)
        except BaseException:
            # Entry failed: leave no trace (each step above changes nothing if it fails).
            active.remove(scope)
            raise

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        if (
            scope._deadline <= _monotonic() and scope._delivery is _PENDING
            and self._signal_went_elsewhere(scope)
        ):
            scope._mark_overdue()  # the deadline holds: raised as the scope exits
        active = self._active
        if active and active[-1] is scope:
            active.pop()
        else:  # scopes left out of order (generators, threads of control switching)
            for index, candidate in enumerate(active):
                if candidate is scope:
                    del active[index]
                    break
        if not active:
            self._leave_outermost()
        elif scope._deadline <= self._armed_for:
            self._rearm()

    @protected
    def _signal_went_elsewhere(self, scope: TimeoutScope) -> bool:
        """The deadline passed and our timer is no longer armed for it, yet it did not
        fire: its signal went to a handler the body installed (or was ignored), or the body
        set the timer itself (then its own alarm is pending)."""
        _checkpoint()  # our SIGALRM, if it is pending, is handled here (maybe a retry)
        if _signal.getsignal(signal.SIGALRM) is not self._handler:
            return True
        now = time.monotonic()
        timer = _signal.getitimer(signal.ITIMER_REAL)
        # Still armed by us: not rung yet (the kernel's clock is a hair behind), or rung in
        # library code and retried (the exit won that race, as with any backend)?
        return not (timer[0] > 0 and self._is_ours(timer, now, time.monotonic()))

    @protected
    def _enter_outermost(self, scope: TimeoutScope) -> None:
        if self._leave_pending:  # the last outermost scope was left in another thread
            self._finish_leaving()
        current = _signal.getsignal(signal.SIGALRM)
        if current is not self._handler:
            _signal.signal(signal.SIGALRM, self._handler)
            # With the default disposition (an int here, not the enum) there is nothing
            # to restore: our handler stays and acts as the default outside scopes.
            if current != _signal.SIG_DFL and current is not None:
                self._restore_handler = current
        if scope._deadline == math.inf:  # no limit (yet): no timer of ours
            self._recent = []
            self._set_timer(math.inf)  # a timer the user had pending is adopted
            return
        # As _setitimer, inlined: this is every outermost scope's entry.
        before = _monotonic()
        delay = max(scope._deadline - before, _MIN_DELAY)
        noted = [before + delay, math.inf]
        self._recent = [noted]
        try:
            old_delay, old_interval = _signal.setitimer(_ITIMER_REAL, delay)
        except BaseException:
            if self._restore_handler is not _NOTHING:
                _signal.signal(signal.SIGALRM, self._restore_handler)
                self._restore_handler = _NOTHING
            raise
        noted[1] = _monotonic() + delay
        self._armed_for = scope._deadline
        if old_delay > 0:
            user_deadline = time.monotonic() + old_delay
            self._user_timer = (user_deadline, old_interval)
            if user_deadline < scope._deadline:
                self._set_timer(user_deadline)

    @protected
    def _leave_outermost(self) -> None:
        now = _monotonic()
        old = _signal.setitimer(_ITIMER_REAL, 0)
        if old[0] and not self._is_ours(old, now, _monotonic()):
            self._adopt(old, now)  # the body's own alarm: pending after the scope too
        _checkpoint()  # a SIGALRM from our timer that is still pending is handled here
        if self._restore_handler is not _NOTHING and not is_main_thread():
            # Left in another thread (a misuse the scope reports): only the main thread
            # may put a handler back, so ring it there at once and finish leaving then.
            self._leave_pending = True
            self._set_timer(time.monotonic())
            return
        self._finish_leaving()

    @protected
    def _finish_leaving(self) -> None:
        """Put back the user's handler and pending timer (in the main thread)."""
        self._leave_pending = False
        self._armed_for = _IDLE  # from now on, a SIGALRM is not ours
        if self._restore_handler is not _NOTHING:
            with self._poke_lock:  # no poke is sent meanwhile (see reschedule)
                if _signal.getsignal(signal.SIGALRM) is self._handler:
                    _signal.signal(signal.SIGALRM, self._restore_handler)
                self._restore_handler = _NOTHING
        user = self._user_timer
        if user is not None:
            self._user_timer = None
            remaining = user[0] - time.monotonic()
            _signal.setitimer(signal.ITIMER_REAL, max(remaining, _MIN_DELAY), user[1])

    @protected
    def _set_timer(self, deadline: float) -> None:
        now = time.monotonic()
        old = self._setitimer(deadline)
        if not self._is_ours(old, now, time.monotonic()):
            # The body set the timer itself (alarm() in a scope): it is the user's now,
            # as it would have replaced the user's without us; it stays pending.
            self._adopt(old, now)
            user = self._user_timer
            if user is not None and user[0] < deadline:
                self._setitimer(user[0])
                deadline = user[0]
        self._armed_for = deadline

    def _setitimer(self, deadline: float | None) -> tuple[float, float]:
        """Set the itimer for `deadline` (None or math.inf: disarm it), noting when the
        kernel will ring it: between the delay added to the time before the call and
        after it."""
        recent = self._recent
        if len(recent) >= _REMEMBERED:
            del recent[0]
        if deadline is None or deadline == math.inf:
            recent.append([-math.inf, -math.inf])
            return _signal.setitimer(signal.ITIMER_REAL, 0)  # type: ignore[no-any-return]
        before = time.monotonic()
        delay = max(deadline - before, _MIN_DELAY)
        # Noted before the call: a handler may run and look between the call and the note.
        entry = [before + delay, math.inf]
        recent.append(entry)
        old: tuple[float, float] = _signal.setitimer(signal.ITIMER_REAL, delay)
        entry[1] = time.monotonic() + delay
        return old

    def _is_ours(self, timer: tuple[float, float], before: float, after: float) -> bool:
        """Could this itimer value, read between `before` and `after`, come from one we
        set since the outermost scope began?

        Any of them, not just the last: a handler run between our setting the timer and
        noting it may have set another (its retry)."""
        delay, interval = timer
        if interval:
            return False  # we never set a repeating timer
        high = after + _TIMER_TOLERANCE
        if not delay:  # rung or disarmed
            return any(earliest <= high for earliest, _ in self._recent)
        low, high = before - _TIMER_TOLERANCE + delay, high + delay  # when it will ring
        for earliest, latest in self._recent:  # noqa: SIM110 (a loop: no generator per exit)
            if earliest <= high and low <= latest:
                return True
        return False

    def _adopt(self, timer: tuple[float, float], now: float, *, rang: bool = False) -> None:
        """Take a timer the body set inside a scope as the user's (None if it cancelled
        ours); `rang`: its signal is the one being handled."""
        delay, interval = timer
        if rang and (interval or not delay):
            self._user_timer = (now, interval)  # a one-shot that fired, or a repeat's tick
        elif delay:
            self._user_timer = (now + delay, interval)
        else:
            self._user_timer = None  # the body cancelled the timer (alarm(0))

    @protected
    def reschedule(self, scope: TimeoutScope) -> None:
        if is_main_thread():
            if scope._delivery is not _FIRED and any(active is scope for active in self._active):
                self._rearm()  # a SIGALRM meanwhile retries: this is library code
            return
        # Only the main thread may touch the itimer and the handler's bookkeeping: ask
        # it to look again, with a signal its handler takes as "ours" (see _pokes).
        # The lock is held until the handler has taken the poke (bounded): the
        # outermost exit, which takes it too, never puts the user's handler back while
        # the poke is on its way (the main thread's wait for a lock runs handlers).
        with self._poke_lock:
            if scope._delivery is _FIRED or not any(active is scope for active in self._active):
                return
            self._pokes += 1
            signal.pthread_kill(_main_thread_id, signal.SIGALRM)
            give_up = time.monotonic() + _POKE_PATIENCE
            while self._pokes and time.monotonic() < give_up:
                _sleep(_POKE_POLL)

    @protected
    def _rearm(self, not_before: float = -math.inf) -> None:
        """Arm the itimer for the earliest pending deadline (ours or the user's), our
        deadlines no sooner than `not_before`."""
        pending = [max(s._deadline, not_before) for s in self._active if s._delivery is not _FIRED]
        if self._user_timer is not None:
            pending.append(self._user_timer[0])
        if pending:
            self._set_timer(min(pending))
        else:
            now = time.monotonic()
            old = self._setitimer(None)
            self._armed_for = _IDLE
            if old[0] and not self._is_ours(old, now, time.monotonic()):
                self._adopt(old, now)
                self._set_timer(self._user_timer[0])  # type: ignore[index]

    @protected
    def _on_sigalrm(self, signum: int, frame: FrameType | None) -> None:
        now = self._handled_at = time.monotonic()
        poked = self._pokes
        if poked:
            self._pokes = 0  # another thread moved a deadline: look again
        if not self._active:
            if self._leave_pending:  # rung by a scope left in another thread
                self._finish_leaving()
            elif poked:
                pass  # the scope it was for has been left meanwhile
            # Our timer's signal can arrive once the last scope is gone from the list,
            # while its exit is still disarming: then it is ours, and late; ignore it.
            elif self._armed_for is _IDLE:
                self._act_as_displaced(signum, frame)
            return
        if frame is None or not in_protected_code(frame):  # no timer of ours half set
            timer = _signal.getitimer(signal.ITIMER_REAL)
            if not self._is_ours(timer, now, time.monotonic()):
                self._adopt(timer, now, rang=True)  # the body's own alarm (or its tick) rang
        user = self._user_timer
        if user is not None and user[0] <= now:
            self._fire_user_timer(signum, frame, user)
        due = [s for s in self._active if s._delivery is not _FIRED and s._deadline <= now]
        if due and frame is not None:
            handled = sys.exc_info()[1]
            waiting = [s for s in due if suspended(s, frame) or being_closed(s, handled)]
            if waiting:  # delivered once their bodies run again, or at their exits
                for scope in waiting:
                    scope._mark_overdue()
                due = [s for s in due if s not in waiting]
                if not due:
                    self._rearm(not_before=now + RESUME_POLL)
                    return
        if not due:
            self._rearm()  # early, or the user's timer: wait for the next deadline
            return
        for scope in due:
            # Only tried: this handler may have interrupted a registration holding the
            # lock, in this very thread.
            if scope._deadline_calls and not run_deadline_callbacks(scope, wait=False):
                self._set_timer(now + _RETRY_DELAY)
                return
        due = [s for s in due if s._deadline <= now]  # a callback may have moved one
        if not due:
            self._rearm()
            return
        if frame is not None and (
            in_protected_code(frame) or at_handler_hole(frame)
            or (in_stdlib_locking(frame) and not in_interruptible_wait(frame))
        ):
            self._set_timer(now + _RETRY_DELAY)  # land it a moment later, in the body
            return
        target = min(due, key=_deadline_of)
        target._mark_fired()
        self._rearm()  # for the outer scopes, before anything here can fail
        raise target._unwinding()

    @protected
    def _fire_user_timer(
        self, signum: int, frame: FrameType | None, user: tuple[float, float]
    ) -> None:
        deadline, interval = user
        self._user_timer = (deadline + interval, interval) if interval > 0 else None
        try:
            handler = self._restore_handler
            if handler is _NOTHING:
                self._act_as_displaced(signum, frame)
            elif callable(handler):
                handler(signum, frame)
        finally:
            self._rearm()

    @protected
    def _act_as_displaced(self, signum: int, frame: FrameType | None) -> None:
        """What SIGALRM would have done had we never installed our handler."""
        # The default disposition terminates the process: do exactly that.
        _signal.signal(signal.SIGALRM, _signal.SIG_DFL)
        signal.raise_signal(signal.SIGALRM)

    def _after_fork_in_child(self) -> None:
        # itimers are not inherited by a forked child; scopes still open in the forking
        # thread must keep their deadlines there.
        self._armed_for = _IDLE
        if self._active or self._user_timer is not None:
            self._rearm()


_main_thread_id = threading.main_thread().ident or 0
_POKE_PATIENCE = 1.0  # how long another thread waits for the main thread to take a poke
_POKE_POLL = 0.0005
_sleep = time.sleep  # the stdlib's (celery_timeouts.blocking may patch it later)


def _deadline_of(scope: TimeoutScope) -> float:
    return scope._deadline


def _checkpoint() -> None:
    """Calling a Python function lets the interpreter run pending signal handlers."""
