"""Argument checks for `compat` off the main thread, where the stdlib is not called.

They reject what `signal.alarm`, `signal.setitimer`, `signal.getitimer` and
`signal.getsignal` reject in the main thread, with the same exception types (checked on
Python 3.10 to 3.13), so code behaves the same in every thread.
"""

from __future__ import annotations

# alarm() takes a C int; setitimer() converts seconds to int64 nanoseconds.
ALARM_MAX = 2**31 - 1
TIMER_MAX_SECONDS = (2**63 - 1) / 1e9


def signal_number(value: object, function: str) -> None:
    """Signal and timer numbers must be ints (`getsignal(14.0)` is a TypeError)."""
    if not isinstance(value, int) and not hasattr(type(value), "__index__"):
        raise TypeError(
            f"{function}() takes an int, got {value!r} of type {type(value).__name__}; "
            f"use e.g. signal.SIGALRM or signal.ITIMER_REAL"
        )


def alarm_in_range(seconds: int) -> None:
    if seconds > ALARM_MAX:
        raise OverflowError(
            f"alarm() seconds must fit a C int (at most {ALARM_MAX}), got {seconds}; "
            f"use a smaller value, or 0 to cancel"
        )


def timer_in_range(name: str, seconds: float, given: object) -> None:
    if seconds > TIMER_MAX_SECONDS:
        raise OverflowError(
            f"setitimer() {name} is out of range for the platform timer (at most about "
            f"{TIMER_MAX_SECONDS:.4g} s), got {given!r}; use a smaller value, or 0 to disarm"
        )
