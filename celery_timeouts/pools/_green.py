"""What the gevent and eventlet pools share: the job runner spawned per task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._control_relay import stop_relay_of
from ._limits import RunningJobs, run_job


class GreenPoolControl:
    """Mixed into the gevent and eventlet pools, before Celery's: stopping a task."""

    needs_control_relay = True  # a task that never yields keeps the pidbox greenlet out

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.running_jobs = RunningJobs()

    def terminate_job(self, pid: int, signal: int | None = None) -> None:
        """Stop a running task, a CPU-bound one included (stock kills the greenlet,
        which lands only where it yields); SIGUSR1 raises SoftTimeLimitExceeded."""
        if not self.running_jobs.terminate(pid, signal):
            super().terminate_job(pid, signal)  # type: ignore[misc]

    def on_stop(self) -> None:
        stop_relay_of(self)
        super().on_stop()  # type: ignore[misc]


def run_green_job(
    target: Callable[..., Any],
    args: Any,
    kwargs: Any,
    callback: Callable[..., Any] | None,
    accept_callback: Callable[..., Any] | None,
    getpid: Callable[[], int] | None = None,
    *,
    soft: float | None,
    hard: float | None,
    timeout_callback: Callable[..., Any] | None,
    running: RunningJobs | None = None,
    **_: Any,
) -> None:
    """Spawned as the task's greenlet: its limits are hub timers of that greenlet.

    `getpid` is the pool's: called here, it gives this greenlet's id, which is the
    job's `worker_pid` (an int, as `inspect active` and `terminate_job` need).
    """
    run_job(
        target, args, kwargs, callback, accept_callback,
        getpid() if getpid is not None else None,
        soft=soft, hard=hard, timeout_callback=timeout_callback, running=running,
    )


GREEN_LIMITS_LOG = (
    "celery-timeouts: %s pool — soft and hard limits enforced by hub timers in each "
    "task's greenlet, and by a SIGURG from the watchdog thread for a task that never "
    "yields (a CPU loop); only a call blocked inside C code cannot be interrupted"
)
