"""Hostile inputs and failures keep the invariant: limits of any size, entries that fail,
the environment override, scopes suspended in generators or left elsewhere, and bodies
that use SIGALRM themselves."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest

from celery_timeouts import TaskTimeout, current_scope, on_timeout, portable_timeout
from celery_timeouts._validation import MAX_SECONDS
from celery_timeouts.backends import _instances, get_backend, sigalrm, watchdog

from conftest import run_in_thread, run_python

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_itimer_left() -> Iterator[None]:
    yield
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def nothing_leaks_outside_scopes(seconds: float = 0.4) -> None:
    """Run plain code for `seconds`: a timeout left armed would land here."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
    assert current_scope() is None


def a_short_scope_still_fires() -> None:
    with pytest.raises(TaskTimeout), portable_timeout(0.1):
        spin(5)


# -- limits of any size ------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [1e10, 10**400, Fraction(10**400), 1e300, 9.3e9])
def test_a_limit_beyond_the_timers_is_no_practical_limit(seconds: Any) -> None:
    assert portable_timeout(seconds).seconds == MAX_SECONDS

    def body() -> None:
        with portable_timeout(seconds) as scope:
            time.sleep(0.01)
        assert scope.backend and not scope.fired and scope.remaining() > MAX_SECONDS - 60
        a_short_scope_still_fires()
        nothing_leaks_outside_scopes(0.2)

    body()  # the main thread: the signal backend
    run_in_thread(body)  # the watchdog


def test_a_huge_limit_decorated_and_nested_keeps_the_inner_deadline() -> None:
    @portable_timeout(10**400)
    def outer() -> None:
        with portable_timeout(1e10), portable_timeout(0.1):
            spin(5)

    with pytest.raises(TaskTimeout):
        outer()
    nothing_leaks_outside_scopes(0.2)


@pytest.mark.parametrize(
    ("seconds", "error", "fragment"),
    [
        (float("nan"), ValueError, "or None for no limit, got nan"),
        (float("inf"), ValueError, "must be finite, got inf; use None"),
        (-(10**400), ValueError, "must be greater than 0"),
        (-1e10, ValueError, "must be greater than 0, got -10000000000.0"),
        ("30", TypeError, "got '30' of type str"),
        (True, TypeError, "got True of type bool"),
    ],
)
def test_bad_limits_keep_clear_errors(seconds: object, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment.replace("(", r"\(")):
        portable_timeout(seconds)  # type: ignore[arg-type]


def test_a_user_itimer_of_the_longest_kind_survives_a_scope() -> None:
    from celery_timeouts import compat

    previous = signal.signal(signal.SIGALRM, lambda *args: None)
    try:
        compat.setitimer(compat.ITIMER_REAL, MAX_SECONDS)
        with portable_timeout(1e10):
            pass
        with pytest.raises(TaskTimeout), portable_timeout(0.05):
            spin(5)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert MAX_SECONDS - 60 < left <= MAX_SECONDS
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_pytest_option_takes_a_huge_limit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--portable-timeout=1e10", timeout=120
    )
    result.assert_outcomes(passed=1)


# -- an entry that fails leaves no trace ---------------------------------------------------------


class InjectedFailure(Exception):
    pass


class _FailingSignalModule:
    """The `_signal` module as the signal backend sees it, with one call that fails."""

    def __init__(self, real: Any, failing: str) -> None:
        self._real = real
        self._failing = failing

    def __getattr__(self, name: str) -> Any:
        if name == self._failing:
            def fail(*args: Any) -> Any:
                raise InjectedFailure(name)

            return fail
        return getattr(self._real, name)


