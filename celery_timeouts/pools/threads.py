"""`-P threads` with time limits, autoscale, and threads that cannot be stuck for ever.

Celery's stock thread pool is a `ThreadPoolExecutor`: it drops the limits and has no
`grow`/`shrink`, so `--autoscale` crashes the worker. This pool runs its own worker
threads from one queue:

- soft and hard limits come from the shared watchdog thread (`run_job`);
- a task stuck in C past its hard limit (`time.sleep(60)`, a socket read without
  timeout) cannot be interrupted. Shortly after the hard limit its result is stored as
  `TimeLimitExceeded` anyway, its thread is abandoned (whatever it returns later is
  ignored) and a fresh thread takes its slot, so the pool keeps its concurrency;
- `grow`, `shrink` and `num_processes` serve `--autoscale` and `celery control
  pool_grow/pool_shrink`;
- stopping drops the jobs that have not started, so their unacknowledged messages go
  back to the broker (as stock Celery 5.7, celery#10183), keeps enforcing the hard
  limits of those running, and never waits on a stuck thread past its hard limit plus
  the grace; a cold shutdown waits on running threads for the grace at most.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from celery.concurrency import thread as stock
from celery.worker import state as worker_state

from ..backends.watchdog import shared_watchdog
from ._interrupt import blocking_calls_line, interrupt_blocking_calls, leave_blocking_calls
from ._limits import (
    BODY_CODE,
    SOFT_SIGNAL,
    PoolLimits,
    RunningJobs,
    ask_for_a_warm_restart,
    logger,
    run_job,
)
from ._stuck import format_stack, task_id_of, thread_frames
from .options import options_for

_RETIRE = None  # put on the queue: one worker thread finishes
_CHECK_INTERVAL = 0.25  # seconds between scans for threads stuck past their hard limit


class _Job:
    """One task run; the worker thread and the abandoning watchdog race to finish it."""

    __slots__ = (
        "__weakref__", "_finished", "_lock", "abandon_at", "accept_callback", "args",
        "callback", "future", "hard", "kwargs", "soft", "target", "terminated",
        "timeout_callback", "worker",
    )

    def __init__(
        self,
        target: Callable[..., Any],
        args: Any,
        kwargs: Any,
        callback: Callable[..., Any] | None,
        accept_callback: Callable[..., Any] | None,
        timeout_callback: Callable[..., Any] | None,
        soft: float | None,
        hard: float | None,
    ) -> None:
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self.callback = callback
        self.accept_callback = accept_callback
        self.timeout_callback = timeout_callback
        self.soft = soft
        self.hard = hard
        self._finished = False
        self._lock = threading.Lock()
        self.worker: _Worker | None = None
        self.abandon_at = math.inf  # when the pool gives up on it (set when it starts)
        self.terminated = False  # by terminate_job: Celery has reported it (REVOKED)
        # What on_apply hands back, as stock Celery's: cancelled if the pool stops first.
        self.future: Future[None] = Future()

    def finish(self) -> bool:
        """Claim the right to report this job's outcome; False if already reported."""
        with self._lock:
            if self._finished:
                return False
            self._finished = True
            return True

    @property
    def task_id(self) -> str:
        # fast_trace_task / trace_task_ret take (task name, task id, ...).
        return task_id_of(self.args)

    def once(self, report: Callable[..., Any] | None) -> Callable[..., Any] | None:
        """`report`, made to do nothing once the job has been reported by someone else."""
        if report is None:
            return None

        def report_once(*args: Any, **kwargs: Any) -> Any:
            if self.finish():
                return report(*args, **kwargs)
            return None

        return report_once

    def once_hard(self, report: Callable[..., Any] | None) -> Callable[..., Any] | None:
        """A `timeout_callback` whose hard-limit report counts as the job's outcome."""
        if report is None:
            return None

        def report_timeout(soft: bool, seconds: float | None) -> Any:
            if soft or self.finish():  # a soft limit is only logged: not an outcome
                return report(soft, seconds)
            return None

        return report_timeout


class _ApplyResult(stock.ApplyResult):
    """Stock's, plus the `terminate` that `Request.terminate` calls on what `on_apply`
    returned: the pool's `terminate_job` has done the work."""

    def terminate(self, signal: int | None = None) -> None:
        return None


