"""No-signal mode: every limit of the main thread without SIGALRM, setitimer or SIGURG.

Two ways in, each in a fresh interpreter: `CELERY_TIMEOUTS_SIGNALS=off` on Linux, and a
platform that has none of them (Windows), imitated by deleting them from `signal` and
`_signal` before the package is imported. Then the watchdog times the main thread, the
stdlib's blocking calls end at the deadline there once patched, and `compat` emulates
SIGALRM there as in a worker thread. A real `-P solo` worker runs in the mode too.
"""

from __future__ import annotations

import json
import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery_harness import start_worker
from test_celery_limits import APP, ENABLED, LATENCY, fresh_redis, outcome, run_task

from conftest import run_python

pytest_plugins = ["celery_harness"]

NO_PLATFORM_SIGNALS = """
import signal, _signal
for module in (signal, _signal):
    for name in ("SIGALRM", "ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF", "setitimer",
                 "getitimer", "alarm", "SIGURG", "pthread_kill", "siginterrupt",
                 "ItimerError"):
        if hasattr(module, name):
            delattr(module, name)
"""

MAIN_THREAD_WITHOUT_SIGNALS = """
import json, signal, threading, time

from celery_timeouts import (
    BackendUnavailable, TaskTimeout, blocking, compat, detect_backend, portable_timeout,
)

report = {}
choice = detect_backend()
report["backend"], report["reason"] = choice.name, choice.reason


def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def timed(body):
    began = time.monotonic()
    try:
        body()
    except TaskTimeout as error:
        return [type(error).__name__, round(time.monotonic() - began, 3)]
    return ["finished", round(time.monotonic() - began, 3)]


def cpu():
    with portable_timeout(0.2) as scope:
        report["scope_backend"] = scope.backend
        spin(5)


report["cpu"] = timed(cpu)
try:
    with portable_timeout(1, backend="signal"):
        pass
except BackendUnavailable as error:
    report["signal_refused"] = str(error)

blocking.patch()


def sleeper():
    with portable_timeout(0.2):
        time.sleep(5)


report["sleep"] = timed(sleeper)


def cancelled():
    with portable_timeout(None) as scope:
        threading.Timer(0.2, scope.cancel).start()
        time.sleep(5)


report["cancel"] = timed(cancelled)
blocking.unpatch()

rang = []


def handler(signum, frame):
    rang.append(signum)
    raise RuntimeError("alarm")


compat.signal(compat.SIGALRM, handler)
compat.setitimer(compat.ITIMER_REAL, 0.2)
began = time.monotonic()
try:
    spin(5)
except RuntimeError:
    report["alarm"] = [rang, round(time.monotonic() - began, 3)]
report["alarm_left"] = compat.alarm(0)
compat.alarm(30)
report["pending"] = round(compat.getitimer(compat.ITIMER_REAL)[0])
compat.alarm(0)
if hasattr(signal, "SIGALRM"):  # no handler, no itimer of ours was ever set
    report["real_handler_untouched"] = signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    report["real_itimer_untouched"] = signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
print(json.dumps(report))
"""


def _report(prelude: str, env: dict[str, str]) -> dict[str, object]:
    completed = run_python(prelude + MAIN_THREAD_WITHOUT_SIGNALS, env=env, timeout=60)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def _assert_main_thread_served_by_the_watchdog(report: dict[str, object], why: str) -> None:
    assert report["backend"] == "thread", report
    assert why in str(report["reason"]), report
    assert report["scope_backend"] == "thread", report
    for name in ("cpu", "sleep", "cancel"):
        kind, seconds = report[name]  # type: ignore[misc]
        assert kind == "TaskTimeout", (name, report)
        assert 0.15 <= seconds < 1.5, (name, report)  # not the 5 s of the body
    assert "cannot run here" in str(report["signal_refused"]), report
    assert why in str(report["signal_refused"]), report
    rang, seconds = report["alarm"]  # type: ignore[misc]
    assert rang == [14] and 0.15 <= seconds < 1.5, report  # the emulated SIGALRM's number
    assert report["alarm_left"] == 0 and report["pending"] == 30, report


def test_signals_off_the_main_thread_is_served_by_the_watchdog() -> None:
    report = _report("", {"CELERY_TIMEOUTS_SIGNALS": "off"})
    _assert_main_thread_served_by_the_watchdog(report, "CELERY_TIMEOUTS_SIGNALS=off")
    assert report["real_handler_untouched"] is True, report
    assert report["real_itimer_untouched"] is True, report


