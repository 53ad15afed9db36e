"""One demo run: a broker, every worker launched at once, driven to the end, all stopped.

The embedded default needs no server: kombu's filesystem transport and a ``file://``
result backend in a temporary folder, deleted afterwards. Every worker leads a process
group of its own, so Ctrl-C reaches only this process; it asks the loop to stop, and the
workers are then stopped by PID (SIGKILL to their group if they linger).
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .report import DemoReport
from .scenario import AutoscaleRun, Progress, WorkerRun, launch_all
from .workers import (
    STOP_TIMEOUT,
    Broker,
    WorkerError,
    WorkerProcess,
    filesystem_broker_in,
    redis_broker,
    stop_workers,
)

POOLS = ("prefork", "solo", "threads", "gevent", "eventlet")
# What a pool needs beyond Celery: the module to import and the extra that installs it.
GREEN_LIBRARIES = {"gevent": "gevent", "eventlet": "eventlet"}
POLL = 0.05
# After Ctrl-C, how long a worker busy with a task gets before its group is killed.
INTERRUPTED_STOP_TIMEOUT = 3.0
BROKER_CHECK_TIMEOUT = 3.0


class DemoError(Exception):
    """The demo cannot run as asked; the message says why and what to do."""


def missing_extra(pool: str) -> str | None:
    """Why `pool` cannot run here ("not installed: pip install ..."), or None if it can.

    The library is really imported (a broken install counts as missing), with its
    warnings silenced: eventlet announces its deprecation on import.
    """
    library = GREEN_LIBRARIES.get(pool, "celery")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(library)
    except ImportError:
        return f"not installed: pip install celery-timeouts[{library}]"
    return None


class StopRequests:
    """SIGINT and SIGTERM while the demo runs: the first asks the loop to stop.

    A second one raises KeyboardInterrupt, except while workers are being launched (a
    worker started but not yet recorded would be left behind) or stopped (the clean-up
    must finish). Installed only in the main thread, the one Python delivers signals to.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.deferring = True  # until the workers are launched and recorded
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and not self.deferring:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Handle the signals inside the block; the previous handlers come back after it."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)


def broker_for(url: str | None, folder: Path) -> Broker:
    """The broker `url` names (``redis://...``), or the filesystem default under `folder`.

    Raises DemoError naming `url` if it is not a Redis URL.
    """
    if url is None:
        return filesystem_broker_in(folder / "broker")
    try:
        return redis_broker(url)
    except ValueError as error:
        raise DemoError(
            f"--broker: {error}; or leave --broker out for the embedded default"
        ) from None


def check_broker(client: Any, broker: Broker) -> None:
    """Fail fast if the broker does not answer, rather than waiting for workers that cannot.

    Raises DemoError naming the broker's URL and the error.
    """
    try:
        with client.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0.2, timeout=BROKER_CHECK_TIMEOUT
            )
    except ImportError as error:
        raise DemoError(
            f"broker {broker.broker_url} needs the Redis client ({error}): pip install redis"
        ) from None
    except Exception as error:
        raise DemoError(
            f"broker {broker.broker_url} does not answer ({type(error).__name__}: {error}); "
            "start it, or leave --broker out for the embedded default"
        ) from None


def drive(
    runs: Sequence[WorkerRun | AutoscaleRun], client: Any, stops: StopRequests, progress: Progress
) -> bool:
    """Step every run until all are done; False if a stop was requested first."""
    while not all(run.done for run in runs):
        if stops.requested:
            return False
        for run in runs:
            run.step(client, progress)
        time.sleep(POLL)
    return True


def run_demo(
    pools: Sequence[str],
    broker_url: str | None,
    progress: Progress,
    *,
    log_dir: Path | None = None,
) -> DemoReport:
    """Run the demo on `pools` and return what happened; every worker is stopped after.

    The workers' logs go to `log_dir` if given (kept), else with the broker's files into
    a temporary folder.

    Raises DemoError if Celery is missing or the broker does not answer.
    """
    if missing_extra("solo") is not None:
        raise DemoError(
            "the demo runs real Celery workers and Celery is not installed: "
            "pip install celery-timeouts[celery]"
        )
    started_at = time.monotonic()
    missing = {pool: note for pool in pools if (note := missing_extra(pool)) is not None}
    runnable = [pool for pool in pools if pool not in missing]
    stops = StopRequests()
    with (
        stops.installed(),
        tempfile.TemporaryDirectory(prefix="celery-timeouts-demo-") as folder,
    ):
        broker = broker_for(broker_url, Path(folder))
        workdir = Path(folder) if log_dir is None else log_dir
        runs, scaled, completed = _run_workers(
            broker, runnable, workdir, stops, progress, check=broker_url is not None
        )
    return DemoReport(
        broker=broker.name,
        pools=list(pools),
        missing=missing,
        runs=runs,
        autoscale=scaled,
        seconds=time.monotonic() - started_at,
        interrupted=not completed,
    )


def _run_workers(
    broker: Broker,
    pools: Sequence[str],
    workdir: Path,
    stops: StopRequests,
    progress: Progress,
    *,
    check: bool,
) -> tuple[list[WorkerRun], list[AutoscaleRun], bool]:
    """Launch the workers, drive them and always stop them: what they did, and whether
    they finished before a stop was requested.

    Raises DemoError if `check` and the broker does not answer.
    """
    client = broker.client_app("celery-timeouts-demo")
    cleanup = contextlib.ExitStack()
    started: list[WorkerProcess] = []
    runs: list[WorkerRun] = []
    scaled: list[AutoscaleRun] = []
    try:
        if check:
            check_broker(client, broker)
        workdir.mkdir(parents=True, exist_ok=True)
        server = cleanup.enter_context(silent_server())
        runs, scaled = launch_all(
            broker, workdir, pools, uuid.uuid4().hex[:6], started, autoscale="threads" in pools,
            server_port=server.getsockname()[1],
        )
        stops.deferring = False
        if started:
            progress(f"started {len(started)} workers on the {broker.name} broker")
        return runs, scaled, drive([*runs, *scaled], client, stops, progress)
    except KeyboardInterrupt:
        return runs, scaled, False  # a second Ctrl-C: what has finished is still reported
    finally:
        stops.deferring = True
        _stop_all(started, interrupted=stops.requested, progress=progress)
        client.close()
        cleanup.close()


@contextlib.contextmanager
def silent_server() -> Iterator[socket.socket]:
    """A server on 127.0.0.1 that accepts connections (the kernel does, from its backlog)
    and never answers: what a task blocked on a stuck peer reads from."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        yield server
    finally:
        server.close()


def _stop_all(workers: list[WorkerProcess], *, interrupted: bool, progress: Progress) -> None:
    """Stop every worker started; a failure to is reported, never raised over the result."""
    if not workers:
        return
    timeout = INTERRUPTED_STOP_TIMEOUT if interrupted else STOP_TIMEOUT
    if interrupted:
        progress(f"interrupted: stopping {len(workers)} workers (at most {timeout:.0f} s)")
    try:
        stop_workers(workers, timeout)
    except WorkerError as error:
        progress(f"error: {error}")
    for worker in workers:
        worker.keep_log()
