"""`-P eventlet` with both time limits (stock Celery enforces neither)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.concurrency import eventlet as stock

from ._control_relay import stop_relay_of
from ._green import GREEN_LIMITS_LOG, run_green_job
from ._limits import RunningJobs, effective_limit, logger


class TaskPool(stock.TaskPool):
    """Celery's eventlet pool, with the soft limit raised in the task and the hard one
    ending it through Celery's own timeout callback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._running = RunningJobs()

    def terminate_job(self, pid: int, signal: int | None = None) -> None:
        """Stop a running task, a CPU-bound one included (stock kills the green
        thread, which lands only where it yields, and waits for it);
        SIGUSR1 raises SoftTimeLimitExceeded."""
        if not self._running.terminate(pid, signal):
            super().terminate_job(pid, signal)

    needs_control_relay = True  # see _control_relay

    def on_stop(self) -> None:
        stop_relay_of(self)
        super().on_stop()

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
            timeout_callback=timeout_callback, running=self._running,
        )
        self._add_to_pool_map(id(greenlet), greenlet)
