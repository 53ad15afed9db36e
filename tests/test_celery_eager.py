"""enable_time_limits(app, eager=True): limits for eager tasks, as a test suite runs them."""

from __future__ import annotations

import time

import pytest
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from celery_timeouts import enable_time_limits

from conftest import run_in_thread

_apps_made = 0


def make_app(*, eager_limits: bool) -> Celery:
    global _apps_made
    _apps_made += 1
    app = Celery(f"eager-{_apps_made}", set_as_current=False)
    app.conf.update(
        task_always_eager=True, broker_url="memory://", result_backend="cache+memory://"
    )
    if eager_limits:
        enable_time_limits(app, eager=True)

    def poll(seconds: float) -> str:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.01)
        return "finished"

    @app.task(name=f"{app.main}.cleans_up", soft_time_limit=0.2, time_limit=2)
    def cleans_up(seconds: float) -> str:
        try:
            return poll(seconds)
        except SoftTimeLimitExceeded:
            return "cleaned up"

    @app.task(name=f"{app.main}.stubborn")
    def stubborn(seconds: float) -> str:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                poll(end - time.monotonic())
            except Exception:
                continue
        return "finished"

    return app


def test_eager_tasks_honour_the_soft_limit_so_clean_up_can_be_tested() -> None:
    app = make_app(eager_limits=True)
    started = time.monotonic()
    result = app.tasks[f"{app.main}.cleans_up"].delay(5)
    assert (result.state, result.get()) == ("SUCCESS", "cleaned up")
    assert time.monotonic() - started < 1.5


def test_eager_hard_limit_gives_time_limit_exceeded() -> None:
    app = make_app(eager_limits=True)
    started = time.monotonic()
    stubborn = app.tasks[f"{app.main}.stubborn"]
    result = stubborn.apply_async((5,), soft_time_limit=0.1, time_limit=0.4)
    assert result.state == "FAILURE"
    assert isinstance(result.result, TimeLimitExceeded)
    assert time.monotonic() - started < 1.5
    with pytest.raises(TimeLimitExceeded):
        app.tasks[f"{app.main}.stubborn"].apply((5,), time_limit=0.3, throw=True)


def test_eager_limits_work_from_a_worker_thread_too() -> None:
    app = make_app(eager_limits=True)
    result = run_in_thread(lambda: app.tasks[f"{app.main}.cleans_up"].delay(5))
    assert result.get() == "cleaned up"


def test_without_the_option_eager_tasks_run_to_their_end() -> None:
    app = make_app(eager_limits=False)
    started = time.monotonic()
    assert app.tasks[f"{app.main}.cleans_up"].delay(0.5).get() == "finished"
    assert time.monotonic() - started >= 0.5
