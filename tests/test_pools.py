"""The pools' own contract with Celery, on real pool objects (no worker): stopping,
applying after a stop, what `on_apply` returns and what `info` says.

Real workers are in test_celery_limits.py; this covers what a worker cannot show
deterministically (which queued job ran, how long a stop waited).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from celery_timeouts.pools._limits import run_job
from celery_timeouts.pools.threads import TaskPool as ThreadsPool

# Generous bounds: the machine may be loaded (see the timing notes in cases.py).
SLACK = 3.0


class Recorder:
    """Callbacks of a pool job, recorded."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.timeouts: list[tuple[bool, float | None]] = []
        self.done = threading.Event()

    def callback(self, result: Any) -> None:
        self.results.append(result)
        self.done.set()

    def timeout_callback(self, soft: bool, seconds: float | None) -> None:
        self.timeouts.append((soft, seconds))
        if not soft:
            self.done.set()


@pytest.fixture
def threads_pool() -> Iterator[Callable[..., ThreadsPool]]:
    made: list[ThreadsPool] = []

    def make(limit: int = 1, **options: Any) -> ThreadsPool:
        pool = ThreadsPool(limit=limit, **options)
        pool.on_start()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.on_terminate()


def apply(pool: ThreadsPool, target: Callable[..., Any], recorder: Recorder, **limits: Any) -> Any:
    return pool.on_apply(
        target, (), {}, callback=recorder.callback, accept_callback=None,
        timeout_callback=recorder.timeout_callback, **limits,
    )


def test_threads_on_apply_after_stop_raises(threads_pool: Callable[..., ThreadsPool]) -> None:
    pool = threads_pool()
    pool.on_stop()
    with pytest.raises(RuntimeError, match="stopped"):
        apply(pool, lambda: 1, Recorder())


def test_threads_stop_drops_jobs_not_started_and_finishes_the_running_one(
    threads_pool: Callable[..., ThreadsPool],
) -> None:
    pool = threads_pool(limit=1)
    started, release = threading.Event(), threading.Event()

    def running() -> str:
        started.set()
        release.wait(10)
        return "ran"

    first, queued = Recorder(), Recorder()
    first_result = apply(pool, running, first)
    queued_result = apply(pool, lambda: "should not run", queued)
    assert started.wait(10)
    stopper = threading.Thread(target=pool.on_stop)
    stopper.start()
    time.sleep(0.2)  # the stop is now waiting for the running job
    assert stopper.is_alive()
    release.set()
    stopper.join(SLACK)
    assert not stopper.is_alive()
    assert first.results == ["ran"]
    # What on_apply returned is stock Celery's ApplyResult of the job's future.
    assert first_result.f.done() and not first_result.f.cancelled()
    assert queued_result.f.cancelled()
    assert not queued.done.wait(0.5)
    assert queued.results == [] and queued.timeouts == []


def test_threads_pool_runs_jobs_without_on_start() -> None:
    pool = ThreadsPool(limit=None)  # as stock Celery's executor, started on first use
    recorder = Recorder()
    try:
        apply(pool, lambda: "ran", recorder).wait(10)
        assert recorder.results == ["ran"]
    finally:
        pool.on_stop()


def test_threads_pool_starts_at_the_limit_0_of_autoscale_without_a_minimum(
    threads_pool: Callable[..., ThreadsPool],
) -> None:
    # `--autoscale=8` (or `8,0`) builds the pool with limit 0 and grows it under load;
    # Celery's ThreadPoolExecutor would refuse max_workers=0.
    pool = threads_pool(limit=0)
    assert pool.info["max-concurrency"] == 0
    pool.grow(1)
    recorder = Recorder()
    apply(pool, lambda: "ran", recorder).wait(10)
    assert recorder.results == ["ran"] and pool.info["threads"] == 1


