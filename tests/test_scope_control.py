"""`cancel()`, `reschedule()` and `move_on_after()` where the conformance cases do not
reach: asyncio tasks, real OS threads cancelling greenlets, a greenlet that never yields,
a worker thread blocked in a patched call, and the signal backend's cross-thread poke.

The same-context behaviour on every synchronous backend is in `tests/cases.py`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time

import pytest

from celery_timeouts import TaskTimeout, blocking, move_on_after, portable_timeout

from conftest import run_in_thread, run_python

SLACK = 1.0


def test_asyncio_cancel_from_another_thread_reschedule_and_move_on() -> None:
    async def main() -> dict[str, object]:
        seen: dict[str, object] = {}
        started = time.monotonic()
        with pytest.raises(TaskTimeout) as raised:
            async with portable_timeout(None) as scope:
                threading.Timer(0.1, scope.cancel).start()
                await asyncio.sleep(10)
        seen["cancel"] = (raised.value.cancelled, time.monotonic() - started, scope.backend)

        started = time.monotonic()
        with pytest.raises(TaskTimeout) as raised:
            async with portable_timeout(30) as scope:
                scope.reschedule(time.monotonic() + 0.1)
                await asyncio.sleep(10)
        seen["earlier"] = (raised.value.cancelled, time.monotonic() - started)

        async with portable_timeout(0.1) as scope:
            scope.reschedule(None)
            await asyncio.sleep(0.3)
        seen["none"] = scope.fired

        started = time.monotonic()
        async with move_on_after(0.1) as scope:
            await asyncio.sleep(10)
        seen["move_on"] = (scope.fired, time.monotonic() - started)
        task = asyncio.current_task()
        seen["cancelling"] = task.cancelling() if hasattr(task, "cancelling") else 0
        return seen

    seen = asyncio.run(main())
    cancelled, elapsed, backend = seen["cancel"]  # type: ignore[misc]
    assert cancelled and backend == "asyncio" and 0.09 <= elapsed < 0.1 + SLACK, seen
    cancelled, elapsed = seen["earlier"]  # type: ignore[misc]
    assert not cancelled and 0.09 <= elapsed < 0.1 + SLACK, seen
    assert seen["none"] is False
    fired, elapsed = seen["move_on"]  # type: ignore[misc]
    assert fired and 0.09 <= elapsed < 0.1 + SLACK, seen
    assert seen["cancelling"] == 0  # nothing left for an outer asyncio.timeout to count


def test_move_on_after_is_not_a_decorator() -> None:
    with pytest.raises(TypeError, match="move_on_after"):
        move_on_after(1)(lambda: None)


def test_a_thread_blocked_in_a_patched_sleep_is_cancelled_from_another_thread() -> None:
    blocking.patch()
    try:
        def body() -> tuple[BaseException | None, float]:
            started = time.monotonic()
            try:
                with portable_timeout(None) as scope:
                    threading.Timer(0.2, scope.cancel).start()
                    time.sleep(60)  # one long sleep, as tasks do
            except TaskTimeout as error:
                return error, time.monotonic() - started
            return None, time.monotonic() - started

        error, elapsed = run_in_thread(body)
    finally:
        blocking.unpatch()
    assert isinstance(error, TaskTimeout) and error.cancelled, error
    assert 0.19 <= elapsed < 0.2 + SLACK, elapsed


def test_signal_backend_poke_after_the_scope_is_gone_is_harmless() -> None:
    """A cancel from another thread racing the exit of the main thread's scope must
    neither kill the process (SIGALRM's default) nor reach the user's handler."""
    code = """
import json, signal, threading, time
from celery_timeouts import TaskTimeout, portable_timeout
calls = []
signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
outcomes = {"cancelled": 0, "finished": 0}
for round in range(300):
    scope = portable_timeout(30)
    def cancel():
        time.sleep(0.0005 * (round % 7))
        scope.cancel()
    canceller = threading.Thread(target=cancel)
    try:
        with scope:
            canceller.start()
            time.sleep(0.0005 * (round % 5))
        outcomes["finished"] += 1
    except TaskTimeout:
        outcomes["cancelled"] += 1
    canceller.join()
time.sleep(0.05)
print(json.dumps({"user_handler_calls": len(calls), **outcomes}))
"""
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["user_handler_calls"] == 0, report
    assert report["cancelled"] + report["finished"] == 300, report
    assert report["cancelled"] > 0, report
    assert signal.getsignal(signal.SIGALRM) is not None


GREEN_CONTROL_CODE = """
import json, time
library = {library!r}
if library == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    spawn, join, pause = gevent.spawn, (lambda g: g.get()), gevent.sleep
    os_thread = monkey.get_original("threading", "Thread")
    os_sleep = monkey.get_original("time", "sleep")
else:
    import eventlet; eventlet.monkey_patch()
    spawn, join, pause = eventlet.spawn, (lambda g: g.wait()), eventlet.sleep
    from eventlet import patcher
    os_thread = patcher.original("threading").Thread
    os_sleep = patcher.original("time").sleep
from celery_timeouts import TaskTimeout, portable_timeout
report = {{}}

def cancel_from_an_os_thread(box):
    def run():
        os_sleep(0.2)
        try:
            box["scope"].cancel()
            report["os_thread_" + box["name"]] = "ok"
        except RuntimeError as error:
            report["os_thread_" + box["name"]] = str(error)
    thread = os_thread(target=run, daemon=True)
    thread.start()
    return thread

def cpu_bound():
    box = {{"name": "cpu"}}
    started = time.monotonic()
    try:
        with portable_timeout(None) as scope:
            box["scope"] = scope
            cancel_from_an_os_thread(box)
            n = 0
            while time.monotonic() - started < 5:
                n += 1  # never yields
    except TaskTimeout as error:
        return [error.cancelled, time.monotonic() - started]
    return ["not cancelled", time.monotonic() - started]

def waiting():
    box = {{"name": "waiting"}}
    started = time.monotonic()
    try:
        with portable_timeout(30) as scope:
            box["scope"] = scope
            cancel_from_an_os_thread(box)
            pause(3)  # waits in the hub
    except TaskTimeout as error:
        return [error.cancelled, time.monotonic() - started]
    return ["not cancelled", time.monotonic() - started]

def from_another_greenlet():
    box = {{}}
    def body():
        started = time.monotonic()
        try:
            with portable_timeout(None) as scope:
                box["scope"] = scope
                pause(3)
        except TaskTimeout as error:
            return [error.cancelled, time.monotonic() - started]
        return ["not cancelled", time.monotonic() - started]
    green = spawn(body)
    pause(0.1)
    box["scope"].reschedule(time.monotonic() + 0.1)
    return join(green)

report["cpu"] = join(spawn(cpu_bound))
report["waiting"] = join(spawn(waiting))
report["greenlet"] = from_another_greenlet()
print(json.dumps(report))
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_green_scopes_are_cancelled_from_os_threads_and_greenlets(library: str) -> None:
    completed = run_python(GREEN_CONTROL_CODE.format(library=library))
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    cancelled, seconds = report["greenlet"]
    assert cancelled is False and 0.15 <= seconds < 0.2 + SLACK, report
    # Through gevent's thread-safe callback or eventlet's wake-up pipe, and the guard
    # for a green thread that never yields.
    for name in ("cpu", "waiting"):
        cancelled, seconds = report[name]
        assert cancelled is True and 0.19 <= seconds < 0.2 + SLACK, report
        assert report[f"os_thread_{name}"] == "ok", report


def test_connect_and_sendall_in_a_scope_without_a_limit_work_as_stock() -> None:
    """Calls that cannot be cut in rounds wait as stock when there is no deadline."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    blocking.patch()
    try:
        def body() -> bytes:
            with portable_timeout(None), socket.create_connection(server.getsockname()) as sock:
                sock.sendall(b"x" * 1000)
                peer, _ = server.accept()
                with peer:
                    return peer.recv(10)

        assert run_in_thread(body) == b"x" * 10
    finally:
        blocking.unpatch()
        server.close()


def test_cancels_racing_the_exit_never_leak_from_a_worker_thread() -> None:
    """Thread backend: cancel() from another thread at every moment around the end of
    the body; the timeout is raised by the scope or not at all, never outside it."""
    from celery_timeouts._unwind import ScopeTimeout

    def rounds() -> dict[str, int]:
        counts = {"cancelled": 0, "finished": 0, "leaked": 0}
        for index in range(600):
            scope = portable_timeout(30)
            delay = 0.0002 * (index % 9)
            canceller = threading.Timer(delay, scope.cancel)
            try:
                with scope:
                    canceller.start()
                    end = time.monotonic() + 0.0002 * (index % 7)
                    while time.monotonic() < end:
                        pass
                counts["finished"] += 1
            except TaskTimeout:
                counts["cancelled"] += 1
            canceller.join()
            try:
                for _ in range(50):  # checkpoints where a leaked timeout would surface
                    time.sleep(0)
            except ScopeTimeout:
                counts["leaked"] += 1
        return counts

    # With the default 5 ms switch interval the spinning body keeps the GIL past every
    # cancel (a race the cancel almost never wins): switch often, as the stress suite does.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        counts = run_in_thread(rounds)
    finally:
        sys.setswitchinterval(interval)
    assert counts["leaked"] == 0, counts
    assert counts["cancelled"] >= 5 and counts["finished"] >= 5, counts
