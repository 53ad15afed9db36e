"""The watchdog backend: worker threads, one watchdog, landing never outside the scope."""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor

from celery_timeouts import TaskTimeout, portable_timeout
from celery_timeouts._unwind import ScopeTimeout

from conftest import run_in_thread, run_python


def test_hundred_threads_each_fire_at_their_own_time() -> None:
    def job(index: int) -> tuple[int, float, bool]:
        limit = 0.1 + (index % 5) * 0.1
        started = time.monotonic()
        try:
            with portable_timeout(limit):
                while True:
                    pass
        except TaskTimeout:
            return index, time.monotonic() - started - limit, True
        return index, 0.0, False

    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(job, range(100)))
    assert all(fired for _, _, fired in results)
    assert max(late for _, late, _ in results) < 2.0  # 100 CPU-bound threads share one GIL


def test_blocked_in_c_at_the_end_of_the_body_does_not_leak() -> None:
    """An injection made while the thread sits in a C iterator at the very end of the
    body would land in __exit__ and escape the `with` (see tests of CPython itself);
    the watchdog waits for a safe landing instead."""

    def job() -> str:
        leaks = 0
        outcomes = []
        for _ in range(5):
            try:
                with portable_timeout(0.05):
                    for _ in iter(functools.partial(time.sleep, 0.2), None):
                        pass
                outcomes.append("completed")
            except TaskTimeout:
                outcomes.append("timeout")
            try:
                for _ in range(2000):  # checkpoints where a leaked timeout would surface
                    time.sleep(0)
            except ScopeTimeout:
                leaks += 1
        return f"{leaks} leaks, {outcomes}"

    result = run_in_thread(job)
    assert result.startswith("0 leaks"), result


def test_cooperative_sleep_is_interrupted_in_a_worker_thread() -> None:
    from celery_timeouts import sleep

    def job() -> float:
        started = time.monotonic()
        try:
            with portable_timeout(0.1):
                sleep(10)
        except TaskTimeout:
            return time.monotonic() - started
        return -1.0

    elapsed = run_in_thread(job)
    assert 0.09 <= elapsed < 1.0, elapsed


def test_one_watchdog_thread_for_a_thousand_scopes() -> None:
    completed = run_python(
        """
import threading, time
from celery_timeouts import portable_timeout
before = threading.active_count()
release = threading.Event()
entered = threading.Semaphore(0)
def body():
    with portable_timeout(60):
        entered.release()
        release.wait()
threads = [threading.Thread(target=body) for _ in range(1000)]
for t in threads: t.start()
for _ in threads: entered.acquire()
during = threading.active_count()
names = sorted({t.name for t in threading.enumerate() if 'watchdog' in t.name})
release.set()
for t in threads: t.join()
print(during - before - 1000, names)
"""
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "1 ['celery-timeouts-watchdog']", completed.stdout


def test_forked_child_keeps_its_scope() -> None:
    completed = run_python(
        """
import os, sys, threading, time
from celery_timeouts import portable_timeout, TaskTimeout
def wait_at_most(seconds):
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(0.001)
def job():
    with portable_timeout(0.3):
        pid = os.fork()
        try:
            wait_at_most(5)  # bounded: a lost deadline ends too
            if pid == 0:
                os._exit(5)
        except BaseException:
            if pid == 0:
                os._exit(0 if sys.exc_info()[0].__name__ == 'ScopeTimeout' else 3)
            raise
result = {}
def run():
    try:
        job()
    except TaskTimeout:
        result['parent'] = 'timeout'
t = threading.Thread(target=run); t.start(); t.join()
_, status = os.wait()
print(result.get('parent'), os.waitstatus_to_exitcode(status))
"""
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "timeout 0", completed.stdout


def test_timeout_delivered_at_the_entry_of_exit_is_settled_there() -> None:
    # Python 3.13 delivers an asynchronous exception at the thread's *next* check, not
    # where the thread was interrupted (cpython#139622). Here the thread is interrupted
    # in a loop whose next check is the first instruction of `__exit__`: the timeout
    # must still surface as the scope's TaskTimeout, with the scope fully left.
    import sys
    import threading

    from celery_timeouts import current_scope
    from celery_timeouts._unwind import injectable
    from celery_timeouts.backends import get_backend
    from celery_timeouts.backends.watchdog import _set_async_exc

    watchdog = get_backend("thread")
    state: dict[str, object] = {"go": False}
    entered = threading.Event()

    def target() -> None:
        scope = portable_timeout(60, backend="thread")
        scope.__enter__()
        state["scope"] = scope
        entered.set()
        try:
            try:
                while not state["go"]:
                    pass
            except ScopeTimeout as landed:  # delivered in the loop (Python < 3.13)
                state["where"] = "loop"
                scope.__exit__(type(landed), landed, landed.__traceback__)
            else:
                scope.__exit__(None, None, None)  # 3.13: delivered right at its entry
                state["where"] = "nowhere"
        except TaskTimeout as timeout:
            state.setdefault("where", "exit")
            state["raised"] = timeout
        state["left"] = (scope.state.value, current_scope())

    thread = threading.Thread(target=target)
    thread.start()
    assert entered.wait(5)
    time.sleep(0.05)  # the target spins; taking the GIL back suspends it in its loop
    interval = sys.getswitchinterval()
    sys.setswitchinterval(100)  # keep the GIL until both are done
    try:
        scope = state["scope"]
        with watchdog._lock:
            watchdog._pending[scope._thread_id] = scope  # as the watchdog records it
            scope._fired = True
            _set_async_exc(scope._thread_id, injectable(scope))
            state["go"] = True
    finally:
        sys.setswitchinterval(interval)
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(state.get("raised"), TaskTimeout), state
    assert state["left"] == ("exited", None)
    assert not watchdog._pending
    if sys.version_info >= (3, 13):
        assert state["where"] == "exit"


def test_while_loop_directly_inside_the_scope_never_leaks() -> None:
    # On Python 3.13 the loop's closing jump is outside its handlers (cpython#130279) and
    # the watchdog's exception lands at the next check (cpython#139622): the watchdog
    # will not deliver into such a frame. The timeout then surfaces as the scope exits.
    import sys

    def job() -> float:
        started = time.monotonic()
        try:
            with portable_timeout(0.05):
                while time.monotonic() - started < 0.5:
                    pass
        except TaskTimeout:
            return time.monotonic() - started
        raise AssertionError("no timeout")

    for _ in range(10):
        elapsed = run_in_thread(job)
        if sys.version_info < (3, 13):
            assert elapsed < 0.45  # interrupted inside the loop
        else:
            assert elapsed >= 0.5  # raised as the scope exits
