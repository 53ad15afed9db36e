"""What the demo runs: for each pool a stock worker and a celery-timeouts one, the same
tasks sent to both, and the threads pool under ``--autoscale``.

Every worker is launched at once and driven from one loop in the main thread (so Ctrl-C
lands where the clean-up is): a worker gets its next task as soon as the previous one has
a result, and is asked to stop as soon as it has none left. Tasks go to each worker one
at a time, on a queue of its own: solo runs one task at a time anyway, and a task that
takes its worker down must not take the others' outcomes with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .workers import READY_TIMEOUT, Broker, WorkerProcess, launch_worker

TASKS_MODULE = "celery_timeouts.demo.tasks"
STOCK, ENABLED = "stock", "celery-timeouts"
MODES = (STOCK, ENABLED)
# "1" in a worker's environment: tasks.py enables celery-timeouts there.
ENABLE_LIMITS = "CT_ENABLE_LIMITS"
SOFT_LIMIT, HARD_LIMIT = 1.0, 3.0
RUN_FOR = 6.0  # how long each task would run without limits: long enough to see them ignored
# The one blocking call of the two tasks that make one (a sleep, a read from a silent
# server): past the hard limit, shorter than RUN_FOR so that the demo stays quick.
BLOCKED_FOR = 4.0
# A task with no result this long after it was sent is reported as such, and its worker
# gets no more tasks.
RESULT_TIMEOUT = RUN_FOR + HARD_LIMIT + 6
AUTOSCALE = "4,1"
AUTOSCALE_TASKS = 3
AUTOSCALE_TIMEOUT = 15.0
GROW_ERROR = "'TaskPool' object has no attribute 'grow'"
# What Celery logs before it shuts a worker down, e.g. after an exception in the hub.
UNRECOVERABLE = "Unrecoverable error"
LIMIT_ERRORS = ("SoftTimeLimitExceeded", "TimeLimitExceeded")
# Celery's states of a finished task (celery.states.READY_STATES, without importing Celery).
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
# What the tasks in tasks.py return.
FINISHED = "finished"
ALARM_FIRED = "alarm fired"
ALARM_DID_NOT_FIRE = "alarm did not fire"
# In a STARTED task's meta: when it started (time.time() in the worker), see tasks.py.
STARTED_AT = "started_at"
# Added to it by the task that catches its soft limit, when it did (time.time() too).
SOFT_LIMIT_CAUGHT_AT = "soft_limit_caught_at"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DemoTask:
    key: str  # short name for --json
    name: str  # the function in tasks.py
    label: str
    soft: float = SOFT_LIMIT
    hard: float = HARD_LIMIT
    # It catches SoftTimeLimitExceeded and goes on, and says when (SOFT_LIMIT_CAUGHT_AT).
    catches_soft: bool = False
    run_for: float = RUN_FOR  # its first argument: how long it runs without limits
    # Its second argument is the port of the demo's silent server (see runner.py).
    reads_silent_server: bool = False

    def args(self, server_port: int) -> list[float]:
        return [self.run_for, server_port] if self.reads_silent_server else [self.run_for]


TASKS = (
    DemoTask("cpu", "cpu_bound", "CPU-bound loop"),
    DemoTask("sleep", "blocking_sleep", "time.sleep loop"),
    # One blocking call each, as most tasks on -P threads are.
    DemoTask("one_sleep", "one_long_sleep", f"time.sleep({BLOCKED_FOR:g})", run_for=BLOCKED_FOR),
    DemoTask(
        "silent_server", "read_silent_server", "read, silent server", run_for=BLOCKED_FOR,
        reads_silent_server=True,
    ),
    # Only the hard limit can end it. Before the alarm task, which takes some stock
    # workers down.
    DemoTask("catch_soft", "ignores_soft_limit", "catches soft limit", catches_soft=True),
    # Its own 1 s alarm must fire before Celery's soft limit does: so a 2 s soft limit.
    DemoTask("alarm", "alarm_style", "signal.alarm(1)", soft=2.0),
)


@dataclass
class Outcome:
    """What became of one task: Celery's state or what went wrong, and when."""

    outcome: str  # "SUCCESS", the exception's class name, "worker crashed", "no result", ...
    # From the task's start (its STARTED_AT, else its sending) to its result being stored.
    seconds: float | None = None
    result: str | None = None
    message: str | None = None  # the exception's message
    # The worker's "Unrecoverable error: ..." if it logged one while this task ran.
    worker_error: str | None = None
    # When a task that catches its soft limit caught it, in seconds from its start; None
    # if it never had to (or is not such a task).
    soft_limit_caught: float | None = None

    def text(self, task: DemoTask) -> str:
        """One table cell, e.g. ``SUCCESS 6.0 s (limits ignored)``."""
        if self.seconds is None:
            return self.outcome
        took = f"{self.seconds:.1f} s"
        if self.result == ALARM_FIRED:
            return f"alarm fired {took}"
        if self.result == ALARM_DID_NOT_FIRE:
            return f"SUCCESS {took} (no alarm in the task)"
        note = ""
        succeeded = self.outcome == "SUCCESS"
        if self.soft_limit_caught is not None:
            # Raised, and caught on purpose: what is left to see is the hard limit.
            note = " (soft limit caught)"
            if succeeded and self.seconds > task.hard:
                note = " (soft limit caught, hard limit ignored)"
        elif succeeded and self.seconds > task.hard:
            note = " (limits ignored)"
        elif (succeeded and self.seconds > task.soft + 0.5) or (
            self.outcome == "TimeLimitExceeded" and task.soft < task.hard
        ):
            note = " (soft limit ignored)"
        return f"{self.outcome} {took}{note}"

    def footnotes(self, task: DemoTask) -> list[str]:
        """What the table cell has no room for: an error's message, a worker's end."""
        notes = []
        if self.message and self.outcome not in LIMIT_ERRORS:
            prefix = "" if self.message.startswith(self.outcome) else f"{self.outcome}: "
            notes.append(prefix + self.message)
        if self.worker_error:
            who = "the worker"
            if task.key == "alarm":
                who = "the alarm reached the worker, not the task: it"
            notes.append(f"{who} logged {self.worker_error!r} and shut down")
        return notes


