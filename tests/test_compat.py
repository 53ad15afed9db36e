"""celery_timeouts.compat: the SIGALRM idiom in any thread or greenlet, and patch()."""

from __future__ import annotations

import json
import signal as stdlib_signal
import threading
import time
from types import FrameType
from typing import Any

import pytest

from celery_timeouts import TaskTimeout
from celery_timeouts import compat as signal
from celery_timeouts._context import NO_SIGNALS

from conftest import TESTS, run_in_thread, run_python


def work(seconds: float) -> str:
    """Python code that runs well past its alarm unless interrupted."""
    end = time.monotonic() + seconds + 5
    while time.monotonic() < end:
        time.sleep(0.005)
    return "finished"


def snippet(seconds: int) -> tuple[str, float]:
    """The issue's snippet, verbatim but for the alarm's length; (outcome, elapsed)."""
    started = time.monotonic()
    try:

        def handler(signum, frame):  # type: ignore[no-untyped-def]
            raise TimeoutError("took too long")

        signal.signal(signal.SIGALRM, handler)
        signal.alarm(seconds)
        try:
            work(seconds)
        finally:
            signal.alarm(0)
    except TimeoutError as error:
        return repr(error), time.monotonic() - started
    return "finished", time.monotonic() - started


def test_snippet_in_the_main_thread_uses_the_real_sigalrm() -> None:
    """With signals (the default): the stdlib's own SIGALRM. Without (no-signal mode,
    the Windows path): the emulation, as in any other thread; the real one untouched."""
    assert threading.current_thread() is threading.main_thread()
    before = stdlib_signal.getsignal(stdlib_signal.SIGALRM)
    outcome, elapsed = snippet(1)
    assert outcome == "TimeoutError('took too long')"
    assert 0.9 <= elapsed < 2.0
    if NO_SIGNALS is not None:
        assert stdlib_signal.getsignal(stdlib_signal.SIGALRM) is before
        assert stdlib_signal.getitimer(stdlib_signal.ITIMER_REAL) == (0.0, 0.0)
        return
    # It is the stdlib's own disposition that changed, exactly as with `import signal`.
    assert stdlib_signal.getsignal(stdlib_signal.SIGALRM) is not before
    assert stdlib_signal.getitimer(stdlib_signal.ITIMER_REAL) == (0.0, 0.0)
    stdlib_signal.signal(stdlib_signal.SIGALRM, before)


