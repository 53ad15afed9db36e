"""Real `-P threads` workers with `interrupt_blocking` (the default of enable_time_limits):
tasks blocked in the calls users write get their soft limit inside the call, and their
hard limit gives the thread back, on Redis and on the filesystem transport.

One worker per broker serves every task of the test (they run side by side).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery_harness import Broker, start_worker
from test_celery_limits import APP, ENABLED, LATENCY, outcome, run_task

from celery_timeouts.pools.options import PoolOptions

pytest_plugins = ["celery_harness"]

# "lock": a raw Lock.acquire(), which no patch reaches, ended by an on_timeout callback.
KINDS = ("sleep", "socket", "queue", "event", "subprocess", "lock")
SOFT, HARD = 1.0, 3.0
# From sending to the stored result: the limit, plus the worker picking the task up, plus
# the result backend (the filesystem one polls): generous on a loaded 2-core machine.
LATE = 1.5 + LATENCY


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A listening socket on 127.0.0.1 that never accepts nor answers; yields its port."""
    server = socket.create_server(("127.0.0.1", 0), backlog=32)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _gone_within(pids: list[int], timeout: float) -> list[int]:
    """The pids still running after up to `timeout` seconds."""
    end = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_limits_reach_tasks_blocked_in_the_calls_users_write(
    broker: Broker, tmp_path: Path
) -> None:
    soft_pids, hard_pids = tmp_path / "soft.pids", tmp_path / "hard.pids"
    try:
        with silent_server() as port, start_worker(
            APP, "threads", broker, concurrency=2 * len(KINDS), env=ENABLED
        ) as worker:
            assert "are interrupted at the limits" in worker.log_text()
            soft_jobs = {
                kind: run_task(worker, "blocked", kind, port, str(soft_pids), soft=SOFT, hard=HARD)
                for kind in KINDS
            }
            hard_jobs = {
                kind: run_task(
                    worker, "blocked_twice", kind, port, str(hard_pids), soft=SOFT, hard=HARD
                )
                for kind in KINDS
            }
            soft_outcomes = {kind: outcome(job) for kind, job in soft_jobs.items()}
            hard_outcomes = {kind: outcome(job) for kind, job in hard_jobs.items()}
            still_running = _gone_within(_pids(hard_pids), 5)
            # The worker still serves, with all its threads: none was abandoned.
            assert worker.app.send_task(f"{APP}.add", args=[1, 2]).get(timeout=30) == 3
            stats = worker.app.control.inspect(destination=[worker.name], timeout=5).stats()
            pool_stats: dict[str, Any] = stats[worker.name]["pool"]
            log = worker.log_text()
    finally:
        _kill_leftovers(_pids(soft_pids) + _pids(hard_pids))
    for kind, got in soft_outcomes.items():
        assert got.state == "FAILURE", (kind, got)
        assert isinstance(got.result, SoftTimeLimitExceeded), (kind, got)
        assert SOFT - 0.1 <= got.seconds < SOFT + LATE, (kind, got)
    for kind, got in hard_outcomes.items():
        assert got.state == "FAILURE", (kind, got)
        assert isinstance(got.result, TimeLimitExceeded), (kind, got)
        assert HARD - 0.1 <= got.seconds < HARD + LATE, (kind, got)
    assert len(_pids(hard_pids)) == 2  # the child of each call of blocked_twice
    assert still_running == [], (
        "the hard limit left its task's child processes running", pool_stats, log[-6000:]
    )
    assert pool_stats["abandoned-threads-total"] == 0, pool_stats
    assert pool_stats["threads"] == 2 * len(KINDS), pool_stats
    # Where each task was when its hard limit ended it, innermost last, with its id.
    for kind, (result, _) in hard_jobs.items():
        assert f"task {result.id} reached its hard time limit (3 s) here" in log, kind
    assert "limits_app.py:" in log and "in _block_once" in log
    assert "is stuck past its hard time limit" not in log


def test_interrupt_blocking_is_an_option_of_enable_time_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from celery import Celery

    from celery_timeouts import blocking, enable_time_limits
    from celery_timeouts.pools.options import options_for
    from celery_timeouts.pools.threads import TaskPool

    assert PoolOptions().interrupt_blocking is True
    with pytest.raises(TypeError, match="interrupt_blocking must be True or False, got 'no'"):
        PoolOptions(interrupt_blocking="no")  # type: ignore[arg-type]
    assert not blocking.is_patched()
    start_up = {True: "are interrupted at the limits", False: "(interrupt_blocking=False)"}
    for interrupt in (True, False):
        app = Celery(f"interrupt-{interrupt}", set_as_current=False)
        enable_time_limits(app, interrupt_blocking=interrupt)
        assert options_for(app).interrupt_blocking is interrupt
        pool = TaskPool(limit=1, app=app)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="celery_timeouts.pools"):
            pool.on_start()
        try:
            assert blocking.is_patched() is interrupt
            assert start_up[interrupt] in caplog.text, caplog.text
        finally:
            pool.on_stop()
        assert not blocking.is_patched()  # the pool puts back what it patched


def test_revoke_terminate_ends_blocked_calls_and_kills_the_child(
    redis_url: str, tmp_path: Path
) -> None:
    """No limits at all: `revoke --terminate` alone reaches a thread blocked in a socket
    read, a queue and a child process, and kills that child."""
    from celery_harness import redis_broker_at, redis_command

    assert redis_command(int(redis_url.rsplit(":", 1)[1]), "FLUSHALL") == b"+OK"
    pids = tmp_path / "children.pids"
    kinds = ("socket", "queue", "subprocess")
    try:
        with silent_server() as port, start_worker(
            APP, "threads", redis_broker_at(redis_url), concurrency=len(kinds), env=ENABLED
        ) as worker:
            jobs = {
                kind: run_task(worker, "blocked", kind, port, str(pids), soft=None, hard=None)
                for kind in kinds
            }
            end = time.monotonic() + 20
            while not _pids(pids) and time.monotonic() < end:
                time.sleep(0.1)
            time.sleep(1)  # every task is in its call by now
            started = time.monotonic()
            for result, _ in jobs.values():
                worker.app.control.revoke(result.id, terminate=True)
            for kind, (result, _) in jobs.items():
                while result.state != "REVOKED" and time.monotonic() - started < 10:
                    time.sleep(0.05)
                assert result.state == "REVOKED", (kind, result.state, repr(result.result))
            still_running = _gone_within(_pids(pids), 5)
            assert worker.app.send_task(f"{APP}.add", args=[1, 2]).get(timeout=30) == 3
            stats = worker.app.control.inspect(destination=[worker.name], timeout=5).stats()
    finally:
        _kill_leftovers(_pids(pids))
    assert len(_pids(pids)) == 1
    assert still_running == [], "terminate left the task's child process running"
    assert stats[worker.name]["pool"]["abandoned-threads-total"] == 0, stats
