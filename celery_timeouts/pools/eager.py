"""Limits for eager tasks (`task_always_eager`, `.apply()`), opt-in per app.

Test suites run tasks eagerly, in the caller's thread, where Celery enforces no limit.
With `enable_time_limits(app, eager=True)` the same soft/hard pair applies there too,
so a test can drive a task's `SoftTimeLimitExceeded` clean-up path. The hard limit
gives the task's result `TimeLimitExceeded`, as a worker would store it (or raises it,
like any task error, when `throw`/`task_eager_propagates` is set).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from celery import states
from celery.app.task import Task
from celery.exceptions import TimeLimitExceeded
from celery.result import EagerResult
from celery.utils import uuid

from ._limits import HardTimeLimitReached, effective_limit, job_scopes
from .options import options_for

_install_lock = threading.Lock()


def install() -> None:
    """Wrap `celery.app.task.Task.apply` once; apps without `eager=True` are unaffected."""
    with _install_lock:
        if getattr(Task.apply, "celery_timeouts_eager", False):
            return
        stock_apply = Task.apply

        @functools.wraps(stock_apply)
        def apply(
            self: Any,
            args: Any = None,
            kwargs: Any = None,
            link: Any = None,
            link_error: Any = None,
            task_id: str | None = None,
            retries: int | None = None,
            throw: bool | None = None,
            **options: Any,
        ) -> Any:
            def run(task_id: str | None = task_id) -> Any:
                return stock_apply(
                    self, args, kwargs, link, link_error, task_id, retries, throw, **options
                )

            app = self._get_app()
            if not options_for(app).eager:
                return run()
            soft = effective_limit(options.get("soft_time_limit"), self.soft_time_limit)
            hard = effective_limit(options.get("time_limit"), self.time_limit)
            if soft is None and hard is None:
                return run()
            task_id = task_id or uuid()
            hard_scope, soft_scope = job_scopes(soft, hard)
            try:
                with hard_scope, soft_scope:
                    return run(task_id)
            except HardTimeLimitReached:
                error = TimeLimitExceeded(hard)
                if throw or (throw is None and app.conf.task_eager_propagates):
                    raise error from None
                return EagerResult(task_id, error, states.FAILURE, name=self.name)

        apply.celery_timeouts_eager = True  # type: ignore[attr-defined]
        Task.apply = apply
