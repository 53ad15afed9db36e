"""Tasks that outlive their limits, for real workers of every pool.

`CT_ENABLE_LIMITS=1` in the worker's environment calls `enable_time_limits(app)`;
without it the worker is stock Celery (to show what celery-timeouts changes).
`CT_INTERRUPT_BLOCKING=0` passes `interrupt_blocking=False`.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import threading
import time

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from celery_apps.common import configure_from_env
from celery_timeouts import compat, enable_time_limits, on_timeout

app = configure_from_env(Celery("limits_app"))
# Limits from the app's configuration, for tasks that set none: CT_CONFIG_LIMITS="1,3".
if os.environ.get("CT_CONFIG_LIMITS"):
    soft_limit, hard_limit = (float(x) for x in os.environ["CT_CONFIG_LIMITS"].split(","))
    app.conf.task_soft_time_limit, app.conf.task_time_limit = soft_limit, hard_limit
if os.environ.get("CT_ENABLE_LIMITS") == "1":
    cap = os.environ.get("CT_MAX_ABANDONED")
    enable_time_limits(
        app, max_abandoned_threads=int(cap) if cap else None,
        interrupt_blocking=os.environ.get("CT_INTERRUPT_BLOCKING") != "0",
    )


if os.environ.get("CT_STACKS_FILE"):  # SIGUSR2 writes every thread's stack there
    import faulthandler
    import signal as _signal

    _stacks = open(os.environ["CT_STACKS_FILE"], "w")  # noqa: SIM115 (for the process's life)
    faulthandler.register(_signal.SIGUSR2, file=_stacks, all_threads=True)

if os.environ.get("CT_REVOKED_FILE"):
    from celery import signals

    @signals.task_revoked.connect(weak=False)
    def _note_revoked(request=None, terminated=None, signum=None, **_):  # type: ignore[no-untyped-def]
        """One line per `task_revoked` signal: task id, terminated, signal number."""
        with open(os.environ["CT_REVOKED_FILE"], "a") as revoked:
            revoked.write(f"{request.id} {terminated} {int(signum or 0)}\n")


def _pause(seconds: float) -> None:
    """A short blocking sleep: the real time.sleep, or the hub's under gevent/eventlet."""
    time.sleep(seconds)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def cpu_loop(seconds: float) -> str:
    """Pure Python work: only an asynchronous exception stops it."""
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1
    return "finished"


@app.task
def sleepy(seconds: float) -> str:
    """Polls with short sleeps, as most waiting code does."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _pause(0.05)
    return "finished"


@app.task(soft_time_limit=1, time_limit=3)
def decorated(seconds: float) -> str:
    """Its limits come from the task decorator."""
    return stubborn(seconds)


@app.task
def cleans_up(seconds: float) -> str:
    """Catches the soft limit, as Celery documents, and returns after cleaning up."""
    try:
        sleepy(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task
def stubborn(seconds: float) -> str:
    """Catches the soft limit and every Exception, and keeps working: only the hard
    limit can end it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sleepy(end - time.monotonic())
        except Exception:
            continue
    return "finished"


