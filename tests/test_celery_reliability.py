"""Real workers given hostile input: a limit beyond the timers, a bad backend override."""

from __future__ import annotations

import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from celery_harness import REPO, TESTS, filesystem_broker_in, redis_broker_at, start_worker

from celery_timeouts.demo.workers import launch_worker, stop_workers

pytest_plugins = ["celery_harness"]

APP = "celery_apps.limits_app"
ENABLED = {"CT_ENABLE_LIMITS": "1"}


def test_solo_worker_given_a_limit_beyond_the_timers_keeps_serving(redis_url: str) -> None:
    broker = redis_broker_at(redis_url)
    with start_worker(APP, "solo", broker, env=ENABLED) as worker:
        huge = [
            worker.app.send_task(
                f"{APP}.add", args=[i, 1], soft_time_limit=1e10, time_limit=10**400
            )
            for i in range(3)
        ]
        after = [worker.app.send_task(f"{APP}.add", args=[i, 2]) for i in range(4)]
        limited = worker.app.send_task(
            f"{APP}.sleepy", args=[10], soft_time_limit=0.5, time_limit=1e10
        )
        assert [r.get(timeout=30) for r in huge] == [1, 2, 3]
        assert [r.get(timeout=30) for r in after] == [2, 3, 4, 5]
        limited.get(timeout=30, propagate=False)
        assert isinstance(limited.result, SoftTimeLimitExceeded), limited.result
    log = worker.log_text()
    assert "Unrecoverable error" not in log and "OverflowError" not in log, log[-3000:]


def test_a_bad_backend_override_stops_the_worker_at_start_up(tmp_path: Path) -> None:
    broker = filesystem_broker_in(tmp_path / "broker")
    env = {**ENABLED, "CELERY_TIMEOUTS_BACKEND": "bogus"}
    worker = launch_worker(APP, "threads", broker, tmp_path, env=env, python_path=[REPO, TESTS])
    try:
        deadline = time.monotonic() + 60
        while worker.returncode is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_workers([worker])
    log = worker.log_text()
    assert worker.returncode not in (None, 0), log[-3000:]
    assert "celery-timeouts: the worker cannot start: unknown environment variable " \
        "CELERY_TIMEOUTS_BACKEND 'bogus'" in log, log[-3000:]
    assert " ready." not in log
