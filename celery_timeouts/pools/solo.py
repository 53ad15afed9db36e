"""`-P solo` with time limits: the task runs in the worker's main thread, so both limits
use SIGALRM (the signal backend), which also interrupts blocking calls there.

Without signals (`CELERY_TIMEOUTS_SIGNALS=off`, or a platform that has none) the
watchdog thread delivers them into the main thread instead, and the stdlib's blocking
calls are patched to end at the limits (`celery_timeouts.blocking`), as on `-P threads`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from celery.concurrency import solo as stock

from .._context import NO_SIGNALS
from ._control_relay import stop_relay_of
from ._interrupt import blocking_calls_line, interrupt_blocking_calls, leave_blocking_calls
from ._limits import PoolLimits, RunningJobs, logger, run_job
from .options import options_for


class TaskPool(PoolLimits, stock.TaskPool):
    """Celery's solo pool, with soft and hard time limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_apply = self._apply_with_limits  # the stock pool assigns apply_target here
        self.running_jobs = RunningJobs()
        self._patched_blocking = False  # whether this pool turned blocking.patch() on

    @property
    def busy_with_a_task(self) -> bool:
        """A task holds the main thread: the control relay answers `ping` and
        `inspect active` for the worker (see _control_relay)."""
        return len(self.running_jobs) > 0

    def terminate_job(self, pid: int, signal: int | None = None) -> None:
        """Stop the running task (stock solo cannot); SIGUSR1 raises
        SoftTimeLimitExceeded in it."""
        self.running_jobs.terminate(pid, signal)

    needs_control_relay = True  # see _control_relay

    def on_stop(self) -> None:
        stop_relay_of(self)
        super().on_stop()
        if self._patched_blocking:
            self._patched_blocking = False
            leave_blocking_calls()

    def on_start(self) -> None:
        super().on_start()
        if NO_SIGNALS is None:
            logger.info(
                "celery-timeouts: solo pool — soft and hard limits enforced by SIGALRM in "
                "the main thread"
            )
            return
        interrupt = options_for(self.app).interrupt_blocking
        if interrupt:
            self._patched_blocking = interrupt_blocking_calls()
        logger.info(
            "celery-timeouts: solo pool — soft and hard limits enforced by the watchdog "
            "thread in the main thread (%s); %s", NO_SIGNALS, blocking_calls_line(interrupt),
        )

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()
        # As prefork reports its worker-wide limits (0: none); stock solo says ().
        info["timeouts"] = (
            self.options.get("soft_timeout") or 0, self.options.get("timeout") or 0
        )
        return info

    def _apply_with_limits(
        self, target: Callable[..., Any], *positional: Any, **options: Any
    ) -> None:
        job = self.applied(target, positional, options)
        run_job(
            target, job.args, job.kwargs, job.callback, job.accept_callback, os.getpid(),
            soft=job.soft, hard=job.hard, timeout_callback=job.timeout_callback,
            running=self.running_jobs,
        )
