"""`-P eventlet` with both time limits (stock Celery enforces neither)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.concurrency import eventlet as stock

from ._green import GREEN_LIMITS_LOG, GreenPoolControl, run_green_job
from ._limits import effective_limit, logger


class TaskPool(GreenPoolControl, stock.TaskPool):
    """Celery's eventlet pool, with the soft limit raised in the task and the hard one
    ending it through Celery's own timeout callback."""

    def on_start(self) -> None:
        super().on_start()
        logger.info(GREEN_LIMITS_LOG, "eventlet")

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
    ) -> None:
        # As the stock on_apply, with our runner in place of apply_target; like it,
        # returns None (Request.terminate calls .terminate() on what on_apply returns).
        target = stock.TaskPool._make_killable_target(target)
        self._quick_apply_sig(sender=self, target=target, args=args, kwargs=kwargs)
        greenlet = self._quick_put(
            run_green_job, target, args, kwargs, callback, accept_callback, self.getpid,
            soft=effective_limit(soft_timeout, self.options.get("soft_timeout")),
            hard=effective_limit(timeout, self.options.get("timeout")),
            timeout_callback=timeout_callback, running=self.running_jobs,
        )
        self._add_to_pool_map(id(greenlet), greenlet)
