"""`on_timeout` cases every synchronous backend must pass (see cases.py for the contexts).

Run in the main thread (signal), a worker thread (thread), and in monkey-patched gevent
and eventlet processes (tests/green_runner.py ... on_timeout_cases). Bounds are loose:
what matters is how many times a callback ran, where, and before what.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from celery_timeouts import TaskTimeout, on_timeout, portable_timeout

from cases import SLACK, _timed, spin


def _where() -> Any:
    """Something that names the thread or greenlet running now."""
    try:
        from greenlet import getcurrent
    except ImportError:  # pragma: no cover - greenlet comes with the green extras
        return threading.current_thread()
    return (threading.current_thread(), getcurrent())


def _in_the_backends_place(expected_backend: str, where: Any, body_where: Any) -> bool:
    thread = where[0] if isinstance(where, tuple) else where
    if expected_backend == "thread":
        return thread.name == "celery-timeouts-watchdog"
    if expected_backend == "signal":
        return where == body_where and thread is threading.main_thread()
    if expected_backend == "gevent":
        import gevent

        return where[1] is gevent.get_hub()
    if expected_backend == "eventlet":
        from eventlet.hubs import get_hub

        return where[1] is get_hub().greenlet
    raise AssertionError(expected_backend)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def case_runs_once_before_the_timeout_in_the_backends_place(expected_backend: str) -> None:
    calls: list[tuple[Any, bool, Any]] = []
    seen: dict[str, Any] = {}

    def record(tag: str) -> None:
        calls.append((tag, seen["scope"].fired, _where()))

    def body() -> None:
        with portable_timeout(0.2) as scope:
            seen["scope"], seen["where"] = scope, _where()
            seen["handle"] = scope.on_timeout(record, "first")
            spin(10)

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout), repr(error)
    assert elapsed < 0.2 + SLACK, elapsed
    spin(0.3)  # nothing runs a second time
    assert [(tag, fired) for tag, fired, _ in calls] == [("first", False)], calls
    assert _in_the_backends_place(expected_backend, calls[0][2], seen["where"]), calls
    handle = seen["handle"]
    assert handle.ran and not handle.pending and not handle.cancelled, handle
    assert handle.cancel() is False


def case_cancel_keeps_a_callback_from_running(expected_backend: str) -> None:
    ran: list[str] = []

    def body() -> None:
        with portable_timeout(0.15) as scope:
            kept = scope.on_timeout(ran.append, "kept")
            taken_back = scope.on_timeout(ran.append, "cancelled")
            assert taken_back.cancel() is True and taken_back.cancel() is False
            assert taken_back.cancelled and not taken_back.pending
            assert kept.pending
            spin(10)

    error, _ = _timed(body)
    assert isinstance(error, TaskTimeout), repr(error)
    assert ran == ["kept"], ran


def case_dropped_when_the_scope_exits(expected_backend: str) -> None:
    ran: list[str] = []
    with portable_timeout(0.1) as scope:
        handle = scope.on_timeout(ran.append, "too late")
    spin(0.3)  # well past the deadline the scope no longer has
    assert ran == [] and handle.cancelled and not handle.pending, (ran, handle)
    assert not scope.fired
    try:
        scope.on_timeout(ran.append, "after exit")
    except RuntimeError as error:
        assert "not active" in str(error) or "active scope" in str(error), error
    else:
        raise AssertionError("on_timeout() on an exited scope did not raise")


def case_a_raising_callback_is_logged_and_the_timeout_still_delivered(
    expected_backend: str,
) -> None:
    records = _Records()
    logger = logging.getLogger("celery_timeouts")
    logger.addHandler(records)
    ran: list[str] = []

    def broken_unblocker() -> None:
        raise OSError("the connection is gone already")

    def body() -> None:
        with portable_timeout(0.15) as scope:
            scope.on_timeout(broken_unblocker)
            scope.on_timeout(ran.append, "after the broken one")
            spin(10)

    try:
        error, elapsed = _timed(body)
    finally:
        logger.removeHandler(records)
    assert isinstance(error, TaskTimeout), repr(error)
    assert elapsed < 0.15 + SLACK, elapsed
    assert ran == ["after the broken one"], ran
    assert any("broken_unblocker" in message for message in records.messages), records.messages


def case_module_level_on_timeout_takes_the_first_deadline(expected_backend: str) -> None:
    ran: list[str] = []
    try:
        on_timeout(ran.append, "no scope")
    except RuntimeError as error:
        assert "portable_timeout" in str(error), error
    else:
        raise AssertionError("on_timeout() outside any scope did not raise")

    def body() -> None:
        with portable_timeout(0.2), portable_timeout(None), portable_timeout(5):
            on_timeout(ran.append, "outer deadline")  # the 0.2 s scope's, not the 5 s one's
            spin(10)

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout) and "0.2 s" in str(error), repr(error)
    assert elapsed < 0.2 + SLACK, elapsed
    assert ran == ["outer deadline"], ran
    with portable_timeout(None):
        try:
            on_timeout(ran.append, "no limit")
        except RuntimeError:
            pass
        else:
            raise AssertionError("on_timeout() in a scope without a limit did not raise")


def case_registered_after_the_deadline_runs_at_once(expected_backend: str) -> None:
    ran: list[str] = []

    class Soft(Exception):
        pass

    with portable_timeout(5), portable_timeout(0.1, exception=Soft, catchable=True) as soft:
        with contextlib.suppress(Soft):
            spin(10)
        handle = soft.on_timeout(ran.append, "late")
        assert ran == ["late"] and handle.ran, (ran, handle)


def case_a_callback_that_moves_the_deadline_later_puts_the_timeout_off(
    expected_backend: str,
) -> None:
    """A callback may give the body more time (the pytest plugin does, for a test held
    by a debugger): the timeout then comes at the new deadline, not at the old one."""
    import time

    def more_time(scope: Any) -> None:
        scope.reschedule(time.monotonic() + 0.4)

    def body() -> None:
        with portable_timeout(0.1) as scope:
            scope.on_timeout(more_time, scope)
            spin(10)

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout), repr(error)
    assert elapsed >= 0.45, elapsed  # 0.1 s, then 0.4 s more
    assert elapsed < 0.5 + SLACK, elapsed


CASES = {name: func for name, func in sorted(globals().items()) if name.startswith("case_")}