def _seconds_since(sent: datetime, done: datetime | str | None) -> float | None:
    """Seconds from `sent` to the result's `date_done` (a datetime or an ISO string)."""
    if done is None:
        return None
    if isinstance(done, str):
        done = datetime.fromisoformat(done)
    if done.tzinfo is None:
        done = done.replace(tzinfo=timezone.utc)
    return max((done - sent).total_seconds(), 0.0)


def _started_at(meta: Any) -> datetime:
    """The STARTED_AT the task stored, or now if it stored none (a Celery of its own)."""
    if isinstance(meta, dict) and isinstance(meta.get(STARTED_AT), (int, float)):
        return datetime.fromtimestamp(meta[STARTED_AT], timezone.utc)
    return datetime.now(timezone.utc)


def outcome_of(result: Any, started: datetime) -> Outcome:
    """The Outcome of a finished AsyncResult that started at `started` (UTC)."""
    seconds = _seconds_since(started, result.date_done)
    value = result.result
    if result.state == "SUCCESS":
        return Outcome("SUCCESS", seconds, result=str(value))
    if isinstance(value, BaseException):
        return Outcome(type(value).__name__, seconds, message=str(value))
    return Outcome(str(result.state), seconds, message=repr(value))


@dataclass
class Pending:
    task: DemoTask
    result: Any  # AsyncResult
    sent: datetime
    sent_at: float  # monotonic
    log_start: int  # how much the worker had logged when the task was sent
    started: datetime | None = None  # its STARTED_AT, once seen
    soft_limit_caught: float | None = None  # its SOFT_LIMIT_CAUGHT_AT, once seen


