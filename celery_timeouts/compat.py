"""`signal.alarm`-style timeouts that work in any thread or greenlet.

    from celery_timeouts import compat as signal

keeps code written for SIGALRM working where SIGALRM cannot reach: every worker thread,
gevent greenlet and eventlet green thread gets its own alarm clock and its own SIGALRM
handler, as if it were a process of its own. In the main thread (outside greenlets)
each call goes straight to the stdlib, where SIGALRM already works.

Off the main thread the handler runs where a signal handler cannot: in a worker thread
on the library's watchdog thread, in a greenlet on the hub (or, for a greenlet that
never yields to the hub, in that greenlet, through the green guard). It gets the frame
of the interrupted code, and what it raises is raised in the interrupted thread or
greenlet (the same exception object). Keep handlers short, as for a real signal handler.
A thread blocked in C sees that exception only once it is back in Python.

`patch()` does the same for code that calls the stdlib `signal` module directly.
Every other name (`SIGINT`, `SIG_DFL`, `pause`, ...) is the stdlib's.
"""

from __future__ import annotations

import contextlib
import math
import operator
import signal as _stdlib
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import _compat_args as _args
from ._alarm_clocks import SIGALRM, _clock, _driver, _Handler, _set_timer
from ._patching import patched_for_a_block
from ._unwind import protected

if TYPE_CHECKING:
    pass

# SIGALRM and ITIMER_REAL: where the platform has neither (Windows), the numbers they
# have on Linux; the emulation below is then all there is.
ITIMER_REAL: int = getattr(_stdlib, "ITIMER_REAL", 0)
SIG_DFL = _stdlib.SIG_DFL
SIG_IGN = _stdlib.SIG_IGN

# The stdlib functions as they were when this module was imported: what the main thread
# calls, and what unpatch() puts back.
_PATCHABLE = ("signal", "getsignal", "alarm", "setitimer", "getitimer")
_ORIGINALS: dict[str, Any] = {
    name: getattr(_stdlib, name) for name in _PATCHABLE if hasattr(_stdlib, name)
}


def __getattr__(name: str) -> Any:
    """Everything this module does not emulate is the stdlib's own."""
    try:
        return getattr(_stdlib, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(dir(_stdlib)))


# -- the public functions -------------------------------------------------------------------


@protected
def signal(signalnum: int, handler: _Handler) -> _Handler:
    """`signal.signal`; for SIGALRM off the main thread, this thread's/greenlet's handler."""
    if signalnum != SIGALRM or (driver := _driver()) is None:
        return _ORIGINALS["signal"](signalnum, handler)  # type: ignore[no-any-return]
    if not (callable(handler) or handler in (SIG_DFL, SIG_IGN)):
        raise TypeError(
            f"signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object, "
            f"got {handler!r}"
        )
    clock = _clock(driver, create=True)
    assert clock is not None
    previous, clock.handler = clock.handler, handler
    return previous


def getsignal(signalnum: int) -> _Handler:
    """`signal.getsignal`; for SIGALRM off the main thread, this thread's/greenlet's handler."""
    if signalnum != SIGALRM or (driver := _driver()) is None:
        return _ORIGINALS["getsignal"](signalnum)  # type: ignore[no-any-return]
    _args.signal_number(signalnum, "getsignal")
    clock = _clock(driver, create=False)
    return SIG_DFL if clock is None else clock.handler


@protected
def alarm(seconds: int) -> int:
    """`signal.alarm`: SIGALRM in `seconds` (0 cancels); returns what was left, rounded."""
    try:
        whole = operator.index(seconds)
    except TypeError:
        raise TypeError(
            f"alarm() takes a whole number of seconds, got {seconds!r}; "
            f"use setitimer(ITIMER_REAL, {seconds!r}) for fractions of a second"
        ) from None
    if whole < 0:
        raise ValueError(f"alarm() takes seconds >= 0 (0 cancels), got {whole}")
    driver = _driver()
    if driver is None:
        return _ORIGINALS["alarm"](whole)  # type: ignore[no-any-return]
    _args.alarm_in_range(whole)
    left, _ = _set_timer(driver, float(whole), 0.0, sys._getframe(1))
    return _round_like_alarm(left)


@protected
def setitimer(which: int, seconds: float, interval: float = 0.0) -> tuple[float, float]:
    """`signal.setitimer`; ITIMER_REAL off the main thread is this thread's/greenlet's own.

    Returns the previous (delay, interval). `seconds=0` disarms; `interval > 0` repeats.
    ITIMER_VIRTUAL and ITIMER_PROF measure the whole process's CPU time: they go to the
    stdlib unchanged.
    """
    if which != ITIMER_REAL or (driver := _driver()) is None:
        return _ORIGINALS["setitimer"](which, seconds, interval)  # type: ignore[no-any-return]
    _args.signal_number(which, "setitimer")
    delay = _validate_seconds("seconds", seconds)
    repeat = _validate_seconds("interval", interval)
    return _set_timer(driver, delay, repeat, sys._getframe(1))


def getitimer(which: int) -> tuple[float, float]:
    """`signal.getitimer`; ITIMER_REAL off the main thread is this thread's/greenlet's own."""
    if which != ITIMER_REAL or (driver := _driver()) is None:
        return _ORIGINALS["getitimer"](which)  # type: ignore[no-any-return]
    _args.signal_number(which, "getitimer")
    clock = _clock(driver, create=False)
    timer = None if clock is None else clock.timer
    if timer is None:
        return (0.0, 0.0)
    return (max(timer.deadline - time.monotonic(), 0.0), timer.interval)


# -- patching the stdlib ------------------------------------------------------------------------

_patch_lock = threading.Lock()


def patch() -> None:
    """Make the stdlib `signal` module's SIGALRM functions per thread and per greenlet.

    Process-wide and opt-in, for code that calls `signal.alarm` & co. itself. Only
    SIGALRM and ITIMER_REAL change; every other signal behaves exactly as before.
    Code that did `from signal import alarm` before the patch keeps the original:
    patch early. Calling it again does nothing.
    """
    ours = globals()
    with _patch_lock:
        for name in _ORIGINALS:
            setattr(_stdlib, name, ours[name])


def unpatch() -> None:
    """Put the stdlib's own functions back (the very same objects). Safe to repeat.

    A function someone else replaced after `patch()` is left as they set it.
    """
    ours = globals()
    with _patch_lock:
        for name, original in _ORIGINALS.items():
            if getattr(_stdlib, name) is ours[name]:
                setattr(_stdlib, name, original)


def is_patched() -> bool:
    ours = globals()
    return any(getattr(_stdlib, name) is ours[name] for name in _ORIGINALS)


def patched() -> contextlib.AbstractContextManager[None]:
    """`patch()` for the duration of a `with` block; unpatches only if it patched."""
    return patched_for_a_block(is_patched, patch, unpatch)


# -- helpers -------------------------------------------------------------------------------------


def _validate_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"setitimer() {name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if math.isinf(seconds) and seconds > 0:
        _args.timer_in_range(name, seconds, value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(
            f"setitimer() {name} must be a finite number of seconds >= 0 (0 disarms), "
            f"got {value!r}"
        )
    _args.timer_in_range(name, seconds, value)
    return seconds


def _round_like_alarm(seconds: float) -> int:
    """Linux's alarm(): the old alarm's remaining time to the nearest second, but at
    least 1 if any was left (0 means there was none)."""
    whole = int(seconds)
    fraction = seconds - whole
    if fraction >= 0.5 or (whole == 0 and fraction > 0):
        whole += 1
    return whole
