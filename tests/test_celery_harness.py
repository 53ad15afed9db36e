"""The harness itself: every pool on every broker takes a task, answers, and stops cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from celery_harness import POOLS, Broker, living_members, require_or_skip, start_worker

pytest_plugins = ["celery_harness"]

APP = "celery_apps.harness_app"
# Prefork and threads get two slots: enough to show the pool is real, cheap on two cores.
CONCURRENCY = {"prefork": 2, "threads": 2}
# How the worker's banner names each pool ("concurrency: 2 (thread)").
BANNER_NAME = {"threads": "thread"}


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pool", POOLS)
def test_worker_runs_a_task_and_stops(pool: str, broker: Broker, tmp_path: Path) -> None:
    concurrency = CONCURRENCY.get(pool)
    with start_worker(APP, pool, broker, concurrency=concurrency, log_dir=tmp_path) as worker:
        result = worker.app.send_task(f"{APP}.add", (2, 3))
        # A round trip takes well under a second; 10 s is slack for a loaded CI machine.
        assert result.get(timeout=10, propagate=False) == 5, worker.log_text()
        assert result.state == "SUCCESS"
    assert not pid_exists(worker.pid)
    assert not worker.killed, worker.log_text()
    assert worker.returncode == 0, worker.log_text()
    assert f"({BANNER_NAME.get(pool, pool)})" in worker.log_text()


def test_worker_that_cannot_start_fails_with_its_log(filesystem_broker: Broker) -> None:
    with (
        pytest.raises(pytest.fail.Exception, match="exited with") as failure,
        start_worker("celery_apps.no_such_app", "solo", filesystem_broker),
    ):
        pass
    assert "no_such_app" in str(failure.value)


def test_missing_tool_fails_on_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get"):
        require_or_skip("redis-server is not on PATH; apt-get install redis-server")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get"):
        require_or_skip("redis-server is not on PATH; apt-get install redis-server")


def test_worker_stuck_in_a_task_is_killed_with_its_pool(filesystem_broker: Broker) -> None:
    with start_worker(APP, "prefork", filesystem_broker, concurrency=1, stop_timeout=1) as worker:
        result = worker.app.send_task(f"{APP}.sleep_for", (60,))
        worker.wait_for_log(f"sleep_for[{result.id}] received", timeout=10)
        processes = living_members(worker.pid)
        assert len(processes) >= 2, processes  # the worker and its pool's child
    # The warm shutdown waits for the task, so the harness had to kill the group.
    assert worker.killed
    assert not living_members(worker.pid)