def test_signal_entry_failure_restores_handler_and_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        backend = get_backend("signal")
        monkeypatch.setattr(sigalrm, "_signal", _FailingSignalModule(sigalrm._signal, "setitimer"))
        with pytest.raises(InjectedFailure), portable_timeout(0.1):
            pytest.fail("the body of a scope whose entry failed ran")
        monkeypatch.undo()
        assert backend._active == [] and current_scope() is None  # type: ignore[attr-defined]
        assert signal.getsignal(signal.SIGALRM) is not backend._handler  # type: ignore[attr-defined]
        assert 29 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30
        nothing_leaks_outside_scopes()
        a_short_scope_still_fires()
        assert calls == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_nested_signal_entry_failure_keeps_the_outer_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = get_backend("signal")
    with pytest.raises(TaskTimeout), portable_timeout(0.3) as outer:
        monkeypatch.setattr(sigalrm, "_signal", _FailingSignalModule(sigalrm._signal, "setitimer"))
        with pytest.raises(InjectedFailure), portable_timeout(0.05):
            pass
        monkeypatch.undo()
        assert current_scope() is outer
        assert backend._active == [outer]  # type: ignore[attr-defined]
        spin(5)
    nothing_leaks_outside_scopes()


def test_watchdog_entry_failure_leaves_nothing_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = watchdog.WatchdogBackend()
    monkeypatch.setitem(_instances, "thread", fresh)
    started = []

    def fail_once() -> None:
        started.append(1)
        if len(started) == 1:
            raise InjectedFailure("can't start new thread")
        real_start()

    real_start = fresh._start_thread
    monkeypatch.setattr(fresh, "_start_thread", fail_once)

    def body() -> None:
        with pytest.raises(InjectedFailure), portable_timeout(0.1):
            pytest.fail("the body of a scope whose entry failed ran")
        assert current_scope() is None
        a_short_scope_still_fires()  # starts the watchdog thread this time
        nothing_leaks_outside_scopes()

    run_in_thread(body)
    assert len(started) == 2


