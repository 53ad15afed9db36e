"""Where a patched blocking call must stop waiting, and what it raises there.

Only scopes enforced by the watchdog thread count (the thread backend): the main thread
has SIGALRM and greenlets have their hub, so there every call stays stock. A call waits
at most until the earliest deadline among the thread's unfired thread-backend scopes;
there it takes the timeout from the watchdog (`WatchdogBackend.take`: delivered once,
by whoever gets there first) and raises it as the watchdog would have injected it.

The functions that wait are `@protected`: while a thread sits in one, the watchdog does
not inject (it retries), so the timeout cannot land twice or inside our own cleanup.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from .._context import NO_SIGNALS, is_green_patched, is_main_thread
from .._current import DeliveryState, ScopeState, suspended
from .._current import innermost as _innermost
from .._unwind import protected
from ..backends.watchdog import shared_watchdog

if TYPE_CHECKING:
    from .._scope import TimeoutScope

_T = TypeVar("_T")
_ACTIVE = ScopeState.ACTIVE

# The longest a patched call waits without looking at its scope's deadline again: how
# soon a cancel() or an earlier reschedule() from another thread reaches it.
RECHECK = 0.25

# What a `wait` passed to `until_deadline` returns when its bound, not the event it
# waited for, ended it.
TIMED_OUT: Any = object()

def in_worker_thread() -> bool:
    """True where only the watchdog's injections reach, and only in Python code: an OS
    thread in a process without green threads, other than the main thread (which
    SIGALRM interrupts in its system calls), unless signals are off."""
    return (NO_SIGNALS is not None or not is_main_thread()) and not is_green_patched()


def limiting_scope() -> TimeoutScope | None:
    """The scope whose deadline ends a blocking call made here and now; None: stock.

    Among the thread's active scopes that the watchdog still has to deliver and whose
    bodies are running (not a suspended generator's), the one whose deadline comes
    first; a scope without a limit counts too (its deadline is math.inf until
    reschedule() or cancel() gives it one).
    """
    scope = _innermost.get()
    if scope is None or not in_worker_thread():
        return None
    watchdog = shared_watchdog()
    best: TimeoutScope | None = None
    caller = sys._getframe(1)
    while scope is not None:
        if (
            scope._state is _ACTIVE
            and scope._backend is watchdog
            and scope._delivery is not DeliveryState.FIRED
            and (best is None or scope._deadline < best._deadline)
            and not suspended(scope, caller)  # a generator's, while its consumer runs
        ):
            best = scope
        scope = scope._parent
    return best


@protected
def expire(scope: TimeoutScope) -> None:
    """The wait reached `scope`'s deadline: raise its timeout here, as if injected
    (`ScopeTimeout`, or a catchable scope's public exception). Returns only if the
    watchdog delivered it already."""
    if shared_watchdog().take(scope):
        raise scope._unwinding() from None


@protected
def under_limiting_scope(
    timeout: float | None, wait: Callable[[float], _T], stock: Callable[[float | None], _T]
) -> _T:
    """`until_deadline` for the scope that limits a blocking call here (`limiting_scope`);
    just `stock(timeout)` where none does."""
    scope = limiting_scope()
    if scope is None:
        return stock(timeout)
    return until_deadline(scope, timeout, wait, stock)


@protected
def until_deadline(
    scope: TimeoutScope,
    timeout: float | None,
    wait: Callable[[float], _T],
    stock: Callable[[float | None], _T],
    resumable: bool = True,
) -> _T:
    """Wait as `stock(timeout)` would, but no longer than `scope`'s deadline.

    `wait(bound)` waits at most `bound` seconds and returns `TIMED_OUT` if the bound
    ended it. `stock(t)` is the original call with the caller's own timeout `t`, used
    when that timeout ends first. A `resumable` wait looks at the deadline again at
    least every `RECHECK` seconds, so `scope.cancel()`/`reschedule()` from another
    thread reach it; one that cannot be cut in rounds (a connect in progress, a sendall
    that has sent part of its data) waits up to the deadline in one go.
    """
    recheck = RECHECK if resumable else math.inf
    now = _monotonic()
    own = timeout  # what the caller asked for, passed unchanged on the first round
    try:
        end = None if timeout is None else now + timeout
    except TypeError:
        return stock(timeout)  # the original names the bad value
    if end is not None and math.isnan(end):
        return stock(timeout)
    while True:
        left = scope._deadline - now
        if left <= 0:
            expire(scope)  # raises, unless the watchdog delivered it first: then stock
            return stock(own)
        alarm = _alarm_due(now)
        if alarm is not None and alarm < left:
            if alarm <= 0:
                ring_the_alarm_here()  # raises what its handler raised, or returns
            else:
                result = wait(alarm if end is None else min(alarm, end - now))
                if result is not TIMED_OUT:
                    return result
        elif (end is not None and end - now <= left and end - now <= recheck) or (
            left == math.inf and not resumable
        ):
            # The caller's own timeout comes first; or there is no deadline (yet), and a
            # call that cannot be cut in rounds waits as stock (a later cancel() or
            # reschedule() reaches the thread once it returns).
            return stock(own)
        else:
            bound = left if left < recheck else recheck
            result = wait(bound if end is None or end - now > bound else end - now)
            if result is not TIMED_OUT:
                return result
        now = _monotonic()
        # Another scope's deadline may have moved before this one's (reschedule()).
        scope = limiting_scope() or scope
        if end is not None:
            own = max(end - now, 0.0)
            if own <= 0:
                return stock(0.0)  # the caller's own timeout, as the original ends it


# -- compat alarms: a thread's own SIGALRM, emulated by the watchdog (celery_timeouts.compat)


def _alarm_due(now: float) -> float | None:
    """Seconds until this thread's compat alarm needs it out of a patched wait, or None.

    The watchdog runs the alarm's handler at its deadline and would inject what it
    raises, but never into a thread waiting here: the wait ends at the alarm, as a real
    SIGALRM ends a system call, and raises it itself (`ring_the_alarm_here`).
    """
    compat = sys.modules.get("celery_timeouts._alarm_clocks")
    if compat is None:  # no alarm can exist before compat is imported
        return None
    due: float | None = compat._thread_alarm_due()
    return None if due is None else due - now


def ring_the_alarm_here() -> None:
    """This thread's alarm is due: wait while the watchdog runs its handler, then raise
    what the handler raised, or return (the wait goes on) if it returned, as a system
    call resumes after a signal handler that returns. Never waits more than
    `_RING_PATIENCE` for a handler that blocks."""
    compat = sys.modules["celery_timeouts._alarm_clocks"]
    give_up = _monotonic() + _RING_PATIENCE
    while True:
        exception = compat._thread_alarm_take()
        if exception is not None:
            raise exception
        due = _alarm_due(_monotonic())
        if due is None or due > 0 or _monotonic() > give_up:
            return
        _stock_sleep(_RING_POLL)


_RING_PATIENCE = 1.0
_RING_POLL = 0.001
_stock_sleep = time.sleep