class _Worker(threading.Thread):
    def __init__(self, pool: TaskPool, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.pool = pool
        self.abandoned = False
        self.job: _Job | None = None

    def run(self) -> None:
        pool = self.pool
        while not self.abandoned:
            job = pool._jobs.get()
            if job is _RETIRE:
                if pool._closed:
                    pool._jobs.put(_RETIRE)  # passed on: every thread finishes
                break
            self.job = job
            job.worker = self
            try:
                self._run(job)
            finally:
                self.job = None
        pool._worker_exited(self)

    def _run(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return  # dropped by a stop that raced with this thread taking it
        if job.hard is not None:
            job.abandon_at = time.monotonic() + job.hard + self.pool._abandon_after
            self.pool._check_from_now_on()
        try:
            # A job abandoned meanwhile has been reported already: `once` keeps it quiet.
            # The thread's native id is the job's worker_pid: `inspect active` shows
            # it (as `ps -L` does) and terminate_job finds the job by it.
            run_job(
                job.target, job.args, job.kwargs, job.once(job.callback),
                job.accept_callback, self.native_id, soft=job.soft, hard=job.hard,
                timeout_callback=job.once_hard(job.timeout_callback),
                running=self.pool.running_jobs,
            )
        except BaseException as error:  # a task must never take a pool thread down
            logger.exception("celery-timeouts: job %s failed in the pool", job.task_id)
            job.future.set_exception(error)
        else:
            job.future.set_result(None)


class TaskPool(PoolLimits, stock.TaskPool):
    """Celery's thread pool, with time limits, autoscale and stuck-thread replacement."""

    limit: int  # None given to __init__ is replaced there

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Past Celery's thread pool, whose methods here (__init__, on_stop, _get_info)
        # each work on its ThreadPoolExecutor: this pool has its own threads, and that
        # executor would refuse the limit of 0 that `--autoscale=N` (no minimum) gives.
        stock.BasePool.__init__(self, *args, **kwargs)
        if self.limit is None:  # as ThreadPoolExecutor(max_workers=None)
            self.limit = min(32, (os.cpu_count() or 1) + 4)
        settings = options_for(self.app)
        self._abandon_after: float = settings.abandon_after
        self._max_abandoned: int | None = settings.max_abandoned_threads
        self._interrupt_blocking = settings.interrupt_blocking
        self._patched_blocking = False  # whether this pool turned blocking.patch() on
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._abandoned: set[_Worker] = set()
        self._abandoned_total = 0
        self._started = False
        self._checking = False
        self._closed = False  # stopping or stopped: no job is taken any more
        self._stopping = False  # stopped: the stuck-thread check ends
        self._names = itertools.count(1)
        self._watchdog = shared_watchdog()
        self.running_jobs = RunningJobs()

    # -- BasePool ------------------------------------------------------------------------

    def on_start(self) -> None:
        super().on_start()
        if self._interrupt_blocking:
            self._patched_blocking = interrupt_blocking_calls()
        with self._lock:
            self._start_threads()
        logger.info(
            "celery-timeouts: threads pool — soft and hard limits enforced by the watchdog "
            "thread; %s; a thread stuck past its hard limit is replaced after %g s; "
            "autoscale enabled",
            blocking_calls_line(self._interrupt_blocking), self._abandon_after,
        )

    def on_stop(self) -> None:
        """Warm shutdown: jobs not started are dropped; running ones are waited for, up
        to their hard limit plus the grace (a cold shutdown meanwhile cuts this short)."""
        self._close()
        self._wait_for_threads(cold=False)
        self._leave_blocking_calls()
        stock.BasePool.on_stop(self)  # (see __init__)

    def on_terminate(self) -> None:
        """Cold shutdown: as `on_stop`, but running threads get the grace at most."""
        self._close()
        self._wait_for_threads(cold=True)
        self._leave_blocking_calls()
        super().on_terminate()

    def _leave_blocking_calls(self) -> None:
        if self._patched_blocking:
            self._patched_blocking = False
            leave_blocking_calls()

    def on_apply(self, target: Callable[..., Any], *positional: Any, **options: Any) -> Any:
        """Queue a job; raises RuntimeError once the pool is stopping, as stock Celery.

        Returns what stock Celery's thread pool returns: an `ApplyResult` of the job's
        future, which a stop cancels if the job has not started.
        """
        job = _Job(*self.applied(target, positional, options))
        with self._lock:
            if self._closed:
                raise RuntimeError(
                    "cannot apply a task to a stopped celery-timeouts threads pool"
                )
            self._start_threads()  # without on_start, as stock's executor allows
            self._jobs.put(job)
        return _ApplyResult(job.future)

    def terminate_job(self, pid: int, signal: int | None = None) -> None:
        """Stop the task running in the thread whose native id is `pid` (its
        `worker_pid`): SIGUSR1 raises SoftTimeLimitExceeded in it, any other signal
        unwinds it as the hard limit does. A thread that does not come back (stuck in
        C) is abandoned and replaced after the grace, as past a hard limit."""
        if not self.running_jobs.terminate(pid, signal):
            return
        with self._lock:
            job = next(
                (w.job for w in self._workers if w.native_id == pid and w.job is not None),
                None,
            )
        if job is not None and signal != SOFT_SIGNAL:
            job.terminated = True
            job.abandon_at = min(job.abandon_at, time.monotonic() + self._abandon_after)
            self._check_from_now_on()

    # -- autoscale -----------------------------------------------------------------------

    def grow(self, n: int = 1) -> None:
        with self._lock:
            self.limit += n
            for _ in range(n):
                self._start_worker()

    def shrink(self, n: int = 1) -> None:
        with self._lock:
            n = min(n, self.limit - 1)
            if n <= 0:
                return
            self.limit -= n
        for _ in range(n):
            self._jobs.put(_RETIRE)  # the next n idle threads finish

    @property
    def num_processes(self) -> int:
        return int(self.limit)

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = stock.BasePool._get_info(self)  # (see __init__)
        with self._lock:
            info.update({
                "max-concurrency": self.limit,
                "threads": len(self._workers),
                "abandoned-threads": len(self._abandoned),
                "abandoned-threads-total": self._abandoned_total,
            })
        return info

    # -- internals -------------------------------------------------------------------------

    def _start_worker(self) -> None:
        worker = _Worker(self, f"celery-timeouts-worker-{next(self._names)}")
        self._workers.add(worker)
        worker.start()

    def _start_threads(self) -> None:
        """Start the pool's threads, once: at on_start or the first job (lock held)."""
        if self._started:
            return
        self._started = True
        for _ in range(self.limit):
            self._start_worker()

    def _check_from_now_on(self) -> None:
        """Start the stuck-thread check with the first job that has a hard limit (the
        watchdog thread is then running anyway: a pool without limits starts none)."""
        if not self._checking:
            with self._lock:
                if self._checking:
                    return
                self._checking = True
            self._schedule_check()

    def _close(self) -> None:
        """Take no more jobs, drop those not started, and let idle threads finish.

        A dropped job was never accepted, so its message was never acknowledged: the
        broker gets it back when the worker's connection closes.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        dropped = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _RETIRE:
                job.future.cancel()
                dropped += 1
        self._jobs.put(_RETIRE)  # passed on from thread to thread (see _Worker.run)
        if dropped:
            logger.info(
                "celery-timeouts: threads pool stopping: %d task(s) not started are left "
                "unacknowledged for the broker to deliver again",
                dropped,
            )

    def _wait_for_threads(self, cold: bool) -> None:
        """Return once every worker thread has finished or been abandoned.

        The stuck-thread check goes on meanwhile, so a thread blocked past its hard limit
        plus the grace is abandoned and no longer waited for. A job without a hard limit
        is waited for as a warm shutdown does, unless a cold shutdown begins.
        """
        give_up = math.inf
        while True:
            with self._lock:
                running = [worker for worker in self._workers if worker.is_alive()]
            if not running:
                break
            cold = cold or bool(worker_state.should_terminate)
            if cold and give_up == math.inf:
                give_up = time.monotonic() + self._abandon_after
            if time.monotonic() >= give_up:
                logger.warning(
                    "celery-timeouts: cold shutdown: not waiting for %d running task(s): %s",
                    len(running),
                    ", ".join(w.job.task_id if w.job else w.name for w in running),
                )
                break
            running[0].join(_CHECK_INTERVAL)
        self._stopping = True

    def _worker_exited(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.discard(worker)
            if worker in self._abandoned:
                self._abandoned.discard(worker)
                logger.warning(
                    "celery-timeouts: abandoned thread %s came back and has exited", worker.name
                )

    def _schedule_check(self) -> None:
        if not self._stopping:
            self._watchdog.call_at(time.monotonic() + _CHECK_INTERVAL, self._check_stuck)

    def _check_stuck(self) -> None:
        """Every _CHECK_INTERVAL on the watchdog thread: abandon jobs stuck past their
        hard limit plus the grace. A scan, so that running a job costs no timer."""
        try:
            now = time.monotonic()
            with self._lock:
                running = [worker.job for worker in self._workers]
            for job in running:
                if job is not None and job.abandon_at <= now:
                    self._abandon(job)
        finally:
            self._schedule_check()

    def _abandon(self, job: _Job) -> None:
        """Runs on the watchdog thread when a job outlives its hard limit by the grace.

        Rare by design (only tasks stuck in C), so reporting from here, which writes to
        the result backend, is an acceptable pause for the watchdog's other deadlines.
        """
        worker = job.worker
        if worker is None or worker.job is not job or not job.finish():
            return  # it finished (or is finishing) by itself
        with self._lock:
            worker.abandoned = True
            self._workers.discard(worker)
            self._abandoned.add(worker)
            self._abandoned_total += 1
            stuck = len(self._abandoned)
            self._start_worker()  # its slot goes to a fresh thread
        logger.error(
            "celery-timeouts: task %s is stuck past its hard time limit (%g s) in thread "
            "%s, probably in C code; its thread is abandoned and replaced "
            "(%d abandoned thread(s) still running). It is stuck here (innermost last):\n%s",
            job.task_id, job.hard, worker.name, stuck,
            format_stack(thread_frames(worker.ident, below=BODY_CODE)),
        )
        if job.timeout_callback is not None and not job.terminated:
            try:
                job.timeout_callback(False, job.hard)
            except BaseException:
                logger.exception("celery-timeouts: reporting the time limit of %s", job.task_id)
        if self._max_abandoned is not None and stuck > self._max_abandoned and not self._closed:
            logger.critical(
                "celery-timeouts: %d threads are stuck (limit %d): asking the worker for a "
                "warm restart",
                stuck, self._max_abandoned,
            )
            if not ask_for_a_warm_restart():
                logger.critical("celery-timeouts: this platform has no SIGHUP: restart the "
                                "worker yourself")
