"""enable_time_limits(app): which workers get our pools, decided at Celery's worker_init.

A real `WorkController` is built for each case (not started): it sends `worker_init`
and then resolves its pool class, exactly as `celery worker` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery import Celery, signals

from celery_timeouts import enable_time_limits
from celery_timeouts.integration import _use_our_pool
from celery_timeouts.pools.options import options_for

_apps_made = 0


@pytest.fixture(autouse=True)
def _joins_allowed_after() -> Iterator[None]:
    """A WorkController's pool marks this process as one whose tasks must not wait on
    results (`result.get()` then raises): undo that for the tests that run after."""
    from celery import _state

    before = _state.task_join_will_block()
    yield
    _state._set_task_join_will_block(before)


def new_app() -> Celery:
    global _apps_made
    _apps_made += 1
    return Celery(f"integration-{_apps_made}", broker="memory://", set_as_current=False)


def pool_class_of(app: Celery, pool: str) -> str:
    worker = app.WorkController(
        pool_cls=pool, concurrency=2, hostname=f"{app.main}@test", without_heartbeat=True
    )
    cls = worker.pool_cls
    return f"{cls.__module__}:{cls.__qualname__}"


@pytest.mark.parametrize(
    ("pool", "ours"),
    [
        ("solo", "celery_timeouts.pools.solo:TaskPool"),
        ("threads", "celery_timeouts.pools.threads:TaskPool"),
        ("prefork", "celery.concurrency.prefork:TaskPool"),  # left alone
    ],
)
def test_an_enabled_app_gets_our_pool(pool: str, ours: str) -> None:
    app = new_app()
    enable_time_limits(app)
    assert pool_class_of(app, pool) == ours


def test_a_second_app_is_independent() -> None:
    enabled, other = new_app(), new_app()
    enable_time_limits(enabled)
    assert pool_class_of(other, "threads") == "celery.concurrency.thread:TaskPool"
    assert pool_class_of(enabled, "threads") == "celery_timeouts.pools.threads:TaskPool"


def test_calling_it_again_connects_once_and_updates_the_options() -> None:
    app = new_app()
    enable_time_limits(app)
    enable_time_limits(app, abandon_after=2.0, max_abandoned_threads=3)
    connected = [key for key, receiver in signals.worker_init.receivers
                 if receiver is _use_our_pool]
    assert len(connected) == 1
    assert (options_for(app).abandon_after, options_for(app).max_abandoned_threads) == (2.0, 3)
    assert pool_class_of(app, "threads") == "celery_timeouts.pools.threads:TaskPool"


def test_bad_options_name_the_value_and_the_fix() -> None:
    app = new_app()
    with pytest.raises(ValueError, match=r"abandon_after must be a number of seconds >= 0, got -1"):
        enable_time_limits(app, abandon_after=-1)
    with pytest.raises(ValueError, match=r"max_abandoned_threads must be an int >= 0 or None"):
        enable_time_limits(app, max_abandoned_threads="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"eager must be True or False, got 'yes'"):
        enable_time_limits(app, eager="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_auto_concurrency_is_logged_with_the_pools_name(pool: str) -> None:
    app = new_app()
    enable_time_limits(app)
    worker = app.WorkController(
        pool_cls=pool, concurrency="auto", hostname=f"{app.main}@test", without_heartbeat=True
    )
    assert worker.pool_cls.__module__.startswith("celery_timeouts.pools")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("celery.worker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        worker.on_start()  # logs the concurrency it resolved, and nothing else here
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    (line,) = [r.getMessage() for r in records if "worker_concurrency" in r.getMessage()]
    assert f"pool={pool}" in line, line


def test_solo_info_reports_the_limits_it_enforces() -> None:
    from celery_timeouts.pools.solo import TaskPool

    assert TaskPool(soft_timeout=1.5, timeout=3).info["timeouts"] == (1.5, 3)
    assert TaskPool().info["timeouts"] == (0, 0)


@pytest.mark.parametrize("not_an_app", ["app", None, object()])
def test_anything_but_a_celery_app_is_a_clear_type_error(not_an_app: object) -> None:
    with pytest.raises(TypeError, match=r"enable_time_limits\(\) needs the Celery app object"):
        enable_time_limits(not_an_app)
