"""Input checks that fail at decoration or construction time, naming the value and the fix."""

from __future__ import annotations

import math
import numbers
import time

from .exceptions import TaskTimeout

BACKEND_NAMES = ("signal", "thread", "gevent", "eventlet", "asyncio")
AUTO = "auto"
_INF = math.inf
# The longest delay every timer takes: CPython counts setitimer's and a lock's timeouts
# in int64 nanoseconds (2**63 ns, about 292 years; beyond, OverflowError). A longer
# limit is no practical limit: it is armed as this many seconds (about 285 years).
MAX_SECONDS = 9e9
_CANONICAL = frozenset((AUTO, *BACKEND_NAMES))


def real_number(value: object, origin: str, what: str, fix: str) -> float:
    """The one check behind every number the package takes: `value` as a float, if it is
    a real number (int, float, Fraction, ...; not a bool, not a string) and not NaN.
    Infinities come back as they are, and so do numbers too large for a float (as +-inf),
    for the caller's range check. The errors name `origin` (where the value came from),
    `what` it must be, and the `fix`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{origin} must be {what}, got {value!r} of type {type(value).__name__}; {fix}"
        )
    try:
        number = float(value)
    except OverflowError:  # an int (or Fraction, ...) beyond floats
        return _INF if value > 0 else -_INF  # type: ignore[operator]
    if math.isnan(number):
        raise ValueError(f"{origin} must be {what}, got {value!r} (not a number); {fix}")
    return number


def validate_seconds(seconds: object, origin: str = "seconds") -> float | None:
    """Return `seconds` as a float, or None for "no limit"; reject everything else."""
    if seconds is None:
        return None
    if type(seconds) is float or type(seconds) is int:  # the common case, no ABC check
        if 0 < seconds <= MAX_SECONDS:
            return float(seconds)
        if MAX_SECONDS < seconds < _INF:  # int or float, however large
            return MAX_SECONDS
    value = real_number(
        seconds, origin, "a number of seconds (int or float) or None for no limit",
        "pass e.g. portable_timeout(30) or portable_timeout(2.5)",
    )
    if math.isinf(value) and isinstance(seconds, float):
        raise ValueError(f"{origin} must be finite, got {seconds!r}; use None for no limit")
    # (An int or Fraction beyond floats came back as an infinity: no practical limit.)
    if value <= 0:
        _negative(seconds, origin)
    return min(value, MAX_SECONDS)


def validate_deadline(deadline: object) -> float:
    """A deadline for reschedule(): a finite time.monotonic() time, or math.inf for None."""
    if deadline is None:
        return math.inf
    when = real_number(
        deadline, "reschedule()'s deadline", "a time.monotonic() time or None",
        "pass e.g. time.monotonic() + 5, or None for no limit",
    )
    if when == math.inf:
        return when
    # Timers count at most MAX_SECONDS ahead: further is no practical limit.
    return max(min(when, time.monotonic() + MAX_SECONDS), -MAX_SECONDS)


def _negative(seconds: object, origin: str) -> float:
    raise ValueError(
        f"{origin} must be greater than 0, got {seconds!r}; use None for no limit"
    )


def validate_backend(name: object, origin: str = "backend") -> str:
    """Return a valid backend name ('auto' or one of BACKEND_NAMES)."""
    if type(name) is str and name in _CANONICAL:
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"{origin} must be a string, got {name!r}; "
            f"valid values: {_valid_list()}"
        )
    normalized = name.strip().lower()
    if normalized != AUTO and normalized not in BACKEND_NAMES:
        raise ValueError(
            f"unknown {origin} {name!r}; valid values: {_valid_list()}"
        )
    return normalized


def validate_exception(exception: object) -> type[BaseException]:
    """The exception a scope raises on timeout must be an exception class."""
    if exception is TaskTimeout:
        return exception
    if not (isinstance(exception, type) and issubclass(exception, BaseException)):
        raise TypeError(
            f"exception must be an exception class such as TaskTimeout or TimeoutError, "
            f"got {exception!r}"
        )
    _build_one(exception)
    return exception


def _build_one(exception: type[BaseException]) -> None:
    """Build the exception once, as a timeout will, so a class that cannot be built
    fails here and not as a TypeError in place of the timeout."""
    arguments: tuple[object, ...] = ("exceeded 1 s timeout",)
    call = f"{exception.__name__}(message)"
    if issubclass(exception, TaskTimeout):
        arguments, call = (1.0, "thread"), f"{exception.__name__}(seconds, backend)"
    try:
        exception(*arguments)
    except Exception as error:
        raise TypeError(
            f"exception={exception.__module__}.{exception.__qualname__} cannot be built the "
            f"way a timeout builds it, {call}: {type(error).__name__}: {error}; give it an "
            f"__init__ that accepts "
            + (
                "(seconds, backend) as TaskTimeout does"
                if issubclass(exception, TaskTimeout)
                else "a single message argument"
            )
            + ", or pass a class that does"
        ) from error


def _valid_list() -> str:
    return ", ".join(repr(n) for n in (AUTO, *BACKEND_NAMES))


def validate_catchable(catchable: object) -> bool:
    if not isinstance(catchable, bool):
        raise TypeError(f"catchable must be True or False, got {catchable!r}")
    return catchable
