"""Bad input fails at decoration/construction time with a message naming value and fix."""

from __future__ import annotations

import pickle
import time

import pytest

from celery_timeouts import (
    BackendUnavailable,
    TaskTimeout,
    current_scope,
    detect_backend,
    portable_timeout,
)

from conftest import run_in_thread


@pytest.mark.parametrize(
    ("seconds", "error", "fragment"),
    [
        (-1, ValueError, "greater than 0, got -1"),
        (0, ValueError, "greater than 0, got 0"),
        (float("nan"), ValueError, "got nan (not a number); pass e.g."),
        (float("inf"), ValueError, "finite, got inf"),
        ("30", TypeError, "got '30' of type str"),
        (True, TypeError, "got True of type bool"),
        ([1], TypeError, "got [1]"),
    ],
)
def test_bad_seconds_rejected_at_construction(seconds: object, error: type, fragment: str) -> None:
    with pytest.raises(error, match="seconds") as info:
        portable_timeout(seconds)  # type: ignore[arg-type]
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("call", "value", "error", "fragment"),
    [
        ("sleep", "1", TypeError, "sleep()'s seconds must be a number of seconds >= 0, got '1'"),
        ("sleep", -1, ValueError, "sleep()'s seconds must be a number of seconds >= 0, got -1;"),
        ("sleep", float("nan"), ValueError, "got nan (not a number); pass e.g. sleep(0.5)"),
        ("reschedule", "soon", TypeError, "reschedule()'s deadline must be a time.monotonic()"),
        ("reschedule", float("nan"), ValueError, "got nan (not a number); pass e.g."),
        ("abandon_after", -1, ValueError, "abandon_after must be a number of seconds >= 0"),
        ("abandon_after", "x", TypeError, "got 'x' of type str; pass e.g. abandon_after=0.5"),
    ],
)
def test_every_number_is_checked_alike_naming_where_it_came_from(
    call: str, value: object, error: type, fragment: str
) -> None:
    from celery_timeouts import sleep
    from celery_timeouts.pools.options import PoolOptions

    with pytest.raises(error) as info:
        if call == "sleep":
            sleep(value)  # type: ignore[arg-type]
        elif call == "reschedule":
            with portable_timeout(30) as scope:
                scope.reschedule(value)  # type: ignore[arg-type]
        else:
            PoolOptions(abandon_after=value)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_bad_seconds_rejected_at_decoration() -> None:
    with pytest.raises(ValueError, match="use None for no limit"):

        @portable_timeout(-5)
        def job() -> None: ...


def test_unknown_backend_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        portable_timeout(1, backend="threads")
    message = str(info.value)
    assert "'threads'" in message
    for name in ("auto", "signal", "thread", "gevent", "eventlet", "asyncio"):
        assert repr(name) in message


def test_bad_exception_class() -> None:
    with pytest.raises(TypeError, match="exception class"):
        portable_timeout(1, exception="boom")  # type: ignore[arg-type]


class NeedsTwoArguments(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)


class NoArgumentsTimeout(TaskTimeout):
    def __init__(self) -> None:
        super().__init__(1.0, "thread")


@pytest.mark.parametrize(
    ("exception", "fix"),
    [
        (NeedsTwoArguments, "a single message argument"),
        (NoArgumentsTimeout, r"\(seconds, backend\) as TaskTimeout does"),
    ],
)
def test_an_exception_class_that_cannot_be_built_is_rejected_at_construction(
    exception: type[BaseException], fix: str
) -> None:
    """Not as a TypeError in place of the timeout, when it fires."""
    name = exception.__qualname__
    with pytest.raises(TypeError, match=rf"exception=.*\b{name} cannot be built.*{fix}"):
        portable_timeout(1, exception=exception)
    with pytest.raises(TypeError, match=name):
        portable_timeout(1, exception=exception)(lambda: None)


def test_an_exception_class_taking_a_message_is_raised_on_timeout() -> None:
    with (
        pytest.raises(LookupError, match=r"exceeded 0\.2 s timeout"),
        portable_timeout(0.2, exception=LookupError),
    ):
        time.sleep(3)


def test_bad_environment_override_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_TIMEOUTS_BACKEND", "fast")
    with pytest.raises(ValueError, match="CELERY_TIMEOUTS_BACKEND"), portable_timeout(1):
        pass


def test_explicit_signal_backend_refused_in_worker_thread() -> None:
    def attempt() -> None:
        with portable_timeout(1, backend="signal"):
            pass

    with pytest.raises(BackendUnavailable) as info:
        run_in_thread(attempt)
    message = str(info.value)
    assert "backend='signal'" in message and "main thread" in message
    assert "backend='thread' or 'auto'" in message


def test_refused_entry_leaves_no_scope_behind() -> None:
    def attempt() -> tuple[str, object, object]:
        outer = portable_timeout(5)
        with outer:
            refused = portable_timeout(1, backend="signal")
            try:
                with refused:
                    pass
            except BackendUnavailable:
                pass
            return refused.state.value, current_scope(), outer

    state, innermost, outer = run_in_thread(attempt)
    assert state == "init"  # never entered: nothing to undo
    assert innermost is outer


def test_asyncio_backend_refused_for_sync_code() -> None:
    with pytest.raises(BackendUnavailable, match="coroutines only"):

        @portable_timeout(1, backend="asyncio")
        def job() -> None: ...


def test_thread_backend_refused_for_coroutine() -> None:
    with pytest.raises(BackendUnavailable, match="cannot time a coroutine"):

        @portable_timeout(1, backend="thread")
        async def job() -> None: ...


def test_detect_backend_says_why() -> None:
    choice = detect_backend()
    assert choice.name == "signal" and "main thread" in choice.reason
    in_thread = run_in_thread(detect_backend)
    assert in_thread.name == "thread" and "not the main thread" in in_thread.reason


def test_task_timeout_is_picklable_and_states_facts() -> None:
    error = TaskTimeout(2.5, "thread")
    assert str(error) == "exceeded 2.5 s timeout (backend=thread)"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TaskTimeout and str(copy) == str(error)
    assert (copy.seconds, copy.backend) == (2.5, "thread")
    assert isinstance(error, TimeoutError)
