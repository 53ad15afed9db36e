"""`-P eventlet` with both time limits (stock Celery enforces neither)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.concurrency import eventlet as stock

from ._green import GreenPoolControl, run_green_job
from ._limits import PoolLimits


class TaskPool(GreenPoolControl, PoolLimits, stock.TaskPool):
    """Celery's eventlet pool, with the soft limit raised in the task and the hard one
    ending it through Celery's own timeout callback."""

    library = "eventlet"

    def on_apply(self, target: Callable[..., Any], *positional: Any, **options: Any) -> None:
        # As the stock on_apply, with our runner in place of apply_target; like it,
        # returns None (Request.terminate calls .terminate() on what on_apply returns).
        job = self.applied(target, positional, options)
        target = stock.TaskPool._make_killable_target(target)
        self._quick_apply_sig(sender=self, target=target, args=job.args, kwargs=job.kwargs)
        greenlet = self._quick_put(
            run_green_job, target, job.args, job.kwargs, job.callback, job.accept_callback,
            self.getpid, soft=job.soft, hard=job.hard,
            timeout_callback=job.timeout_callback, running=self.running_jobs,
        )
        self._add_to_pool_map(id(greenlet), greenlet)
