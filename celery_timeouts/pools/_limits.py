"""Run one Celery job with its soft and hard time limits, as the prefork pool would.

Celery's `Request.execute_using_pool` hands every pool the job's limits (`soft_timeout`,
`timeout`) and a `timeout_callback`; only prefork uses them. Here:

- the soft limit raises `SoftTimeLimitExceeded` inside the task body, where the task can
  catch it and clean up (a catchable scope);
- the hard limit unwinds the body as a `BaseException` that `except Exception:` cannot
  stop, and the job ends through Celery's own `timeout_callback(False, seconds)`, so the
  result backend, the `task_failure` signal, events and acks_late behave as on prefork;
- once the hard limit has fired, the job ends that way whatever the body does: a body
  that catches the unwinding and returns gets it raised again (see `_final`);
- `revoke(terminate=True)` reaches the running job through its scopes (`RunningJobs`):
  SIGUSR1 raises `SoftTimeLimitExceeded` in the body, any other signal unwinds it as
  the hard limit does; Celery's `Request.terminate` stores REVOKED and acknowledges.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from types import CodeType
from typing import Any, NamedTuple

from celery.concurrency.base import apply_target
from celery.exceptions import SoftTimeLimitExceeded

from .._context import os_lock
from .._current import ScopeState
from .._scope import TimeoutScope
from .._validation import MAX_SECONDS
from ..backends.watchdog import shared_watchdog
from ._final import FinalScope
from ._stuck import format_stack, task_id_of, traceback_frames

logger = logging.getLogger("celery_timeouts.pools")

Callback = Callable[..., Any] | None


class HardTimeLimitReached(BaseException):
    """Leaves the job once its hard limit has unwound the task body (never seen by tasks)."""


def effective_limit(requested: float | None, worker_default: float | None) -> float | None:
    """The job's limit: the request's (task option or apply_async), else the worker's
    --time-limit/--soft-time-limit; None (or 0) means no limit."""
    limit = requested if requested else worker_default
    if not limit or isinstance(limit, bool):
        return None
    try:
        limit = float(limit)
    except OverflowError:  # an int beyond floats (10**400) from a message
        limit = math.inf if limit > 0 else -math.inf
    if math.isnan(limit) or limit <= 0 or math.isinf(limit):
        return None
    # Beyond what the timers can count: no practical limit, armed as the longest one.
    return min(limit, MAX_SECONDS)


_APPLY_ARGUMENTS = ("args", "kwargs", "callback", "accept_callback")


class AppliedJob(NamedTuple):
    """One `on_apply` call, with the job's limits as prefork computes them."""

    target: Callable[..., Any]
    args: Any
    kwargs: Any
    callback: Callback
    accept_callback: Callback
    timeout_callback: Callback
    soft: float | None
    hard: float | None


class PoolLimits:
    """Mixed into each of our pools: reads an `on_apply` call. Celery's
    `BasePool.apply_async` passes the target, then everything by keyword; Celery's own
    pool tests pass up to four more positionally, as the stock signatures allow."""

    options: dict[str, Any]  # BasePool's: the worker's --soft-time-limit and --time-limit

    def applied(
        self, target: Callable[..., Any], positional: tuple[Any, ...], options: dict[str, Any]
    ) -> AppliedJob:
        if len(positional) > len(_APPLY_ARGUMENTS):
            raise TypeError(
                f"on_apply() takes at most {len(_APPLY_ARGUMENTS) + 1} positional arguments "
                f"({len(positional) + 1} given)"
            )
        given = dict(zip(_APPLY_ARGUMENTS, positional, strict=False))
        for name in _APPLY_ARGUMENTS:
            if name in given and name in options:
                raise TypeError(f"on_apply() got multiple values for argument {name!r}")
            given.setdefault(name, options.get(name))
        return AppliedJob(
            target, given["args"], given["kwargs"], given["callback"],
            given["accept_callback"], options.get("timeout_callback"),
            soft=effective_limit(options.get("soft_timeout"), self.options.get("soft_timeout")),
            hard=effective_limit(options.get("timeout"), self.options.get("timeout")),
        )


