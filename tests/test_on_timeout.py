"""`scope.on_timeout` / `on_timeout`: deadline callbacks on every backend.

The shared cases (on_timeout_cases.py) run in each backend's real context; below them,
asyncio, and the use the callbacks exist for: a thread blocked in C that no injected
exception reaches (a raw lock, a socket read) made to return by a callback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from on_timeout_cases import CASES

from celery_timeouts import OnTimeout, TaskTimeout, on_timeout, portable_timeout

from conftest import run_in_thread

CONTEXTS = ["signal", "thread", "thread-in-main", "gevent", "eventlet"]
SLACK = 2.0  # seconds an interrupted wait may end late on a loaded 2-core machine


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("context", CONTEXTS)
def test_on_timeout_conformance(
    context: str, case: str, green_results: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    func = CASES[case]
    if context == "signal":
        func("signal")
    elif context == "thread":
        run_in_thread(lambda: func("thread"))
    elif context == "thread-in-main":
        monkeypatch.setenv("CELERY_TIMEOUTS_BACKEND", "thread")
        func("thread")
    else:
        outcome = green_results(context, "on_timeout_cases")[case]
        assert outcome == "ok", outcome


# -- asyncio ------------------------------------------------------------------------------


def test_asyncio_callback_runs_on_the_loop_before_the_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[tuple[str, bool, bool]] = []

    async def main() -> tuple[BaseException | None, OnTimeout, OnTimeout]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def record(tag: str) -> None:
            # A loop callback: this loop runs it, and the task is not cancelled yet.
            calls.append((tag, asyncio.get_running_loop() is loop, task.cancelled()))

        def broken() -> None:
            raise ValueError("broken on purpose")

        try:
            async with portable_timeout(0.2) as scope:
                kept = scope.on_timeout(record, "kept")
                scope.on_timeout(broken)
                cancelled = on_timeout(record, "cancelled")
                assert cancelled.cancel()
                await asyncio.sleep(10)
        except TaskTimeout as error:
            return error, kept, cancelled
        return None, kept, cancelled

    with caplog.at_level(logging.ERROR, logger="celery_timeouts"):
        error, kept, cancelled = asyncio.run(main())
    assert isinstance(error, TaskTimeout), error
    assert calls == [("kept", True, False)], calls
    assert kept.ran and cancelled.cancelled
    assert "broken" in caplog.text


def test_asyncio_callback_is_dropped_when_the_scope_exits() -> None:
    ran: list[str] = []

    async def main() -> OnTimeout:
        async with portable_timeout(0.1) as scope:
            handle = scope.on_timeout(ran.append, "late")
        await asyncio.sleep(0.3)
        return handle

    handle = asyncio.run(main())
    assert ran == [] and handle.cancelled


# -- the use it is for: unblocking calls in C --------------------------------------------


def _python_for(seconds: float) -> None:
    """Pure Python for `seconds`: where an injected timeout lands at once (a C call such
    as time.sleep here would hold it until it returned)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _timed_in_thread(body: Callable[[], Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        run_in_thread(body)
    except BaseException as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


def test_a_callback_releases_a_thread_blocked_on_a_raw_lock() -> None:
    """`Lock.acquire()` is C: an injected timeout waits for it to return (for ever)."""
    lock = threading.Lock()
    lock.acquire()
    handles: list[OnTimeout] = []

    def body() -> None:
        with portable_timeout(0.3):
            handles.append(on_timeout(lock.release))
            lock.acquire()  # blocks until the callback releases it
            _python_for(10)  # the timeout lands as soon as the thread runs Python again

    error, elapsed = _timed_in_thread(body)
    assert isinstance(error, TaskTimeout), error
    assert handles[0].ran and lock.locked()  # released by the callback, taken by the body
    assert 0.25 <= elapsed < 0.3 + SLACK, elapsed


def test_a_callback_ends_a_read_from_a_server_that_never_answers() -> None:
    """`sock.recv` on a socket without timeout: `shutdown` from the watchdog ends it."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        def body() -> None:
            with portable_timeout(0.3):
                on_timeout(client.shutdown, socket.SHUT_RDWR)
                client.recv(1024)  # the server never writes; shut down, it returns b""
                _python_for(10)  # the timeout lands as soon as the thread runs Python

        error, elapsed = _timed_in_thread(body)
        assert accepted.recv(1024) == b""  # the client side was shut down
    finally:
        for sock in (client, accepted, server):
            sock.close()
    assert isinstance(error, TaskTimeout), error
    assert 0.25 <= elapsed < 0.3 + SLACK, elapsed


def test_a_blocked_thread_without_a_callback_is_not_reached() -> None:
    """The control for the two tests above: without the callback, the lock holds."""
    lock = threading.Lock()
    lock.acquire()

    def body() -> None:
        with portable_timeout(0.2):
            lock.acquire(timeout=1.0)  # C: the timeout waits for it to return

    error, elapsed = _timed_in_thread(body)
    lock.release()
    assert elapsed >= 0.95, elapsed
    assert isinstance(error, TaskTimeout), error  # delivered once the call returned


def test_bad_callback_is_refused_with_the_fix() -> None:
    with portable_timeout(5) as scope, pytest.raises(TypeError, match=r"not conn\.cancel\(\)"):
        scope.on_timeout(None)  # type: ignore[arg-type]


def test_callbacks_run_once_before_a_patched_blocking_call_raises() -> None:
    """With celery_timeouts.blocking, the call itself may raise at the deadline before
    the watchdog gets there: the callbacks still run first, and once."""
    from celery_timeouts import blocking

    ran: list[str] = []

    def body() -> None:
        with portable_timeout(0.3):
            on_timeout(ran.append, "callback")
            try:
                time.sleep(10)  # patched: ends at the deadline, raising the timeout
            finally:
                ran.append("unwound")

    with blocking.patched():
        error, elapsed = _timed_in_thread(body)
    assert isinstance(error, TaskTimeout), error
    assert ran == ["callback", "unwound"], ran
    assert elapsed < 0.3 + SLACK, elapsed