@dataclass
class WorkerRun:
    """One worker and the tasks it is to run, one after another."""

    pool: str
    mode: str
    worker: WorkerProcess
    queue: str
    launched_at: float
    server_port: int = 0  # the silent server's (runner.py)
    to_send: list[DemoTask] = field(default_factory=lambda: list(TASKS))
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    ready: bool = False
    done: bool = False
    pending: Pending | None = None

    @property
    def title(self) -> str:
        return f"{self.pool}/{self.mode}"

    def step(self, client: Any, progress: Progress) -> None:
        """Advance by whatever has happened since the last call; never blocks."""
        if self.done:
            return
        if not self.ready:
            self._check_ready(progress)
        elif self.pending is not None:
            self._check_pending(progress)
        if self.ready and self.pending is None and not self.done:
            self._send_next(client, progress)

    def _check_ready(self, progress: Progress) -> None:
        if self.worker.is_ready():
            self.ready = True
            progress(f"{self.title}: worker ready")
        elif self.worker.returncode is not None:
            self._give_up(f"worker exited with {self.worker.returncode} before it was ready")
            progress(f"{self.title}: worker did not start:\n{self.worker.tail(10)}")
        elif time.monotonic() - self.launched_at > READY_TIMEOUT:
            self._give_up(f"worker not ready within {READY_TIMEOUT:.0f} s")
            progress(f"{self.title}: worker not ready:\n{self.worker.tail(10)}")

    def _check_pending(self, progress: Progress) -> None:
        pending = self.pending
        assert pending is not None
        waited = time.monotonic() - pending.sent_at
        try:
            state = pending.result.state
        except ValueError:  # a file:// result read while the worker rewrites it: not yet
            return
        if state == "STARTED":
            self._read_started(pending)
        if state in READY_STATES:
            got = outcome_of(pending.result, pending.started or pending.sent)
        elif self.worker.returncode is not None:
            got = Outcome("worker crashed", waited, message=self._last_error())
            self.to_send = []
        elif waited > RESULT_TIMEOUT:
            got = Outcome(f"no result after {waited:.0f} s", None, message=self._last_error())
            self.to_send = []
        else:
            return
        got.worker_error = self._unrecoverable_error(pending.log_start)
        got.soft_limit_caught = pending.soft_limit_caught
        if got.worker_error:
            self.to_send = []  # it is shutting down
        self.outcomes[pending.task.key] = got
        self.pending = None
        progress(f"{self.title}: {pending.task.label} -> {got.text(pending.task)}")

    def _read_started(self, pending: Pending) -> None:
        """Note the STARTED meta's start and, for a task that catches its soft limit (its
        result replaces the meta), when it caught it."""
        if pending.started is not None and not pending.task.catches_soft:
            return
        try:
            meta = pending.result.info
        except ValueError:  # read while the worker rewrites it, as above
            return
        if pending.started is None:
            pending.started = _started_at(meta)
        caught = meta.get(SOFT_LIMIT_CAUGHT_AT) if isinstance(meta, dict) else None
        if pending.soft_limit_caught is None and isinstance(caught, (int, float)):
            pending.soft_limit_caught = round(max(caught - pending.started.timestamp(), 0), 6)

    def _send_next(self, client: Any, progress: Progress) -> None:
        if not self.to_send:
            self.done = True
            for task in TASKS:
                self.outcomes.setdefault(task.key, Outcome("not run"))
            self.worker.request_stop()  # its shutdown overlaps the other workers' tasks
            return
        task = self.to_send.pop(0)
        sent = datetime.now(timezone.utc)
        result = client.send_task(
            f"{TASKS_MODULE}.{task.name}",
            args=task.args(self.server_port),
            queue=self.queue,
            soft_time_limit=task.soft,
            time_limit=task.hard,
        )
        log_start = len(self.worker.log_text())
        self.pending = Pending(task, result, sent, time.monotonic(), log_start)
        progress(f"{self.title}: {task.label} sent")

    def _give_up(self, reason: str) -> None:
        self.done = True
        for task in TASKS:
            self.outcomes[task.key] = Outcome("worker did not start", message=reason)

    def _unrecoverable_error(self, since: int) -> str | None:
        """The first "Unrecoverable error" line logged after offset `since`, if any."""
        for line in self.worker.log_text()[since:].splitlines():
            if UNRECOVERABLE in line:
                return line[line.index(UNRECOVERABLE):].strip()[:200]
        return None

    def _last_error(self) -> str | None:
        """The worker log's last line that names an error, to say why it crashed."""
        for line in reversed(self.worker.log_text().splitlines()):
            if "Error" in line or "Exception" in line:
                return line.strip()[-200:]
        return None


