"""What each hot-path trick of the scope's entry saves, against the plain code it replaces.

Run: python benchmarks/bench_hot_path.py [--quick]

The per-call path (a `with portable_timeout(...)` or a decorated call) keeps a few
shortcuts that make the code less obvious. Each is kept only if it pays; this measures
it, in one run, side by side with the plain version (min over rounds, in ns per call):

  * `__enter__ = _enter`: no wrapper frame on every `with`;
  * `TimeoutScope._trusted`: a decorated call's scope from settings validated once at
    decoration, instead of `TimeoutScope(...)` validating them on every call;
  * reading `CELERY_TIMEOUTS_BACKEND` from `os.environ._data` with the key encoded
    once, instead of `os.environ.get` (which encodes it on every call);
  * `backends._auto_name()`: the name only, instead of `detect_backend()` building a
    reason string that the scope never reads;
  * a backend's record of an armed scope (`_watched.WatchedScope`, `_green.ArmedGreenlet`,
    asyncio's `_ArmedTask`) built field by field where it is armed, and eventlet's hub
    timer made by a factory function, instead of classes with an `__init__`: calling a
    class whose `__init__` is Python code costs about twice as much as the object.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from celery_timeouts import TaskTimeout
from celery_timeouts._scope import TimeoutScope
from celery_timeouts.backends import ENV_VAR, _auto_name, _env_backend, detect_backend
from celery_timeouts.backends._watched import WatchedScope
from celery_timeouts.backends.eventlet_timer import _throw_timer


def ns_per_call(call: Callable[[], object], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - started) / n * 1e9)
    return best


class _WrappedEnter(TimeoutScope):
    """The plain alternative: `__enter__` as its own method calling `_enter`."""

    __slots__ = ()

    def __enter__(self) -> TimeoutScope:
        return self._enter()


class _RecordWithInit:
    """The plain alternative to a record built field by field: the same slots, set by
    `__init__` (eventlet's timer has five fields, the watchdog's record three)."""

    __slots__ = ("_armed", "_thread_id", "scope")

    def __init__(self, scope: object, thread_id: int) -> None:
        self.scope = scope
        self._thread_id = thread_id
        self._armed = True


class _TimerWithInit:
    __slots__ = ("_greenlet", "_hub", "_scope", "called", "seconds")

    def __init__(self, scope: object, greenlet: object, hub: object, seconds: float) -> None:
        self.seconds = seconds
        self.called = seconds is None
        self._scope = scope
        self._greenlet = greenlet
        self._hub = hub


def pairs() -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    def with_alias() -> None:
        with TimeoutScope(30):
            pass

    def with_wrapper() -> None:
        with _WrappedEnter(30):
            pass

    def trusted() -> object:
        return TimeoutScope._trusted(30, "auto", TaskTimeout, False)

    def validated() -> object:
        return TimeoutScope(30)

    def environ_data() -> object:
        return _env_backend()

    def environ_get() -> object:
        return os.environ.get(ENV_VAR)

    def auto_name() -> object:
        return _auto_name()

    def detect() -> object:
        return detect_backend().name

    scope = TimeoutScope(30)

    def record_by_fields() -> object:
        watched = WatchedScope()
        watched.scope = scope
        watched._thread_id = 1
        watched._armed = True
        return watched

    def record_by_init() -> object:
        return _RecordWithInit(scope, 1)

    def timer_by_factory() -> object:
        return _throw_timer(scope, None, None, 30.0)

    def timer_by_init() -> object:
        return _TimerWithInit(scope, None, None, 30.0)

    return [
        ("__enter__ = _enter (a whole with block)", with_alias, with_wrapper),
        ("_trusted (a decorated call's scope)", trusted, validated),
        ("os.environ._data (the override's lookup)", environ_data, environ_get),
        ("_auto_name (which backend)", auto_name, detect),
        ("a record built field by field", record_by_fields, record_by_init),
        ("eventlet's timer from a factory function", timer_by_factory, timer_by_init),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    options = parser.parse_args()
    n, rounds = (2_000, 3) if options.quick else (50_000, 9)
    print(f"{'trick':<44} {'with it':>9} {'plain':>9} {'saves':>8}")
    for name, trick, plain in pairs():
        # Interleaved, so that a slower moment of the machine hits both alike.
        with_it = without = float("inf")
        for _ in range(3):
            with_it = min(with_it, ns_per_call(trick, n, rounds))
            without = min(without, ns_per_call(plain, n, rounds))
        saved = (without - with_it) / without * 100
        print(f"{name:<44} {with_it:>7.0f}ns {without:>7.0f}ns {saved:>7.1f}%")


if __name__ == "__main__":
    main()