def job_scopes(soft: float | None, hard: float | None) -> tuple[FinalScope, TimeoutScope]:
    """A job's two scopes, to nest in this order: the hard limit outside, the soft one
    (raised where the body is, so the task can catch it) inside."""
    return (
        FinalScope.fresh(hard, HardTimeLimitReached),
        TimeoutScope._trusted(soft, "auto", SoftTimeLimitExceeded, True),
    )


SOFT_SIGNAL = int(getattr(signal, "SIGUSR1", 10))  # prefork's "raise the soft limit"


def ask_for_a_warm_restart() -> bool:
    """Celery's warm restart (SIGHUP: the worker re-executes its command once running
    tasks end); False where the platform has no SIGHUP (Windows)."""
    restart = getattr(signal, "SIGHUP", None)
    if restart is None:
        return False
    os.kill(os.getpid(), restart)
    return True


# How often the hard limit is delivered again to a body that keeps running after it: a
# loop that swallows it (`except BaseException: pass`), or a call in C that holds it.
REINTERRUPT_EVERY = 1.0
# How long a job may run on after that before the pool calls it stuck (see `on_stuck`).
STUCK_AFTER = 3.0


class RunningJob:
    """A job that has started: its two scopes, which `terminate_job` cancels."""

    __slots__ = (
        "_reinterrupting", "_running_on_since", "hard", "on_stuck", "soft", "stuck",
        "terminated_by",
    )

    def __init__(self, hard: FinalScope, soft: TimeoutScope) -> None:
        self.hard = hard
        self.soft = soft
        self.terminated_by: int | None = None
        self._reinterrupting: Any = None  # the watchdog's next look (see keep_interrupting)
        self._running_on_since: float | None = None  # when a look first found it fired
        # Called once on the watchdog thread when the job still runs STUCK_AFTER seconds
        # after a look found its hard limit delivered (the green pools count and log it).
        self.on_stuck: Callable[[RunningJob], object] | None = None
        self.stuck = False  # reported stuck (and still running, while in RunningJobs)

    def keep_interrupting(self, first_look: float) -> None:
        """From `first_look` (time.monotonic) on, every `REINTERRUPT_EVERY` seconds on
        the watchdog thread: if the hard limit has fired and the body still runs,
        deliver it again. Ends with the job."""
        if self._reinterrupting is None:
            self._reinterrupting = shared_watchdog().call_at(first_look, self._look)

    def stop_interrupting(self) -> None:
        looking = self._reinterrupting
        if looking is not None:
            shared_watchdog().cancel(looking)

    def _look(self) -> None:
        hard = self.hard
        if hard.state is not ScopeState.ACTIVE:
            return  # the job is over
        now = time.monotonic()
        if hard.fired and hard.deliver_again():
            next_look = now + REINTERRUPT_EVERY
            since = self._running_on_since
            if since is None:
                self._running_on_since = now
            elif now - since >= STUCK_AFTER and not self.stuck:
                self.stuck = True
                if self.on_stuck is not None:
                    self.on_stuck(self)
        else:  # not delivered yet (a safe place to land is awaited): look again later
            next_look = max(now, hard._deadline) + REINTERRUPT_EVERY
        self._reinterrupting = shared_watchdog().call_at(next_look, self._look)

    def terminate(self, signum: int | None) -> None:
        """As prefork's signal to the child: SIGUSR1 raises `SoftTimeLimitExceeded` in
        the body (it may catch it and clean up); any other signal unwinds the body as
        the hard limit does, killing the child processes it started."""
        if signum == SOFT_SIGNAL:
            self.soft.cancel()
        else:
            self.terminated_by = signum if signum is not None else int(signal.SIGTERM)
            self.hard.cancel()
            self.keep_interrupting(time.monotonic() + REINTERRUPT_EVERY)