@dataclass
class AutoscaleRun:
    """A ``-P threads --autoscale`` worker given more tasks than its minimum of threads."""

    mode: str
    worker: WorkerProcess
    queue: str
    launched_at: float
    results: list[Any] = field(default_factory=list)
    sent_at: float | None = None
    ready: bool = False
    done: bool = False
    died: bool = False
    served: int = 0

    @property
    def title(self) -> str:
        return f"threads --autoscale={AUTOSCALE}/{self.mode}"

    @property
    def grow_error(self) -> bool:
        return GROW_ERROR in self.worker.log_text()

    def step(self, client: Any, progress: Progress) -> None:
        """Advance by whatever has happened since the last call; never blocks."""
        if self.done:
            return
        exited = self.worker.returncode is not None
        if not self.ready:
            self.ready = self.worker.is_ready()
            if self.ready:
                self._send(client, progress)
            elif exited or time.monotonic() - self.launched_at > READY_TIMEOUT:
                self._finish(progress, died=exited)
            return
        self.served = sum(1 for result in self.results if result.ready())
        assert self.sent_at is not None
        if self.served == len(self.results) or exited:
            self._finish(progress, died=exited)
        elif time.monotonic() - self.sent_at > AUTOSCALE_TIMEOUT:
            self._finish(progress, died=False)

    def _send(self, client: Any, progress: Progress) -> None:
        self.sent_at = time.monotonic()
        self.results = [
            client.send_task(f"{TASKS_MODULE}.blocking_sleep", args=[1.0], queue=self.queue)
            for _ in range(AUTOSCALE_TASKS)
        ]
        progress(f"{self.title}: {AUTOSCALE_TASKS} tasks sent at once")

    def _finish(self, progress: Progress, *, died: bool) -> None:
        self.done, self.died = True, died
        self.worker.request_stop()
        progress(f"{self.title}: {self.summary()}")

    def summary(self) -> str:
        if self.died:
            cause = f": {GROW_ERROR}" if self.grow_error else ""
            return f"worker died{cause} (served {self.served} of {AUTOSCALE_TASKS} tasks)"
        if not self.ready:
            return "worker did not start"
        return f"served {self.served} of {AUTOSCALE_TASKS} tasks"


def _launch(
    broker: Broker, workdir: Path, pool: str, mode: str, tag: str, extra: Sequence[str] = ()
) -> tuple[WorkerProcess, str]:
    """Start one demo worker; its node name doubles as its queue's name."""
    node = f"celery-timeouts-demo-{tag}-{pool}-{'stock' if mode == STOCK else 'ct'}"
    env = {ENABLE_LIMITS: "1" if mode == ENABLED else "0"}
    package_root = Path(__file__).resolve().parents[2]
    worker = launch_worker(
        TASKS_MODULE,
        pool,
        broker,
        workdir,
        node=node,
        concurrency=1,
        extra_args=["-Q", node, *extra],
        env=env,
        python_path=[package_root],
    )
    return worker, node


def launch_all(
    broker: Broker,
    workdir: Path,
    pools: Sequence[str],
    tag: str,
    started: list[WorkerProcess],
    *,
    autoscale: bool,
    server_port: int = 0,
) -> tuple[list[WorkerRun], list[AutoscaleRun]]:
    """Start a stock and a celery-timeouts worker per pool (and the autoscale pair).

    Each worker is added to `started` as soon as it exists, so whoever stops them knows
    every one even if this is cut short.
    """
    runs: list[WorkerRun] = []
    for pool in pools:
        for mode in MODES:
            worker, queue = _launch(broker, workdir, pool, mode, tag)
            started.append(worker)
            runs.append(WorkerRun(pool, mode, worker, queue, time.monotonic(), server_port))
    scaled: list[AutoscaleRun] = []
    if autoscale:
        for mode in MODES:
            extra = [f"--autoscale={AUTOSCALE}"]
            worker, queue = _launch(broker, workdir, "threads", mode, f"{tag}-autoscale", extra)
            started.append(worker)
            scaled.append(AutoscaleRun(mode, worker, queue, time.monotonic()))
    return runs, scaled
