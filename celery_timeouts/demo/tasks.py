"""The demo's Celery app: tasks that outlive their limits, run by the demo's worker processes.

The worker reads its broker from the environment (`workers.configure_from_env`).
With ``CT_ENABLE_LIMITS=1`` it calls `enable_time_limits(app)` and `compat.patch()`, so
the alarm-style task's plain ``import signal`` code gets a per-thread/per-greenlet alarm;
without it the worker is stock Celery, to show what celery-timeouts changes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from celery import Celery, current_task, signals
from celery.exceptions import SoftTimeLimitExceeded

from celery_timeouts import compat, enable_time_limits
from celery_timeouts.demo.scenario import (
    ALARM_DID_NOT_FIRE,
    ALARM_FIRED,
    ENABLE_LIMITS,
    FINISHED,
    SOFT_LIMIT_CAUGHT_AT,
    STARTED_AT,
)
from celery_timeouts.demo.workers import configure_from_env

app = configure_from_env(Celery("celery_timeouts.demo.tasks"))
# The demo never sends control commands: no pidbox to poll on the filesystem transport.
app.conf.worker_enable_remote_control = False
if os.environ.get(ENABLE_LIMITS) == "1":
    enable_time_limits(app)
    compat.patch()
# Celery ships no type information: say once what its decorator keeps of a task.
celery_task: Callable[[Callable[[float], str]], Callable[[float], str]] = app.task
server_task: Callable[[Callable[[float, int], str]], Callable[[float, int], str]] = app.task


def _store_start(task_id: str, task: Any, **_: Any) -> None:
    """Store STARTED with the worker's clock: the demo counts a task's seconds from there,
    not from its sending (Redis under gevent and eventlet takes up to a second to deliver)."""
    task.backend.store_result(task_id, {STARTED_AT: time.time()}, "STARTED", request=task.request)


signals.task_prerun.connect(_store_start, weak=False)


@celery_task
def cpu_bound(seconds: float) -> str:
    """Pure Python work that never blocks: only an asynchronous exception stops it."""
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1
    return FINISHED


@celery_task
def blocking_sleep(seconds: float) -> str:
    """Waits in short blocking sleeps, as most polling code does."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    return FINISHED


@celery_task
def one_long_sleep(seconds: float) -> str:
    """One blocking call, as tasks that wait for something write it."""
    time.sleep(seconds)
    return FINISHED


@server_task
def read_silent_server(seconds: float, port: int) -> str:
    """A read from a server that accepts and never answers (the demo's, on 127.0.0.1),
    with a read timeout of `seconds`, as an HTTP or database client would have."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=seconds) as connection,
        contextlib.suppress(TimeoutError),  # socket.timeout: the client gives up, as set
    ):
        connection.recv(1024)
    return FINISHED


def _store_soft_limit_caught(started: float) -> None:
    """Add to the STARTED meta when the soft limit was caught: the demo reads it while the
    task runs (the hard limit's result replaces the meta)."""
    meta = {STARTED_AT: started, SOFT_LIMIT_CAUGHT_AT: time.time()}
    request = current_task.request
    current_task.backend.store_result(request.id, meta, "STARTED", request=request)


@celery_task
def ignores_soft_limit(seconds: float) -> str:
    """Polls like `blocking_sleep`, but catches SoftTimeLimitExceeded (and any Exception)
    and goes on, as code that must not give up does: only the hard limit can end it.

    celery-timeouts raises the hard limit as a BaseException, which `except Exception:`
    does not catch; prefork kills the process; stock gevent's Timeout is a BaseException.
    """
    started = time.time()  # the STARTED meta's, give or take the prerun signal
    end = time.monotonic() + seconds
    while True:
        # The whole loop inside the try: a limit may land between two sleeps.
        try:
            while time.monotonic() < end:
                time.sleep(0.05)
            return FINISHED
        except SoftTimeLimitExceeded:
            _store_soft_limit_caught(started)
        except Exception:  # whatever else goes wrong, this task keeps at it
            continue


class AlarmTimeout(Exception):
    """The alarm-style task's own timeout, raised by its SIGALRM handler."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise AlarmTimeout("SIGALRM after 1 s")


@celery_task
def alarm_style(seconds: float) -> str:
    """The classic stdlib SIGALRM timeout around `seconds` of polling, with a 1 s alarm."""
    signal.signal(signal.SIGALRM, _on_alarm)  # celery-timeouts: ignore (the pattern on show)
    signal.alarm(1)  # celery-timeouts: ignore (the pattern on show)
    try:
        blocking_sleep(seconds)
    except AlarmTimeout:
        return ALARM_FIRED
    finally:
        signal.alarm(0)  # celery-timeouts: ignore (the pattern on show)
    return ALARM_DID_NOT_FIRE
