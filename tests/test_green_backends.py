"""gevent and eventlet in real monkey-patched processes: 100 greenlets, each its own limit."""

from __future__ import annotations

import json

import pytest

from conftest import run_python

CODE = """
import json, sys, time
library = sys.argv[-1] if False else {library!r}
if library == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    spawn, wait_all = gevent.spawn, lambda gs: [g.get() for g in gs]
else:
    import eventlet; eventlet.monkey_patch()
    spawn, wait_all = eventlet.spawn, lambda gs: [g.wait() for g in gs]
from celery_timeouts import TaskTimeout, portable_timeout, detect_backend

def one(index):
    limit = 0.2 + (index % 4) * 0.1
    started = time.monotonic()
    try:
        with portable_timeout(limit) as scope:
            time.sleep(10)  # patched: yields to the hub
    except TaskTimeout:
        return [scope.backend, time.monotonic() - started - limit]
    return ["not fired", 0]

started = time.monotonic()
results = wait_all([spawn(one, i) for i in range(100)])
print(json.dumps({{"total": time.monotonic() - started, "results": results,
                   "backend": detect_backend().name}}))
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_hundred_greenlets_fire_in_parallel(library: str) -> None:
    completed = run_python(CODE.format(library=library))
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    backends = {backend for backend, _ in report["results"]}
    assert backends == {library}, backends
    assert max(late for _, late in report["results"]) < 0.5
    assert report["total"] < 2.0  # in parallel: about the longest limit, not the sum


GUARD_CODE = """
import json, logging, os, signal, sys, time
library = {library!r}
if library == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    spawn, join, green_sleep = gevent.spawn, (lambda g: g.get()), gevent.sleep
else:
    import eventlet; eventlet.monkey_patch()
    spawn, join, green_sleep = eventlet.spawn, (lambda g: g.wait()), eventlet.sleep
from celery_timeouts import TaskTimeout, portable_timeout

def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

def cpu_under_limit(limit):
    started = time.monotonic()
    try:
        with portable_timeout(limit) as scope:
            spin(10)
    except TaskTimeout:
        return [scope.backend, time.monotonic() - started]
    return ["not fired", time.monotonic() - started]

def sleeper(limit):
    started = time.monotonic()
    try:
        with portable_timeout(limit):
            green_sleep(5)
    except TaskTimeout:
        return ["fired", time.monotonic() - started]
    return ["not fired", time.monotonic() - started]

def hog(seconds):
    try:
        spin(seconds)
    except BaseException as error:
        return "interrupted: " + type(error).__name__
    return "finished"

def soft_then_hard():
    # A catchable inner scope (Celery's soft limit) caught by a body that keeps spinning:
    # the outer one must still stop it.
    started = time.monotonic()
    caught = []
    try:
        with portable_timeout(0.6, exception=KeyboardInterrupt):
            with portable_timeout(0.2, exception=LookupError, catchable=True):
                try:
                    spin(10)
                except LookupError:
                    caught.append(time.monotonic() - started)
                spin(10)
    except KeyboardInterrupt:
        return [caught, time.monotonic() - started]
    return [caught, "outer did not fire"]

def call_free_loop(limit):
    # No call in the loop: its back-jump is the only place a signal is handled, and on
    # Python 3.13 that jump lies outside the try around the loop (cpython#130279).
    started = time.monotonic()
    i = 0
    try:
        with portable_timeout(limit):
            while i < 10 ** 9:
                i += 1
    except TaskTimeout:
        return time.monotonic() - started
    return "not fired"

report = {{}}
report["cpu"] = [join(spawn(cpu_under_limit, 0.2)) for _ in range(5)]
report["call_free"] = [join(spawn(call_free_loop, 0.1)) for _ in range(3)]
# A sleeping greenlet's deadline passes while another greenlet, with no scope, holds the
# CPU: the signal must not land in the hog; the sleeper gets its timeout afterwards.
sleeping, hogging = spawn(sleeper, 0.1), spawn(hog, 0.5)
report["sleeper"], report["hog"] = join(sleeping), join(hogging)
report["soft_then_hard"] = join(spawn(soft_then_hard))
# Outside every scope a SIGURG changes nothing, as its default (ignore) would.
os.kill(os.getpid(), signal.SIGURG)
spin(0.05)
report["handler"] = getattr(signal.getsignal(signal.SIGURG), "__qualname__", "other")
print(json.dumps(report))
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_a_greenlet_that_never_yields_is_stopped_at_its_deadline(library: str) -> None:
    completed = run_python(GUARD_CODE.format(library=library))
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    for backend, seconds in report["cpu"]:
        assert backend == library
        # The guard looks every 20 ms and gives the hub 10 ms first.
        assert 0.2 <= seconds < 0.45, report["cpu"]
    for seconds in report["call_free"]:
        assert isinstance(seconds, float) and 0.1 <= seconds < 0.35, report["call_free"]
    assert report["hog"] == "finished", report  # never the wrong greenlet
    state, seconds = report["sleeper"]
    assert state == "fired" and seconds >= 0.45, report["sleeper"]
    caught, total = report["soft_then_hard"]
    assert len(caught) == 1 and 0.2 <= caught[0] < 0.45, report["soft_then_hard"]
    assert isinstance(total, float) and 0.6 <= total < 0.85, report["soft_then_hard"]
    assert report["handler"] == "GreenGuard._on_signal"


TAKEN_CODE = """
import json, signal, sys, time
library = {library!r}
def theirs(signum, frame):
    pass
signal.signal(signal.SIGURG, theirs)  # the process already uses SIGURG
if library == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    spawn, join = gevent.spawn, (lambda g: g.get())
else:
    import eventlet; eventlet.monkey_patch()
    spawn, join = eventlet.spawn, (lambda g: g.wait())
from celery_timeouts import TaskTimeout, portable_timeout

def yielding():
    try:
        with portable_timeout(0.1):
            time.sleep(2)  # patched: yields, so the hub's timer still works
    except TaskTimeout:
        return "fired"
    return "not fired"

result = join(spawn(yielding))
print(json.dumps([result, signal.getsignal(signal.SIGURG) is theirs]))
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_a_sigurg_handler_of_the_process_is_left_alone(library: str) -> None:
    completed = run_python(TAKEN_CODE.format(library=library))
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == ["fired", True]
    assert "SIGURG already has a handler" in completed.stderr