@app.task
def stubborn_cpu(seconds: float) -> str:
    """As `stubborn`, but never yields or sleeps: on gevent and eventlet only the green
    guard's signal can stop it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            cpu_loop(end - time.monotonic())
        except Exception:
            continue
    return "finished"


@app.task
def stuck(seconds: float) -> str:
    """One long wait in C that no patch reaches (a raw lock): a worker thread cannot be
    interrupted inside it."""
    lock = threading.Lock()
    lock.acquire()
    lock.acquire(timeout=seconds)
    return "finished"


def _block_once(kind: str, port: int, pid_file: str) -> None:
    """One call that blocks for far longer than any limit, of the kind users write."""
    if kind == "sleep":
        time.sleep(30)
    elif kind == "socket":  # a local server that accepts and never answers
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.recv(1024)
    elif kind == "queue":
        queue.Queue().get()
    elif kind == "event":
        threading.Event().wait()
    elif kind == "lock":  # C that no patch reaches: a callback releases it at the limit
        lock = threading.Lock()
        lock.acquire()
        on_timeout(lock.release)
        lock.acquire()
        time.sleep(30)  # the timeout lands as the acquire returns: never reached
    elif kind == "subprocess":
        child = subprocess.Popen(["sleep", "30"])
        with open(pid_file, "a") as pids:
            pids.write(f"{child.pid}\n")
        child.wait()
    else:
        raise ValueError(f"unknown kind of blocking call: {kind!r}")


@app.task
def blocked(kind: str, port: int = 0, pid_file: str = "") -> str:
    """Blocked in one call: the soft limit ends it (the task does not catch it)."""
    _block_once(kind, port, pid_file)
    return "finished"


@app.task
def blocked_twice(kind: str, port: int = 0, pid_file: str = "") -> str:
    """Catches the soft limit and blocks again: only the hard limit ends it."""
    try:
        _block_once(kind, port, pid_file)
    except SoftTimeLimitExceeded:
        _block_once(kind, port, pid_file)
    return "finished"


@app.task
def alarm_style(seconds: int) -> str:
    """The SIGALRM idiom, written with celery_timeouts.compat: works on every pool."""

    def handler(signum, frame):  # type: ignore[no-untyped-def]
        raise TimeoutError("took too long")

    compat.signal(compat.SIGALRM, handler)
    compat.alarm(seconds)
    try:
        sleepy(seconds + 5)
    except TimeoutError:
        return "alarm fired"
    finally:
        compat.alarm(0)
    return "alarm did not fire"


@app.task
def swallows(seconds: float) -> str:
    """Catches everything, the hard limit's unwinding included, and returns a value."""
    try:
        sleepy(seconds)
    except BaseException:
        return "swallowed"
    return "finished"


@app.task
def swallows_again(kind: str, times: int, catches_file: str) -> str:
    """Catches the hard limit's unwinding `times` times (noting when), working on after
    each: only its delivery, again and again, ends it. `kind`: "sleep" or "cpu"."""
    began = time.monotonic()
    caught = 0
    while True:
        try:
            sleepy(60) if kind == "sleep" else cpu_loop(60)
            return "finished"
        except BaseException:
            caught += 1
            with open(catches_file, "a") as catches:
                catches.write(f"{time.monotonic() - began:.3f}\n")
            if caught >= times:
                raise


@app.task
def swallows_for(seconds: float) -> str:
    """A CPU loop that catches every delivery of its hard limit for `seconds`, then lets
    the next one through (a greenlet like this holds the whole worker meanwhile)."""
    began = time.monotonic()
    while True:
        try:
            cpu_loop(60)
        except BaseException:
            if time.monotonic() - began >= seconds:
                raise


@app.task
def swallows_cpu(seconds: float) -> str:
    """As `swallows`, in a loop that never yields (gevent: only the green guard stops it)."""
    try:
        cpu_loop(seconds)
    except BaseException:
        return "swallowed"
    return "finished"


@app.task
def heartbeat(path: str, kind: str) -> str:
    """Writes the time to `path` while it runs: in a CPU loop that never yields
    ("cpu"), or once before one long sleep ("sleep"). `path`.after is written only if it
    runs to its end; `path`.finally by its `finally:` (a terminate unwinds through it)."""

    def beat() -> None:  # whole or not at all: written aside, then renamed into place
        with open(path + ".tmp", "w") as pending:
            pending.write(repr(time.time()))
        os.replace(path + ".tmp", path)

    try:
        if kind == "cpu":
            end = time.monotonic() + 60
            next_beat = 0.0
            while time.monotonic() < end:
                if time.monotonic() >= next_beat:
                    beat()
                    next_beat = time.monotonic() + 0.02
        else:
            beat()
            time.sleep(60)
        with open(path + ".after", "w") as after:
            after.write("ran to its end")
        return "finished"
    finally:
        with open(path + ".finally", "w") as done:
            done.write(repr(time.time()))  # when it unwound


@app.task
def cleans_up_on_request(path: str) -> str:
    """Waits; `revoke(terminate=True, signal="SIGUSR1")` raises SoftTimeLimitExceeded
    here, and it cleans up (writes `path`) and returns."""
    try:
        with open(path + ".started", "w") as started:
            started.write("started")
        time.sleep(60)
    except SoftTimeLimitExceeded:
        with open(path, "w") as cleaned:
            cleaned.write("cleaned up")
        return "cleaned up"
    return "finished"
