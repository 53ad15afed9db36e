"""Real `celery worker` processes on every pool, on Redis and on the filesystem transport:
soft and hard limits with `enable_time_limits(app)`, the stuck-thread replacement and
autoscale of `-P threads`, and alarm-style code through `celery_timeouts.compat`."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery_harness import POOLS, Broker, RunningWorker, start_worker

pytest_plugins = ["celery_harness"]

APP = "celery_apps.limits_app"
ENABLED = {"CT_ENABLE_LIMITS": "1"}
# A task's outcome is read from the result backend: the filesystem one polls every 0.5 s.
LATENCY = 1.5


@dataclass
class Outcome:
    state: str
    result: Any
    seconds: float  # from sending the task to its result being stored


def run_task(
    worker: RunningWorker, name: str, *args: Any, soft: float | None = 1, hard: float | None = 3
) -> Any:
    """Send a task with its limits; returns the AsyncResult and the time it was sent."""
    sent = datetime.now(timezone.utc)
    result = worker.app.send_task(
        f"{APP}.{name}", args=list(args), soft_time_limit=soft, time_limit=hard
    )
    return result, sent


def outcome(pending: tuple[Any, datetime], timeout: float = 30) -> Outcome:
    result, sent = pending
    result.get(timeout=timeout, propagate=False)
    done = result.date_done
    if isinstance(done, str):
        done = datetime.fromisoformat(done)
    if done.tzinfo is None:
        done = done.replace(tzinfo=timezone.utc)
    return Outcome(result.state, result.result, (done - sent).total_seconds())


@pytest.mark.parametrize("pool", POOLS)
def test_soft_and_hard_limits_on_every_pool(pool: str, broker: Broker) -> None:
    names = ["cpu_loop", "sleepy", "cleans_up", "stubborn", "stubborn_cpu", "alarm_style"]
    # Sent all at once, except where a task holds the whole pool while it runs: solo runs
    # one task at a time, and a CPU-bound greenlet keeps every other greenlet of its OS
    # thread waiting until a limit stops it (the limits of those would start late).
    one_by_one = {
        "solo": names, "gevent": ["cpu_loop", "stubborn_cpu"],
        "eventlet": ["cpu_loop", "stubborn_cpu"],
    }.get(pool, [])
    with start_worker(APP, pool, broker, concurrency=len(names), env=ENABLED) as worker:
        if pool == "prefork":
            worker.wait_for_log("soft and hard limits enforced by Celery itself", 10)
        else:
            assert f"celery-timeouts: {pool} pool" in worker.log_text()

        def send(name: str) -> tuple[Any, datetime]:
            if name == "alarm_style":  # its own 1 s alarm, well inside its limits
                return run_task(worker, name, 1, soft=5, hard=10)
            return run_task(worker, name, 10)

        pending = {name: send(name) for name in names if name not in one_by_one}
        outcomes = {name: outcome(job) for name, job in pending.items()}
        outcomes.update({name: outcome(send(name)) for name in one_by_one})
        for name in ("cpu_loop", "sleepy"):
            got = outcomes[name]
            assert got.state == "FAILURE", (name, got)
            assert isinstance(got.result, SoftTimeLimitExceeded), (name, got)
            assert 0.9 <= got.seconds < 1 + LATENCY, (name, got)
        cleaned = outcomes["cleans_up"]
        assert (cleaned.state, cleaned.result) == ("SUCCESS", "cleaned up"), cleaned
        assert 0.9 <= cleaned.seconds < 1 + LATENCY, cleaned
        for name in ("stubborn", "stubborn_cpu"):
            hard = outcomes[name]
            assert hard.state == "FAILURE", (name, hard)
            assert isinstance(hard.result, TimeLimitExceeded), (name, hard)
            assert 2.9 <= hard.seconds < 3 + LATENCY + (1 if pool == "prefork" else 0), hard
        alarm = outcomes["alarm_style"]
        assert (alarm.state, alarm.result) == ("SUCCESS", "alarm fired"), alarm
        # The worker keeps serving.
        assert worker.app.send_task(f"{APP}.add", args=[2, 3]).get(timeout=15) == 5
    assert "Unrecoverable error" not in worker.log_text()


def test_stock_threads_pool_ignores_limits_for_comparison(broker: Broker) -> None:
    # What celery-timeouts fixes: without it the same task runs to its end.
    with start_worker(APP, "threads", broker, concurrency=2) as worker:
        got = outcome(run_task(worker, "sleepy", 2, soft=0.5, hard=1))
    assert (got.state, got.result) == ("SUCCESS", "finished"), got
    assert got.seconds >= 2


def test_threads_stuck_in_c_are_reported_and_replaced(redis_url: str) -> None:
    from celery_harness import redis_broker_at

    broker = redis_broker_at(redis_url)
    started = time.monotonic()
    with start_worker(APP, "threads", broker, concurrency=4, env=ENABLED) as worker:
        stuck = [run_task(worker, "stuck", 60, soft=None, hard=2) for _ in range(20)]
        quick = [worker.app.send_task(f"{APP}.add", args=[i, 1]) for i in range(20)]
        stuck_outcomes = [outcome(job, timeout=45) for job in stuck]
        assert [r.get(timeout=30) for r in quick] == [i + 1 for i in range(20)]
        elapsed = time.monotonic() - started
        stats = worker.app.control.inspect(destination=[worker.name], timeout=5).stats()
        pool_stats = stats[worker.name]["pool"]
    for got in stuck_outcomes:
        assert got.state == "FAILURE" and isinstance(got.result, TimeLimitExceeded), got
    assert elapsed < 40  # 5 rounds of 4 slots at ~2.5 s each, plus start and stop
    assert pool_stats["abandoned-threads-total"] == 20
    assert pool_stats["max-concurrency"] == 4
    log = worker.log_text()
    assert log.count("is stuck past its hard time limit") == 20
    assert "limits_app.py:" in log and " in stuck" in log  # where: the task's raw lock
    assert "Unrecoverable error" not in log


def test_threads_autoscale_grows_under_load_and_shrinks_back(redis_url: str) -> None:
    from celery_harness import redis_broker_at

    broker = redis_broker_at(redis_url)
    env = {**ENABLED, "AUTOSCALE_KEEPALIVE": "1"}  # idle seconds before shrinking
    with start_worker(
        APP, "threads", broker, extra_args=["--autoscale=8,2"], env=env
    ) as worker:
        inspect = worker.app.control.inspect(destination=[worker.name], timeout=5)

        def concurrency() -> int:
            return int(inspect.stats()[worker.name]["pool"]["max-concurrency"])

        assert concurrency() == 2
        burst = [run_task(worker, "sleepy", 3, soft=None, hard=None) for _ in range(8)]
        peak = 2
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and peak < 8:
            peak = max(peak, concurrency())
            time.sleep(0.2)
        for job in burst:
            assert outcome(job).result == "finished"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and concurrency() > 2:
            time.sleep(0.5)
        final = concurrency()
    assert peak == 8
    assert final == 2
    assert "'TaskPool' object has no attribute 'grow'" not in worker.log_text()


def test_custom_pool_worker_wide_limits_and_control_time_limit(redis_url: str) -> None:
    # Chosen explicitly with -P custom (no enable_time_limits in the app); limits from the
    # command line, then changed at runtime with `celery control time_limit`.
    from celery_harness import redis_broker_at

    broker = redis_broker_at(redis_url)
    env = {"CELERY_CUSTOM_WORKER_POOL": "celery_timeouts.pools.threads:TaskPool"}
    with start_worker(
        APP, "custom", broker, concurrency=2, env=env,
        extra_args=["--soft-time-limit=1", "--time-limit=3"],
    ) as worker:
        assert "celery-timeouts: threads pool" in worker.log_text()
        worker_wide = outcome(run_task(worker, "sleepy", 10, soft=None, hard=None))
        stubborn = outcome(run_task(worker, "stubborn", 10, soft=None, hard=None))
        replies = worker.app.control.time_limit(
            f"{APP}.sleepy", soft=0.5, hard=2, destination=[worker.name], reply=True
        )
        assert replies and "ok" in next(iter(replies[0].values())), replies
        changed = outcome(run_task(worker, "sleepy", 10, soft=None, hard=None))
    assert isinstance(worker_wide.result, SoftTimeLimitExceeded), worker_wide
    assert 0.9 <= worker_wide.seconds < 1 + LATENCY, worker_wide
    assert isinstance(stubborn.result, TimeLimitExceeded), stubborn
    assert 2.9 <= stubborn.seconds < 3 + LATENCY, stubborn
    assert isinstance(changed.result, SoftTimeLimitExceeded), changed
    assert 0.45 <= changed.seconds < 0.5 + LATENCY, changed


def test_limits_from_the_task_decorator_and_from_the_app_config(redis_url: str) -> None:
    from celery_harness import redis_broker_at

    broker = redis_broker_at(redis_url)
    env = {**ENABLED, "CT_CONFIG_LIMITS": "0.5,2"}  # task_soft_time_limit, task_time_limit
    with start_worker(APP, "threads", broker, concurrency=2, env=env) as worker:
        from_decorator = outcome(run_task(worker, "decorated", 10, soft=None, hard=None))
        from_config = outcome(run_task(worker, "stubborn", 10, soft=None, hard=None))
        config_soft = outcome(run_task(worker, "sleepy", 10, soft=None, hard=None))
    # `decorated` catches its soft limit (1 s) and only its hard limit (3 s) ends it.
    assert isinstance(from_decorator.result, TimeLimitExceeded), from_decorator
    assert 2.9 <= from_decorator.seconds < 3 + LATENCY, from_decorator
    assert isinstance(from_config.result, TimeLimitExceeded), from_config
    assert 1.9 <= from_config.seconds < 2 + LATENCY, from_config
    assert isinstance(config_soft.result, SoftTimeLimitExceeded), config_soft
    assert 0.45 <= config_soft.seconds < 0.5 + LATENCY, config_soft


def test_threads_pool_grow_and_shrink_by_remote_control(redis_url: str) -> None:
    from celery_harness import redis_broker_at

    broker = redis_broker_at(redis_url)
    with start_worker(APP, "threads", broker, concurrency=2, env=ENABLED) as worker:
        control = worker.app.control
        inspect = control.inspect(destination=[worker.name], timeout=5)

        def pool() -> dict[str, Any]:
            return dict(inspect.stats()[worker.name]["pool"])

        grown = control.pool_grow(3, destination=[worker.name], reply=True)
        after_grow = pool()
        shrunk = control.pool_shrink(4, destination=[worker.name], reply=True)
        # Retired threads finish as they take their retire message.
        deadline = time.monotonic() + 15
        while (after_shrink := pool())["threads"] > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Every slot still serves.
        results = [worker.app.send_task(f"{APP}.add", args=[i, i]) for i in range(10)]
        assert [r.get(timeout=15) for r in results] == [2 * i for i in range(10)]
    assert grown and "ok" in next(iter(grown[0].values())), grown
    assert shrunk and "ok" in next(iter(shrunk[0].values())), shrunk
    assert (after_grow["max-concurrency"], after_grow["threads"]) == (5, 5)
    # Shrinking never goes below one thread.
    assert (after_shrink["max-concurrency"], after_shrink["threads"]) == (1, 1)


def test_too_many_abandoned_threads_ask_for_a_warm_restart(redis_url: str) -> None:
    from celery_harness import redis_broker_at

    broker = redis_broker_at(redis_url)
    env = {**ENABLED, "CT_MAX_ABANDONED": "1"}
    with start_worker(APP, "threads", broker, concurrency=2, env=env) as worker:
        stuck = [run_task(worker, "stuck", 60, soft=None, hard=1) for _ in range(2)]
        stuck_outcomes = [outcome(job) for job in stuck]
        worker.wait_for_log("asking the worker for a warm restart", 10)
        worker.wait_for_log("Restarting celery worker", 10)
        # The restarted worker (the same PID, re-executed) serves again.
        assert worker.app.send_task(f"{APP}.add", args=[1, 2]).get(timeout=60) == 3
    for got in stuck_outcomes:
        assert isinstance(got.result, TimeLimitExceeded), got


def fresh_redis(redis_url: str) -> Broker:
    """The session's Redis, emptied: no message of an earlier test is served here."""
    from celery_harness import redis_broker_at, redis_command

    assert redis_command(int(redis_url.rsplit(":", 1)[1]), "FLUSHALL") == b"+OK"
    return redis_broker_at(redis_url)


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    """Poll `condition()` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def exit_after(worker: RunningWorker, signum: int, bound: float) -> float:
    """Send `signum` to the worker (by PID); seconds until it exited, failing past `bound`."""
    began = time.monotonic()
    os.kill(worker.pid, signum)
    try:
        worker.process.wait(bound)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{worker.pool} worker still running {bound} s after signal {signum}")
    return time.monotonic() - began


@pytest.mark.parametrize("pool", ["threads", "gevent", "eventlet", "solo"])
def test_inspect_active_answers_while_a_task_runs(pool: str, redis_url: str) -> None:
    # worker_pid must be an int: `inspect active` replies are JSON. Solo answers through
    # its control relay while the task holds the main thread, and only once.
    broker = fresh_redis(redis_url)
    with start_worker(APP, pool, broker, concurrency=2, env=ENABLED) as worker:
        running, _ = run_task(worker, "sleepy", 30, soft=None, hard=None)
        inspect = worker.app.control.inspect(destination=[worker.name], timeout=2)

        def listed() -> list[dict[str, Any]]:
            active = inspect.active() or {}
            return [t for t in active.get(worker.name, []) if t["id"] == running.id]

        (entry,) = wait_until(listed, 15, "the running task in `inspect active`")
        assert isinstance(entry["worker_pid"], int), entry
        # A ping whose answers are collected across the task's end: one answer only.
        pongs: list[Any] = []
        pinging = threading.Thread(target=lambda: pongs.extend(
            worker.app.control.ping(destination=[worker.name], timeout=4)
        ))
        pinging.start()
        time.sleep(1)
        replies = worker.app.control.revoke(
            running.id, terminate=True, reply=True, timeout=3, destination=[worker.name]
        )
        assert replies and "ok" in next(iter(replies[0].values())), replies
        wait_until(lambda: running.state == "REVOKED", 10, "REVOKED after terminate")
        pinging.join()
        assert pongs == [{worker.name: {"ok": "pong"}}], pongs
        assert worker.app.send_task(f"{APP}.add", args=[2, 3]).get(timeout=15) == 5
    log = worker.log_text()
    assert "EncodeError" not in log and "Unrecoverable error" not in log


def test_threads_warm_shutdown_ends_stuck_tasks_and_gives_back_the_rest(redis_url: str) -> None:
    broker = fresh_redis(redis_url)
    with start_worker(APP, "threads", broker, concurrency=2, env=ENABLED) as worker:
        stuck = [run_task(worker, "stuck", 600, soft=None, hard=2) for _ in range(2)]
        later = [worker.app.send_task(f"{APP}.add", args=[i, 1]) for i in range(4)]
        worker.wait_for_log("stuck[", 10)  # received; give both a moment to start
        time.sleep(1)
        # Stuck in C, each is ended 2 s + 0.5 s after it started; then the worker exits.
        exit_after(worker, signal.SIGTERM, 12)
        ended = [outcome(job, timeout=5) for job in stuck]
    for got in ended:
        assert got.state == "FAILURE" and isinstance(got.result, TimeLimitExceeded), got
    log = worker.log_text()
    assert "not started are left unacknowledged" in log or "Restoring" in log
    # What the first worker did not start, a second one serves.
    with start_worker(APP, "threads", broker, concurrency=2, env=ENABLED) as second:
        assert [r.get(timeout=20) for r in later] == [i + 1 for i in range(4)]
    assert second.returncode == 0


def test_threads_cold_shutdown_does_not_wait_for_a_stuck_task(redis_url: str) -> None:
    broker = fresh_redis(redis_url)
    with start_worker(APP, "threads", broker, concurrency=1, env=ENABLED) as worker:
        run_task(worker, "stuck", 600, soft=None, hard=None)  # no limit: only a cold stop
        later = [worker.app.send_task(f"{APP}.add", args=[i, 2]) for i in range(3)]
        worker.wait_for_log("stuck[", 10)
        time.sleep(1)
        exit_after(worker, signal.SIGQUIT, 10)
    with start_worker(APP, "threads", broker, concurrency=1, env=ENABLED):
        assert [r.get(timeout=20) for r in later] == [i + 2 for i in range(3)]


@pytest.mark.parametrize("pool", ["threads", "gevent"])
def test_a_swallowed_hard_limit_ends_as_time_limit_exceeded(pool: str, redis_url: str) -> None:
    # The tasks catch BaseException and return: Celery's tracer would store SUCCESS.
    broker = fresh_redis(redis_url)
    with start_worker(APP, pool, broker, concurrency=2, env=ENABLED) as worker:
        for name in ("swallows", "swallows_cpu"):
            got = outcome(run_task(worker, name, 10, soft=None, hard=1), timeout=15)
            assert got.state == "FAILURE" and isinstance(got.result, TimeLimitExceeded), got
            assert got.seconds < 1 + LATENCY + 1, got
            began = time.monotonic()
            assert worker.app.send_task(f"{APP}.add", args=[2, 3]).get(timeout=15) == 5
            assert time.monotonic() - began < 5
    assert "Unrecoverable error" not in worker.log_text()


@pytest.mark.parametrize("pool", ["threads", "gevent", "eventlet", "solo"])
def test_a_body_that_keeps_swallowing_its_hard_limit_gets_it_again(
    pool: str, redis_url: str, tmp_path: Path
) -> None:
    """A loop around `except BaseException:` catches the hard limit and works on: the
    limit is delivered again every second (a sleep, and a CPU loop that never yields),
    until the task lets it through; the result is TimeLimitExceeded, the slot serves on."""
    broker = fresh_redis(redis_url)
    with start_worker(APP, pool, broker, concurrency=2, env=ENABLED) as worker:
        for kind in ("sleep", "cpu"):
            catches = tmp_path / f"{kind}.catches"
            got = outcome(
                run_task(worker, "swallows_again", kind, 3, str(catches), soft=None, hard=1),
                timeout=30,
            )
            assert got.state == "FAILURE" and isinstance(got.result, TimeLimitExceeded), got

            def catch_times(file: Path = catches) -> list[float]:
                return [float(line) for line in file.read_text().split()]

            # (-P threads reports the limit when it abandons the thread, 0.5 s after it.)
            wait_until(lambda: len(catch_times()) >= 3, 10, f"{kind}: three catches")
            caught = catch_times()
            assert len(caught) == 3, (kind, caught)  # without it: one catch, then 60 s
            assert 0.9 <= caught[0] < 1 + LATENCY, (kind, caught)
            gaps = [later - earlier for earlier, later in itertools.pairwise(caught)]
            assert all(0.5 <= gap < 1 + LATENCY for gap in gaps), (kind, caught)
            assert worker.app.send_task(f"{APP}.add", args=[2, 3]).get(timeout=15) == 5
    assert "Unrecoverable error" not in worker.log_text()


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_a_green_task_stuck_past_its_hard_limit_is_counted_and_reported(
    pool: str, redis_url: str
) -> None:
    """A greenlet that catches its hard limit again and again holds the worker: a few
    seconds on, the pool says so on stderr, with where it is, and counts it."""
    broker = fresh_redis(redis_url)
    with start_worker(APP, pool, broker, concurrency=2, env=ENABLED) as worker:
        got = outcome(run_task(worker, "swallows_for", 7, soft=None, hard=1), timeout=30)
        assert got.state == "FAILURE" and isinstance(got.result, TimeLimitExceeded), got
        inspect = worker.app.control.inspect(destination=[worker.name], timeout=5)
        stats = wait_until(inspect.stats, 30, "an answer to inspect stats")
        pool_stats = stats[worker.name]["pool"]
        log = worker.log_text()
    assert pool_stats["stuck-tasks-total"] == 1, pool_stats
    assert pool_stats["stuck-tasks"] == 0, pool_stats  # it has ended since
    assert "a task is still running 3 s after its hard time limit (1 s)" in log, log[-3000:]
    assert "it holds the worker's CPU" in log and "in swallows_for" in log, log[-3000:]


def test_too_many_stuck_green_tasks_ask_for_a_warm_restart(redis_url: str) -> None:
    broker = fresh_redis(redis_url)
    env = {**ENABLED, "CT_MAX_ABANDONED": "0"}
    with start_worker(APP, "gevent", broker, concurrency=2, env=env) as worker:
        got = outcome(run_task(worker, "swallows_for", 6, soft=None, hard=1), timeout=30)
        assert isinstance(got.result, TimeLimitExceeded), got
        worker.wait_for_log("1 tasks are stuck (limit 0): asking the worker for a warm", 10)
        # Once the task has let its limit through, the worker restarts, and serves again.
        worker.wait_for_log("Restarting celery worker", 20)
        assert worker.app.send_task(f"{APP}.add", args=[1, 2]).get(timeout=60) == 3


@pytest.mark.parametrize("pool", ["threads", "gevent", "eventlet", "solo"])
def test_revoke_terminate_stops_a_running_task(
    pool: str, redis_url: str, tmp_path: Any
) -> None:
    """A CPU loop that never yields and one long sleep: both stop within 1 s of the
    revoke, end REVOKED, unwind through their `finally:`, and the slot serves on."""
    broker = fresh_redis(redis_url)
    revoked_file = tmp_path / "revoked.txt"
    env = {**ENABLED, "CT_REVOKED_FILE": str(revoked_file),
           "CT_STACKS_FILE": str(tmp_path / "stacks.txt")}
    ids = []
    with start_worker(APP, pool, broker, concurrency=2, env=env) as worker:
        for kind in ("cpu", "sleep"):
            beat = tmp_path / f"{pool}-{kind}.beat"
            running, _ = run_task(worker, "heartbeat", str(beat), kind, soft=None, hard=None)
            ids.append(running.id)
            wait_until(beat.exists, 20, f"the {kind} task running")
            time.sleep(0.3)
            revoked_at = time.time()
            worker.app.control.revoke(running.id, terminate=True, destination=[worker.name])
            try:
                wait_until(lambda r=running: r.state == "REVOKED", 10, f"{kind}: REVOKED")
            except BaseException:
                os.kill(worker.pid, signal.SIGUSR2)
                time.sleep(1)
                print(worker.log_text()[-6000:])
                print((tmp_path / "stacks.txt").read_text())
                raise
            wait_until(Path(f"{beat}.finally").exists, 10, f"{kind}: unwound")
            last_beat = float(beat.read_text())
            time.sleep(0.5)
            assert float(beat.read_text()) == last_beat, f"{kind}: still beating"
            if kind == "cpu":
                assert last_beat - revoked_at < 1.0, (kind, last_beat - revoked_at)
            assert not Path(f"{beat}.after").exists(), kind
            assert worker.app.send_task(f"{APP}.add", args=[2, 3]).get(timeout=15) == 5
        log = worker.log_text()
    assert "terminated (signal 15)" in log, log[-3000:]
    # task_revoked, once per task, saying it was terminated by SIGTERM.
    assert sorted(revoked_file.read_text().splitlines()) == sorted(
        f"{task_id} True {int(signal.SIGTERM)}" for task_id in ids
    )
    assert "Hard time limit" not in log and "Unrecoverable error" not in log


@pytest.mark.parametrize("pool", ["threads", "gevent", "eventlet", "solo"])
def test_revoke_terminate_with_sigusr1_lets_the_task_clean_up(
    pool: str, redis_url: str, tmp_path: Any
) -> None:
    broker = fresh_redis(redis_url)
    with start_worker(APP, pool, broker, concurrency=2, env=ENABLED) as worker:
        marker = tmp_path / f"{pool}.cleaned"
        running, _ = run_task(worker, "cleans_up_on_request", str(marker), soft=None, hard=None)
        wait_until(Path(f"{marker}.started").exists, 20, "the task running")
        time.sleep(0.3)
        worker.app.control.revoke(
            running.id, terminate=True, signal="SIGUSR1", destination=[worker.name]
        )
        wait_until(marker.exists, 10, "the task's clean-up")
        assert marker.read_text() == "cleaned up"
        assert worker.app.send_task(f"{APP}.add", args=[2, 3]).get(timeout=15) == 5