def test_threads_warm_stop_gives_up_on_a_stuck_thread_after_its_hard_limit(
    threads_pool: Callable[..., ThreadsPool],
) -> None:
    pool = threads_pool(limit=2)
    never = threading.Event()
    recorders = [Recorder(), Recorder()]
    for recorder in recorders:
        # Event.wait blocks in C: the hard limit cannot interrupt it.
        apply(pool, lambda: never.wait(60), recorder, timeout=1)
    time.sleep(0.2)
    began = time.monotonic()
    pool.on_stop()
    waited = time.monotonic() - began
    never.set()
    assert waited < 1 + 0.5 + SLACK  # hard limit plus the default grace
    for recorder in recorders:
        assert recorder.timeouts == [(False, 1.0)]


def test_threads_cold_stop_does_not_wait_on_a_stuck_thread(
    threads_pool: Callable[..., ThreadsPool],
) -> None:
    pool = threads_pool(limit=1)
    never, started = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        never.wait(60)

    apply(pool, stuck, Recorder())  # no limit at all
    assert started.wait(10)
    began = time.monotonic()
    pool.on_terminate()
    waited = time.monotonic() - began
    never.set()
    assert waited < 0.5 + SLACK
    with pytest.raises(RuntimeError):
        apply(pool, lambda: 1, Recorder())


# -- a hard limit is final ------------------------------------------------------------------


def traced(body: Callable[[], Any], stored: list[Any]) -> Callable[[], Any]:
    """As Celery's tracer: call the body, then store what it returned as its result."""

    def trace() -> Any:
        value = body()
        stored.append(value)
        return value

    return trace


def run_limited(target: Callable[[], Any], recorder: Recorder, hard: float, thread: bool) -> Any:
    """`run_job` as a pool runs it, in the main thread (solo) or another one (threads);
    returns the profile function left on that thread afterwards."""
    left: list[Any] = []

    def job() -> None:
        run_job(
            target, (), {}, recorder.callback, None,
            soft=None, hard=hard, timeout_callback=recorder.timeout_callback,
        )
        left.append(sys.getprofile())

    if thread:
        worker = threading.Thread(target=job)
        worker.start()
        worker.join(10 + SLACK)
        assert not worker.is_alive()
    else:
        job()
    return left[0]


def polls_for_ever() -> None:
    while True:
        time.sleep(0.01)


@pytest.mark.parametrize("thread", [False, True], ids=["main-thread", "worker-thread"])
def test_a_swallowed_hard_limit_still_ends_the_job(thread: bool) -> None:
    stored: list[Any] = []
    recorder = Recorder()

    def swallows() -> str:
        try:
            polls_for_ever()
        except BaseException:
            return "swallowed"
        return "finished"

    left = run_limited(traced(swallows, stored), recorder, 0.3, thread)
    assert stored == [] and recorder.results == []  # nothing was stored as a success
    assert recorder.timeouts == [(False, 0.3)]
    assert left is None  # the watch ended with the job
    monitoring = getattr(sys, "monitoring", None)  # 3.12+: its tool id is free again
    if monitoring is not None:
        assert "celery-timeouts hard limit" not in [monitoring.get_tool(i) for i in range(6)]


@pytest.mark.parametrize("thread", [False, True], ids=["main-thread", "worker-thread"])
def test_a_hard_limit_swallowed_twice_still_ends_the_job(thread: bool) -> None:
    stored: list[Any] = []
    recorder = Recorder()

    def inner() -> str:
        try:
            polls_for_ever()
        except BaseException:
            return "inner swallowed"
        return "finished"

    def outer() -> str:
        try:
            inner()
        except BaseException:
            return "outer swallowed"
        return "finished"

    run_limited(traced(outer, stored), recorder, 0.3, thread)
    assert stored == [] and recorder.timeouts == [(False, 0.3)]


def test_clean_up_after_a_hard_limit_runs_undisturbed() -> None:
    stored: list[Any] = []
    cleaned: list[str] = []
    recorder = Recorder()

    def clean_up() -> str:
        return "cleaned"

    def body() -> str:
        try:
            polls_for_ever()
        except BaseException:
            cleaned.append(clean_up())  # a new frame: it returns as usual
            raise
        return "finished"

    run_limited(traced(body, stored), recorder, 0.3, thread=True)
    assert cleaned == ["cleaned"]
    assert stored == [] and recorder.timeouts == [(False, 0.3)]