def test_snippet_in_eight_threads_each_fires_at_its_own_time_in_its_own_thread() -> None:
    results: dict[int, tuple[str, str, float]] = {}
    bystander: list[str] = []

    def run(index: int) -> None:
        outcome, elapsed = snippet(1 + index % 3)
        results[index] = (threading.current_thread().name, outcome, elapsed)

    def no_alarm() -> None:
        bystander.append(work(1.5 - 5))  # runs 1.5 s, through the others' alarms

    threads = [threading.Thread(target=run, args=(i,), name=f"alarm-{i}") for i in range(8)]
    threads.append(threading.Thread(target=no_alarm))
    for thread in threads:
        thread.start()
    main_thread_ran = work(2.5 - 5)  # the main thread is not touched either
    for thread in threads:
        thread.join(10)
    assert main_thread_ran == "finished"
    assert bystander == ["finished"]
    assert sorted(results) == list(range(8))
    for index, (name, outcome, elapsed) in results.items():
        seconds = 1 + index % 3
        assert name == f"alarm-{index}"
        assert outcome == "TimeoutError('took too long')"
        assert seconds - 0.05 <= elapsed < seconds + 0.5, (index, elapsed)


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_snippet_in_a_hundred_green_threads(library: str) -> None:
    completed = run_python(
        f"import runpy, sys; sys.argv = ['runner', {library!r}]; "
        f"runpy.run_path({str(TESTS / 'compat_green_runner.py')!r}, run_name='__main__')"
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(report["results"]) == 100
    for result in report["results"]:
        assert result["outcome"] == "TimeoutError('took too long')"
        assert result["same_green_thread"]
        assert result["seconds"] - 0.05 <= result["elapsed"] < result["seconds"] + 0.5
        assert result["alarm_left"] == 0.0
    assert report["total"] < 4  # all at once, not one after another


CPU_BOUND_GREEN_CODE = """
import json, sys, time
library = sys.argv[1]
if library == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    spawn, joinall = gevent.spawn, gevent.joinall
else:
    import eventlet; eventlet.monkey_patch()
    spawn = eventlet.spawn
    def joinall(threads):
        for thread in threads:
            thread.wait()
from celery_timeouts import compat as signal

def spin(seconds):  # never yields to the hub
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

def snippet(index):
    def handler(signum, frame):
        raise TimeoutError(f"took too long: {index}, in {frame.f_code.co_name}()")
    signal.signal(signal.SIGALRM, handler)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        try:
            spin(5)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return "finished", time.monotonic() - started
    except TimeoutError as error:
        return str(error), time.monotonic() - started

def ticking():  # a repeating timer whose handler returns normally
    calls = []
    signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(time.monotonic()))
    signal.setitimer(signal.ITIMER_REAL, 0.2, 0.2)
    spin(1.1)
    signal.setitimer(signal.ITIMER_REAL, 0)
    return len(calls)

def no_alarm():
    started = time.monotonic()
    spin(0.5)
    return time.monotonic() - started

def ignored_alarm_beside_a_scope():  # an alarm due first must not hold back the scope
    from celery_timeouts import TaskTimeout, portable_timeout
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    started = time.monotonic()
    n = 0
    try:
        with portable_timeout(0.3):
            while n < 10**9:  # no call in it: on 3.13 only its back-jump sees signals
                n += 1
    except TaskTimeout:
        return "TaskTimeout", time.monotonic() - started
    return "finished", time.monotonic() - started

def leaves_a_repeating_timer():  # and ends: its timer must not keep the guard busy
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)

def handler_with_its_own_limit():  # a scope opened by the handler still fires
    from celery_timeouts import TaskTimeout, portable_timeout
    def handler(signum, frame):
        with portable_timeout(0.2):
            spin(5)
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    started = time.monotonic()
    try:
        spin(5)
    except TaskTimeout:
        return "TaskTimeout", time.monotonic() - started
    return "finished", time.monotonic() - started

threads = [spawn(snippet, index) for index in range(3)] + [spawn(ticking), spawn(no_alarm)]
threads += [spawn(ignored_alarm_beside_a_scope), spawn(handler_with_its_own_limit)]
threads += [spawn(leaves_a_repeating_timer)]
joinall(threads)
values = [thread.value if library == "gevent" else thread.wait() for thread in threads]
green_sleep = gevent.sleep if library == "gevent" else eventlet.sleep
green_sleep(0.3)
from celery_timeouts.backends import green_guard
guard = green_guard._guard
print(json.dumps(values[:-1] + [[len(guard._alarms), guard.ticking]]))
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
@pytest.mark.skipif(
    NO_SIGNALS is not None,
    reason="no-signal mode: a compat alarm of a green thread that never yields rings only "
    "once it yields (README, 'Without signals'); this runs in the default mode",
)
def test_alarms_reach_green_threads_that_never_yield(library: str) -> None:
    # The hub's timer cannot run while a green thread holds the CPU: the green guard
    # runs the handler in that green thread instead, as a real SIGALRM would.
    completed = run_python(
        f"import sys; sys.argv = ['runner', {library!r}]\n" + CPU_BOUND_GREEN_CODE
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    *snippets, ticks, no_alarm, beside_a_scope, in_handler, guard_state = report
    for index, (outcome, elapsed) in enumerate(snippets):
        assert outcome == f"took too long: {index}, in spin()"
        assert 0.29 <= elapsed < 1.5
    assert 3 <= ticks <= 5
    assert 0.5 <= no_alarm < 1.0  # spun its full time: nobody else's alarm landed there
    outcome, elapsed = beside_a_scope
    assert outcome == "TaskTimeout" and 0.29 <= elapsed < 1.5
    outcome, elapsed = in_handler
    assert outcome == "TaskTimeout" and 0.29 <= elapsed < 1.5
    assert guard_state == [0, False]  # nothing left armed, the guard idle


def test_alarm_returns_the_seconds_left_on_the_previous_alarm() -> None:
    def body() -> list[int]:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        returned = [signal.alarm(5)]  # nothing pending
        time.sleep(0.3)
        returned.append(signal.alarm(3))  # 4.7 s left: rounds to 5
        returned.append(signal.alarm(0))  # ~3 s left
        returned.append(signal.alarm(0))  # nothing pending any more
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        returned.append(signal.alarm(0))  # 0.2 s left: any time left counts as 1
        return returned

    assert run_in_thread(body) == [0, 5, 3, 0, 1]


def test_alarm_zero_cancels() -> None:
    calls: list[int] = []

    def body() -> str:
        signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
        signal.alarm(1)
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0.9
        signal.alarm(0)
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        return work(1.5 - 5)

    assert run_in_thread(body) == "finished"
    assert calls == []


def test_repeating_setitimer_calls_a_handler_that_returns_normally() -> None:
    calls: list[tuple[int, str, float]] = []

    def body() -> tuple[str, tuple[float, float]]:
        started = time.monotonic()

        def handler(signum: int, frame: FrameType | None) -> None:
            assert frame is not None
            calls.append((signum, frame.f_code.co_name, time.monotonic() - started))

        signal.signal(signal.SIGALRM, handler)
        assert signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1) == (0.0, 0.0)
        outcome = work(0.55 - 5)  # the handler returns: the work goes on to its end
        left = signal.setitimer(signal.ITIMER_REAL, 0)
        return outcome, left

    outcome, (left, interval) = run_in_thread(body)
    assert outcome == "finished"
    assert 0 < left <= 0.1 and interval == 0.1
    assert 4 <= len(calls) <= 6, calls
    for tick, (signum, where, at) in enumerate(calls, start=1):
        assert signum == signal.SIGALRM
        assert where in ("work", "sleep")  # the interrupted code's frame, not the watchdog's
        assert 0.1 * tick - 0.02 <= at < 0.1 * tick + 0.08, calls


class QuotaExceeded(Exception):
    def __init__(self, job: str, limit: int) -> None:
        super().__init__(job, limit)
        self.job = job
        self.limit = limit

    def __str__(self) -> str:
        return f"job {self.job} exceeded {self.limit} s"


def test_the_handlers_own_exception_surfaces_in_the_interrupted_thread() -> None:
    raised: list[BaseException] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        error = QuotaExceeded("report-7", 1)
        raised.append(error)
        raise error

    def body() -> BaseException:
        signal.signal(signal.SIGALRM, handler)
        signal.alarm(1)
        try:
            work(1)
        except Exception as error:  # an ordinary Exception: user code catches it
            return error
        finally:
            signal.alarm(0)
        raise AssertionError("not interrupted")

    caught = run_in_thread(body)
    assert caught is raised[0]  # the same object: same type, args and message
    assert type(caught) is QuotaExceeded
    assert caught.args == ("report-7", 1)
    assert str(caught) == "job report-7 exceeded 1 s"


def test_handlers_and_alarms_are_per_thread() -> None:
    seen: dict[str, Any] = {}
    ready = threading.Barrier(2)

    def first() -> None:
        def mine(signum: int, frame: FrameType | None) -> None:
            return None

        assert signal.signal(signal.SIGALRM, mine) == signal.SIG_DFL
        signal.alarm(30)
        ready.wait()
        ready.wait()  # the other thread looks now
        seen["first"] = (signal.getsignal(signal.SIGALRM) is mine, signal.alarm(0))

    def second() -> None:
        ready.wait()
        seen["second"] = (signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL))
        ready.wait()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen["first"] == (True, 30)
    assert seen["second"] == (signal.SIG_DFL, (0.0, 0.0))


def test_default_disposition_ends_the_threads_work_not_the_process() -> None:
    def body() -> str:
        signal.alarm(1)
        try:
            return work(1)
        finally:
            signal.alarm(0)

    with pytest.raises(TaskTimeout, match=r"exceeded 1 s timeout \(backend=thread\)"):
        run_in_thread(body)


def test_ignored_sigalrm_does_nothing() -> None:
    def body() -> str:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        return work(0.5 - 5)

    assert run_in_thread(body) == "finished"


def test_a_handler_still_running_when_the_alarm_is_cancelled_raises_nothing() -> None:
    calls: list[float] = []

    def slow_handler(signum: int, frame: FrameType | None) -> None:
        time.sleep(0.5)  # runs on the watchdog thread, while the owner goes on
        calls.append(time.monotonic())
        raise TimeoutError("too late to matter")

    def body() -> str:
        signal.signal(signal.SIGALRM, slow_handler)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        try:
            outcome = work(0.4 - 5)  # done at 0.4 s, while the handler still runs
        finally:
            signal.alarm(0)
        time.sleep(0.5)  # nothing lands after the alarm was cancelled
        return outcome

    assert run_in_thread(body) == "finished"
    assert len(calls) == 1


def test_the_thread_ending_before_its_alarm_is_harmless() -> None:
    run_in_thread(lambda: signal.setitimer(signal.ITIMER_REAL, 0.1))
    time.sleep(0.3)
    assert run_in_thread(lambda: "still fine") == "still fine"


def test_bad_input_names_the_value_and_the_fix() -> None:
    def body() -> None:
        with pytest.raises(TypeError, match=r"whole number of seconds, got 1\.5.*setitimer"):
            signal.alarm(1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"seconds >= 0 \(0 cancels\), got -1"):
            signal.alarm(-1)
        with pytest.raises(ValueError, match=r"interval must be a finite.*got nan"):
            signal.setitimer(signal.ITIMER_REAL, 1, float("nan"))
        with pytest.raises(TypeError, match=r"seconds must be a number of seconds, got '3'"):
            signal.setitimer(signal.ITIMER_REAL, "3")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"SIG_IGN, signal.SIG_DFL, or a callable.*got 'x'"):
            signal.signal(signal.SIGALRM, "x")  # type: ignore[arg-type]

    run_in_thread(body)


def test_other_signals_and_timers_behave_exactly_as_the_stdlib() -> None:
    assert signal.SIGINT is stdlib_signal.SIGINT
    assert signal.SIG_DFL is stdlib_signal.SIG_DFL
    assert signal.Signals is stdlib_signal.Signals
    assert "pause" in dir(signal)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        signal.nothing_here  # noqa: B018

    def body() -> None:
        with pytest.raises(ValueError, match="main thread"):
            signal.signal(signal.SIGTERM, lambda signum, frame: None)
        assert signal.getsignal(signal.SIGINT) is stdlib_signal.getsignal(stdlib_signal.SIGINT)
        # ITIMER_VIRTUAL counts the process's CPU time: it is the stdlib's, process-wide.
        assert signal.setitimer(signal.ITIMER_VIRTUAL, 0) == stdlib_signal.getitimer(
            stdlib_signal.ITIMER_VIRTUAL
        )

    run_in_thread(body)


# -- patch() ---------------------------------------------------------------------------------

PATCHED_NAMES = ("signal", "getsignal", "alarm", "setitimer", "getitimer")


def test_patch_makes_a_third_party_module_work_in_a_worker_thread() -> None:
    import legacy_alarm_module

    with pytest.raises(ValueError, match="signal only works in main thread"):
        run_in_thread(lambda: legacy_alarm_module.run_with_alarm(1, lambda: work(1)))

    with signal.patched():
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="took too long"):
            run_in_thread(lambda: legacy_alarm_module.run_with_alarm(1, lambda: work(1)))
        assert 0.95 <= time.monotonic() - started < 1.5
        assert run_in_thread(lambda: legacy_alarm_module.run_with_alarm(1, lambda: "quick"))


def test_unpatch_restores_the_very_same_objects_and_patch_is_idempotent() -> None:
    originals = {name: getattr(stdlib_signal, name) for name in PATCHED_NAMES}
    signal.patch()
    signal.patch()
    try:
        assert signal.is_patched()
        for name in PATCHED_NAMES:
            assert getattr(stdlib_signal, name) is getattr(signal, name)
    finally:
        signal.unpatch()
    signal.unpatch()
    assert not signal.is_patched()
    for name in PATCHED_NAMES:
        assert getattr(stdlib_signal, name) is originals[name]


def test_patched_leaves_other_signals_untouched() -> None:
    sigint_before = stdlib_signal.getsignal(stdlib_signal.SIGINT)
    sigterm_before = stdlib_signal.getsignal(stdlib_signal.SIGTERM)
    received: list[int] = []
    with signal.patched():
        assert stdlib_signal.getsignal(stdlib_signal.SIGINT) is sigint_before
        previous = stdlib_signal.signal(
            stdlib_signal.SIGTERM, lambda signum, frame: received.append(signum)
        )
        assert previous is sigterm_before
        stdlib_signal.raise_signal(stdlib_signal.SIGTERM)
        time.sleep(0.01)
        stdlib_signal.signal(stdlib_signal.SIGTERM, previous)

        def in_thread() -> None:
            with pytest.raises(ValueError, match="main thread"):
                stdlib_signal.signal(stdlib_signal.SIGINT, stdlib_signal.SIG_IGN)

        run_in_thread(in_thread)
    assert received == [stdlib_signal.SIGTERM]
    assert stdlib_signal.getsignal(stdlib_signal.SIGINT) is sigint_before
    assert stdlib_signal.getsignal(stdlib_signal.SIGTERM) is sigterm_before


def test_portable_timeout_still_works_in_the_main_thread_while_patched() -> None:
    from celery_timeouts import portable_timeout

    # (The main thread's own backend: SIGALRM, or the watchdog in no-signal mode.)
    with signal.patched(), pytest.raises(TaskTimeout), portable_timeout(0.1):
        work(0.1)


# Calls the stdlib rejects in the main thread: off it, compat must reject them too, with
# the same exception type (compared live, so it holds on every Python version).
STDLIB_REJECTS = [
    pytest.param("alarm", (2**31,), id="alarm-beyond-c-int"),
    pytest.param("setitimer", (stdlib_signal.ITIMER_REAL, 1e300), id="setitimer-1e300"),
    pytest.param("setitimer", (stdlib_signal.ITIMER_REAL, float("inf")), id="setitimer-inf"),
    pytest.param("setitimer", (stdlib_signal.ITIMER_REAL, 1, 1e300), id="interval-1e300"),
    pytest.param("setitimer", (0.0, 1), id="setitimer-float-which"),
    pytest.param("getitimer", (0.0,), id="getitimer-float-which"),
    pytest.param("getsignal", (14.0,), id="getsignal-float-signum"),
]


def stdlib_rejection(name: str, arguments: tuple[Any, ...]) -> type[BaseException]:
    try:
        getattr(stdlib_signal, name)(*arguments)
    except Exception as error:
        return type(error)
    finally:
        stdlib_signal.setitimer(stdlib_signal.ITIMER_REAL, 0)
    raise AssertionError(f"the stdlib accepted {name}{arguments}")


@pytest.mark.parametrize(("name", "arguments"), STDLIB_REJECTS)
def test_off_the_main_thread_compat_rejects_what_the_stdlib_rejects(
    name: str, arguments: tuple[Any, ...]
) -> None:
    expected = stdlib_rejection(name, arguments)

    def body() -> None:
        with pytest.raises(expected, match=r"got .*; use "):
            getattr(signal, name)(*arguments)
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # nothing was armed

    run_in_thread(body)


def test_the_largest_values_the_stdlib_takes_are_taken_off_the_main_thread() -> None:
    def body() -> tuple[float, int]:
        signal.setitimer(signal.ITIMER_REAL, 9.2e9)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        signal.alarm(2**31 - 1)
        return left, signal.alarm(0)

    left, alarm_left = run_in_thread(body)
    assert 9.1e9 < left <= 9.2e9
    assert alarm_left == 2**31 - 1