class RunningJobs:
    """A pool's running jobs by their `worker_pid`, for `terminate_job`; `on_stuck`
    is given to each job (see `RunningJob.on_stuck`)."""

    def __init__(self, on_stuck: Callable[[RunningJob], object] | None = None) -> None:
        self.on_stuck = on_stuck
        self._jobs: dict[int, RunningJob] = {}
        # An OS lock: the control relay's OS thread takes it too, in processes where
        # threading.Lock is a greenlet lock.
        self._lock = os_lock()

    def add(self, pid: int, job: RunningJob) -> None:
        job.on_stuck = self.on_stuck
        with self._lock:
            self._jobs[pid] = job

    def discard(self, pid: int, job: RunningJob) -> None:
        with self._lock:
            if self._jobs.get(pid) is job:
                del self._jobs[pid]

    def terminate(self, pid: object, signum: int | None) -> bool:
        """Stop the job Celery knows by `pid` (its `worker_pid`); False if none runs."""
        if isinstance(pid, bool) or not isinstance(pid, int):
            return False
        with self._lock:
            job = self._jobs.get(pid)
        if job is None:
            return False
        job.terminate(None if signum is None else int(signum))
        return True

    def __len__(self) -> int:
        return len(self._jobs)

    def stuck(self) -> int:
        """How many running jobs were reported stuck."""
        with self._lock:
            return sum(1 for job in self._jobs.values() if job.stuck)


def run_job(
    target: Callable[..., Any],
    args: Any,
    kwargs: Any,
    callback: Callback,
    accept_callback: Callback,
    pid: int | None = None,
    *,
    soft: float | None,
    hard: float | None,
    timeout_callback: Callback,
    running: RunningJobs | None = None,
) -> None:
    """Run a job under its limits; returns once its callbacks have run.

    With `running`, the job is found there by `pid` while it runs (`terminate_job`).
    """
    hard_scope, soft_scope = job_scopes(soft, hard)
    job = RunningJob(hard_scope, soft_scope)

    def limited_target(*target_args: Any, **target_kwargs: Any) -> Any:
        hard_scope.owner = sys._getframe()
        with hard_scope, soft_scope:
            if hard is not None:
                job.keep_interrupting(hard_scope._deadline + REINTERRUPT_EVERY)
            return target(*target_args, **target_kwargs)

    if running is not None and pid is not None:
        # Before apply_target accepts the job (Celery then knows its worker_pid): a
        # terminate from then on finds it, and one that comes before the scopes are
        # entered interrupts the body as soon as it starts.
        running.add(pid, job)
    try:
        apply_target(
            limited_target, args, kwargs, callback, accept_callback, pid,
            propagate=(HardTimeLimitReached,),
        )
    except HardTimeLimitReached as reached:
        stack = format_stack(traceback_frames(reached.__traceback__, below=BODY_CODE))
        if job.terminated_by is not None:
            # Request.terminate has stored REVOKED, sent task_revoked and acknowledged.
            logger.warning(
                "celery-timeouts: task %s terminated (signal %d) here (innermost last):\n%s",
                task_id_of(args), job.terminated_by, stack,
            )
        else:
            logger.warning(
                "celery-timeouts: task %s reached its hard time limit (%g s) here "
                "(innermost last):\n%s",
                task_id_of(args), hard, stack,
            )
            if timeout_callback is not None:
                timeout_callback(False, hard)
    finally:
        job.stop_interrupting()
        if running is not None and pid is not None:
            running.discard(pid, job)
        if soft_scope.fired and not soft_scope.cancel_called and timeout_callback is not None:
            timeout_callback(True, soft)  # Celery logs "Soft time limit exceeded"


def _body_code() -> CodeType:
    """The code of run_job's `limited_target`: the frames under it are the task's own."""
    for const in run_job.__code__.co_consts:
        if isinstance(const, CodeType) and const.co_name == "limited_target":
            return const
    raise RuntimeError("run_job has no limited_target")  # pragma: no cover - a refactor


BODY_CODE = _body_code()