def test_a_platform_without_signals_imports_and_times_the_main_thread() -> None:
    # As on Windows: no SIGALRM, setitimer, SIGURG nor pthread_kill at all.
    report = _report(NO_PLATFORM_SIGNALS, {})
    _assert_main_thread_served_by_the_watchdog(report, "this platform has no signal.SIGALRM")
    assert "real_handler_untouched" not in report


def test_a_bad_signals_setting_is_refused_naming_it() -> None:
    completed = run_python(
        "from celery_timeouts import portable_timeout\n"
        "with portable_timeout(1):\n"
        "    pass\n",
        env={"CELERY_TIMEOUTS_SIGNALS": "sometimes"},
    )
    assert completed.returncode == 1
    assert "CELERY_TIMEOUTS_SIGNALS='sometimes' is not a setting: use 'off'" in completed.stderr


def test_solo_worker_without_signals_enforces_both_limits(redis_url: str) -> None:
    """`-P solo` with signals off: the watchdog delivers into the main thread, and one
    long `time.sleep` (patched) ends at the soft limit there; a CPU loop at the hard one."""
    broker = fresh_redis(redis_url)
    env = {**ENABLED, "CELERY_TIMEOUTS_SIGNALS": "off"}
    with start_worker(APP, "solo", broker, env=env) as worker:
        assert "enforced by the watchdog thread in the main thread" in worker.log_text()
        slept = outcome(run_task(worker, "blocked", "sleep", soft=1, hard=3))
        spun = outcome(run_task(worker, "cpu_loop", 30, soft=None, hard=1))
        began = time.monotonic()
        assert worker.app.send_task(f"{APP}.add", args=[1, 2]).get(timeout=30) == 3
        served_in = time.monotonic() - began
    assert slept.state == "FAILURE" and isinstance(slept.result, SoftTimeLimitExceeded), slept
    assert 0.9 <= slept.seconds < 1 + LATENCY + 1, slept
    assert spun.state == "FAILURE" and isinstance(spun.result, TimeLimitExceeded), spun
    assert 0.9 <= spun.seconds < 1 + LATENCY + 1, spun
    assert served_in < 10, served_in


GREENLET_THAT_NEVER_YIELDS = """
import json, sys
LIBRARY = sys.argv[1] if len(sys.argv) > 1 else "{library}"
if LIBRARY == "gevent":
    from gevent import monkey
    monkey.patch_all()
    import gevent
    spawn, sleep = gevent.spawn, gevent.sleep
else:
    import eventlet
    eventlet.monkey_patch()
    spawn, sleep = eventlet.spawn, eventlet.sleep
import signal, time

from celery_timeouts import TaskTimeout, portable_timeout

results = {{}}


def spinner(name):
    began = time.monotonic()
    try:
        with portable_timeout(0.2):
            while time.monotonic() - began < 2:  # pure Python: never yields
                pass
        results[name] = ["finished", round(time.monotonic() - began, 3)]
    except TaskTimeout:
        results[name] = ["TaskTimeout", round(time.monotonic() - began, 3)]


def sleeper():
    try:
        with portable_timeout(0.2):
            sleep(5)
        results["sleeper"] = "finished"
    except TaskTimeout:
        results["sleeper"] = "TaskTimeout"


threads = [spawn(spinner, "first"), spawn(spinner, "second"), spawn(sleeper)]
for thread in threads:
    thread.wait() if LIBRARY == "eventlet" else thread.join()
results["sigurg_untouched"] = signal.getsignal(signal.SIGURG) == signal.SIG_DFL
print(json.dumps(results))
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_green_guard_without_sigurg(library: str) -> None:
    """Without signals, a greenlet that never yields is stopped only while it holds the
    hub's thread (through sys.monitoring on 3.12+, injected where it is paused on 3.10
    and 3.11; SIGURG untouched). A greenlet that yields is stopped by the hub's timer."""
    completed = run_python(
        GREENLET_THAT_NEVER_YIELDS.format(library=library),
        env={"CELERY_TIMEOUTS_SIGNALS": "off"}, timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert results["sleeper"] == "TaskTimeout", results
    assert results["sigurg_untouched"] is True, results
    for name in ("first", "second"):
        kind, seconds = results[name]
        assert kind == "TaskTimeout", results
        # The second waits for the first: one greenlet holds the thread at a time.
        assert 0.15 <= seconds < 2.0 + 1.5, results
    assert results["first"][1] < 1.5, results
