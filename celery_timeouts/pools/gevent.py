"""`-P gevent` with both time limits (stock Celery enforces only the hard one)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from celery.concurrency import gevent as stock

from ._green import GreenPoolControl, run_green_job
from ._limits import PoolLimits


class TaskPool(GreenPoolControl, PoolLimits, stock.TaskPool):
    """Celery's gevent pool, with the soft limit raised in the task and the hard one
    ending it through Celery's own timeout callback."""

    library = "gevent"

    def on_apply(self, target: Callable[..., Any], *positional: Any, **options: Any) -> Any:
        job = self.applied(target, positional, options)
        runner = functools.partial(
            run_green_job, soft=job.soft, hard=job.hard,
            timeout_callback=job.timeout_callback, running=self.running_jobs,
        )
        # timeout=0: the stock pool then spawns our runner instead of its own
        # gevent.Timeout wrapper, and keeps its greenlet bookkeeping (terminate, ...).
        return super().on_apply(
            target, job.args, job.kwargs, job.callback, job.accept_callback,
            timeout=0, timeout_callback=job.timeout_callback, apply_target=runner,
        )
