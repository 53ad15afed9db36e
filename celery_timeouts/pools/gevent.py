"""`-P gevent` with both time limits (stock Celery enforces only the hard one)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from celery.concurrency import gevent as stock

from ._green import GREEN_LIMITS_LOG, GreenPoolControl, run_green_job
from ._limits import effective_limit, logger


class TaskPool(GreenPoolControl, stock.TaskPool):
    """Celery's gevent pool, with the soft limit raised in the task and the hard one
    ending it through Celery's own timeout callback."""

    def on_start(self) -> None:
        super().on_start()
        logger.info(GREEN_LIMITS_LOG, "gevent")

    def on_apply(
        self,
        target: Callable[..., Any],
        args: Any = None,
        kwargs: Any = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        timeout: float | None = None,
        timeout_callback: Callable[..., Any] | None = None,
        soft_timeout: float | None = None,
        **_: Any,
    ) -> Any:
        runner = functools.partial(
            run_green_job,
            soft=effective_limit(soft_timeout, self.options.get("soft_timeout")),
            hard=effective_limit(timeout, self.options.get("timeout")),
            timeout_callback=timeout_callback,
            running=self.running_jobs,
        )
        # timeout=0: the stock pool then spawns our runner instead of its own
        # gevent.Timeout wrapper, and keeps its greenlet bookkeeping (terminate, ...).
        return super().on_apply(
            target, args, kwargs, callback, accept_callback,
            timeout=0, timeout_callback=timeout_callback, apply_target=runner,
        )