GREEN_ENTRY_FAILURE = """
import sys, time
library = {library!r}
if library == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    spawn = gevent.spawn
    join = lambda g: g.get()
else:
    import eventlet; eventlet.monkey_patch()
    spawn = eventlet.spawn
    join = lambda g: g.wait()
from celery_timeouts import TaskTimeout, current_scope, portable_timeout
from celery_timeouts.backends import get_backend, green_guard

class Injected(Exception):
    pass

def failing_schedule(self):
    raise Injected("no watchdog")

def main():
    backend = get_backend(library)
    real = green_guard.GreenGuard._schedule
    green_guard.GreenGuard._schedule = failing_schedule
    try:
        with portable_timeout(0.1):
            print("BODY RAN")
    except Injected:
        pass
    green_guard.GreenGuard._schedule = real
    assert current_scope() is None
    time.sleep(0.4)  # a timer left behind would throw here, outside any scope
    try:
        with portable_timeout(0.1):
            end = time.monotonic() + 5
            while time.monotonic() < end:  # never yields: the guard must tick
                pass
    except TaskTimeout:
        print("FIRED")
    time.sleep(0.3)
    print("DONE")

join(spawn(main))
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_green_entry_failure_leaves_no_timer(library: str) -> None:
    completed = run_python(GREEN_ENTRY_FAILURE.format(library=library), timeout=60)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == ["FIRED", "DONE"], completed.stdout


def test_asyncio_entry_failure_leaves_nothing_scheduled() -> None:
    import asyncio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = loop.call_at

        def failing(*args: Any, **kwargs: Any) -> Any:
            raise InjectedFailure("call_at")

        loop.call_at = failing  # type: ignore[method-assign]
        with pytest.raises(InjectedFailure):
            async with portable_timeout(0.05):
                pytest.fail("the body of a scope whose entry failed ran")
        loop.call_at = real  # type: ignore[method-assign]
        assert current_scope() is None
        await asyncio.sleep(0.2)
        with pytest.raises(TaskTimeout):
            async with portable_timeout(0.05):
                await asyncio.sleep(5)

    asyncio.run(main())


# -- the environment override -------------------------------------------------------------------


def test_an_override_that_cannot_run_here_is_refused_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery_timeouts import BackendUnavailable

    with portable_timeout(1):  # the signal backend exists from here on
        pass
    monkeypatch.setenv("CELERY_TIMEOUTS_BACKEND", "signal")

    def attempts() -> list[str]:
        refusals = []
        for _ in range(2):
            try:
                with portable_timeout(0.2):
                    spin(0.4)
            except BackendUnavailable as error:
                refusals.append(str(error))
        return refusals

    refusals = run_in_thread(attempts)
    assert len(refusals) == 2, refusals
    assert "CELERY_TIMEOUTS_BACKEND" in refusals[0] and "main thread" in refusals[0]
    with portable_timeout(1) as scope:  # where it can run, it is used
        pass
    assert scope.backend == "signal"
    nothing_leaks_outside_scopes(0.2)


def test_detect_backend_reports_the_override_and_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery_timeouts import detect_backend

    monkeypatch.setenv("CELERY_TIMEOUTS_BACKEND", "thread")
    choice = detect_backend()
    assert choice.name == "thread"
    assert "CELERY_TIMEOUTS_BACKEND='thread'" in choice.reason and "'signal'" in choice.reason
    with portable_timeout(1) as scope:
        pass
    assert scope.backend == choice.name
    monkeypatch.setenv("CELERY_TIMEOUTS_BACKEND", "signal")
    in_thread = run_in_thread(detect_backend)
    assert in_thread.name == "signal" and "raise BackendUnavailable" in in_thread.reason
    monkeypatch.setenv("CELERY_TIMEOUTS_BACKEND", "Auto")
    assert detect_backend().name == "signal"
    monkeypatch.setenv("CELERY_TIMEOUTS_BACKEND", "fast")
    with pytest.raises(ValueError, match="CELERY_TIMEOUTS_BACKEND 'fast'"):
        detect_backend()


GEVENT_OVERRIDE_IN_A_THREAD = """
import threading
from celery_timeouts import BackendUnavailable, portable_timeout
outcomes = []
def attempt():
    for _ in range(2):
        try:
            with portable_timeout(0.1):
                end = __import__("time").monotonic() + 0.5
                while __import__("time").monotonic() < end:
                    pass
            outcomes.append("ran to the end")
        except BackendUnavailable as error:
            outcomes.append("refused" if "CELERY_TIMEOUTS_BACKEND" in str(error) else str(error))
