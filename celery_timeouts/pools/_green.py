"""What the gevent and eventlet pools share: the job runner spawned per task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._context import NO_SIGNALS, native_thread_id
from ._control_relay import say_from_any_thread, stop_relay_of
from ._limits import (
    STUCK_AFTER,
    RunningJob,
    RunningJobs,
    ask_for_a_warm_restart,
    logger,
    run_job,
)
from ._stuck import format_stack, job_frames_in_thread
from .options import options_for


class GreenPoolControl:
    """Mixed into the gevent and eventlet pools, before Celery's: stopping a task, and
    tasks stuck past their hard limit."""

    needs_control_relay = True  # a task that never yields keeps the pidbox greenlet out
    library: str  # "gevent", "eventlet": named in the start-up log line

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.running_jobs = RunningJobs(on_stuck=self._job_stuck)
        self._stuck_total = 0
        self._max_stuck = options_for(self.app).max_abandoned_threads  # type: ignore[attr-defined]
        self._hub_thread = native_thread_id()  # the pool is built in the hub's OS thread

    def on_start(self) -> None:
        super().on_start()  # type: ignore[misc]
        logger.info(_GREEN_LIMITS_LOG, self.library)

    def _job_stuck(self, job: RunningJob) -> None:
        """On the watchdog thread: a task runs on STUCK_AFTER seconds after its hard limit
        was delivered again and again (it catches it, or is blocked in C). A greenlet
        cannot be abandoned as a thread is: count it, say where it is, and past
        `max_abandoned_threads` ask for a warm restart. Written to stderr, since
        logging's locks are green ones and the hub may be held by that very task."""
        self._stuck_total += 1
        stuck = self.running_jobs.stuck()
        frames = job_frames_in_thread(self._hub_thread, job.hard.owner)
        where = (
            "it holds the worker's CPU (no other task runs meanwhile), here (innermost "
            f"last):\n{format_stack(frames)}"
            if frames is not None
            else "it is waiting in the hub"
        )
        say_from_any_thread(
            f"celery-timeouts: a task is still running {STUCK_AFTER:g} s after its hard "
            f"time limit ({job.hard.seconds or 0:g} s) was delivered again and again: it "
            f"catches it (except BaseException:) or is blocked in C ({stuck} such "
            f"task(s) running); {where}"
        )
        if self._max_stuck is not None and stuck > self._max_stuck:
            say_from_any_thread(
                f"celery-timeouts: {stuck} tasks are stuck (limit {self._max_stuck}): "
                f"asking the worker for a warm restart"
            )
            if not ask_for_a_warm_restart():
                say_from_any_thread("celery-timeouts: this platform has no SIGHUP: restart "
                                    "the worker yourself")

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()  # type: ignore[misc]
        info["stuck-tasks"] = self.running_jobs.stuck()
        info["stuck-tasks-total"] = self._stuck_total
        return info

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


_GREEN_LIMITS_LOG = (
    "celery-timeouts: %s pool — soft and hard limits enforced by hub timers in each "
    "task's greenlet, and by a SIGURG from the watchdog thread for a task that never "
    "yields (a CPU loop); only a call blocked inside C code cannot be interrupted"
    if NO_SIGNALS is None else
    "celery-timeouts: %s pool — soft and hard limits enforced by hub timers in each "
    f"task's greenlet; a task that never yields (a CPU loop) is not interrupted: "
    f"{NO_SIGNALS}, and the guard that stops such tasks needs SIGURG"
)