thread = threading.Thread(target=attempt)
thread.start()
thread.join()
print(outcomes)
"""


def test_a_gevent_override_in_a_plain_thread_is_refused() -> None:
    completed = run_python(
        GEVENT_OVERRIDE_IN_A_THREAD, env={"CELERY_TIMEOUTS_BACKEND": "gevent"}, timeout=60
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip() == "['refused', 'refused']", completed.stdout


def test_a_bad_override_stops_a_script_at_its_first_scope() -> None:
    code = "from celery_timeouts import portable_timeout\nwith portable_timeout(1):\n    pass\n"
    completed = run_python(code, env={"CELERY_TIMEOUTS_BACKEND": "bogus"}, timeout=60)
    assert completed.returncode == 1
    assert "ValueError: unknown environment variable CELERY_TIMEOUTS_BACKEND 'bogus'" in (
        completed.stderr
    ), completed.stderr


# -- a scope left in another thread or context ------------------------------------------------


def test_a_signal_scope_left_in_another_thread_is_refused_and_cleaned_up() -> None:
    calls: list[int] = []

    def mine(signum: int, frame: object) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGALRM, mine)
    try:
        scope = portable_timeout(0.3)
        scope.__enter__()
        with pytest.raises(RuntimeError, match="left in another thread or context"):
            run_in_thread(lambda: scope.__exit__(None, None, None))
        deadline = time.monotonic() + 5
        while signal.getsignal(signal.SIGALRM) is not mine and time.monotonic() < deadline:
            time.sleep(0.01)  # the main thread puts the handler back at its next signal
        assert signal.getsignal(signal.SIGALRM) is mine
        assert current_scope() is None
        # The spent scope is still in this context's chain: nothing may take it for an
        # active one.
        with pytest.raises(RuntimeError, match="none is active here"):
            on_timeout(calls.append, 0)
        nothing_leaks_outside_scopes(0.5)
        a_short_scope_still_fires()
        assert signal.getsignal(signal.SIGALRM) is mine and calls == []
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_a_thread_scope_left_in_another_thread_keeps_the_entering_chain_intact() -> None:
    from celery_timeouts import blocking, check, sleep

    entered = threading.Event()
    left = threading.Event()
    errors: list[BaseException] = []
    holder: list[Any] = []

    def enter() -> None:
        with portable_timeout(5) as outer:
            scope = portable_timeout(0.2)
            scope.__enter__()
            holder.append(scope)
            entered.set()
            left.wait(10)
            try:
                assert current_scope() is outer
                spin(0.4)
                check()
                sleep(0.05)
                on_timeout(errors.append, "the spent scope's callback ran").cancel()
                with blocking.patched():
                    time.sleep(0.3)  # no deadline but the outer one's ends this wait
                assert current_scope() is outer
            except BaseException as error:
                errors.append(error)
        assert current_scope() is None

    thread = threading.Thread(target=enter)
    thread.start()
    entered.wait(10)
    with pytest.raises(RuntimeError, match="left in another thread or context"):
        holder[0].__exit__(None, None, None)
    left.set()
    thread.join()
    assert errors == []


# -- the body's own SIGALRM use ---------------------------------------------------------------


@pytest.fixture
def user_handler() -> Iterator[list[str]]:
    """A SIGALRM handler of the user's, installed before the scopes; restored after."""
    calls: list[str] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append("user"))
    try:
        yield calls
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def replaces_the_handler() -> None:
    signal.signal(signal.SIGALRM, lambda signum, frame: None)
    spin(0.6)


def ignores_the_signal() -> None:
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    spin(0.6)


def replaces_then_restores_the_handler() -> None:
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: None)
    spin(0.5)
    signal.signal(signal.SIGALRM, previous)


def rearms_the_timer() -> None:
    signal.alarm(30)
    spin(0.6)


@pytest.mark.parametrize(
    "body",
    [replaces_the_handler, ignores_the_signal, replaces_then_restores_the_handler,
     rearms_the_timer],
)
def test_a_passed_deadline_holds_whatever_the_body_does_with_sigalrm(
    body: Any, user_handler: list[str]
) -> None:
    with pytest.raises(TaskTimeout), portable_timeout(0.2) as scope:
        body()
    assert scope.fired
    assert current_scope() is None
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, lambda signum, frame: user_handler.append("user"))
    a_short_scope_still_fires()
    nothing_leaks_outside_scopes(0.2)
    assert "user" not in user_handler


def test_a_timer_the_body_armed_is_still_pending_after_the_scope(user_handler: list[str]) -> None:
    with portable_timeout(5):
        signal.alarm(1)
        spin(0.1)
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    assert 0.5 < left <= 0.9, left
    deadline = time.monotonic() + 5
    while not user_handler and time.monotonic() < deadline:
        time.sleep(0.01)
    assert user_handler == ["user"]


def test_a_timer_the_body_armed_rings_inside_the_scope(user_handler: list[str]) -> None:
    with portable_timeout(5) as scope:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        spin(0.4)
        assert user_handler == ["user"]
    assert not scope.fired


def test_a_repeating_timer_the_body_set_keeps_repeating(user_handler: list[str]) -> None:
    with portable_timeout(5), portable_timeout(4):
        signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
        spin(0.35)
    assert len(user_handler) >= 2
    assert signal.getitimer(signal.ITIMER_REAL)[1] == pytest.approx(0.1)
    signal.setitimer(signal.ITIMER_REAL, 0)
