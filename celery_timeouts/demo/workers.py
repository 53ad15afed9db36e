"""Real `celery worker` subprocesses: start them, wait until they take tasks, always stop them.

A `Broker` says where a worker and its client meet; the worker's app reads it from the
environment (`configure_from_env`), so one app module serves any broker. Each worker runs
``python -m celery worker`` (whose __main__ applies the gevent/eventlet patches for ``-P``)
in a process group of its own, so a Ctrl-C in the terminal does not reach it and stopping
it can reach every process it forked: SIGTERM (a warm shutdown) by PID first, SIGKILL to
the whole group if it outlives its timeout.

Nothing here imports Celery at module level: the client side imports it when asked for an
app, and this module stays importable to tell a user that Celery is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "BROKER_URL",
    "RESULT_BACKEND",
    "TRANSPORT_OPTIONS",
    "Broker",
    "WorkerError",
    "WorkerProcess",
    "configure",
    "configure_from_env",
    "filesystem_broker_in",
    "launch_worker",
    "living_members",
    "redis_broker",
    "running_worker",
    "stop_workers",
    "supervised",
]

# The environment variables a worker's app reads its broker from.
BROKER_URL = "CT_BROKER_URL"
RESULT_BACKEND = "CT_RESULT_BACKEND"
TRANSPORT_OPTIONS = "CT_TRANSPORT_OPTIONS"

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40
_POLL = 0.05

Worker = TypeVar("Worker", bound="WorkerProcess")


class WorkerError(RuntimeError):
    """A worker exited, or did not log what it should have, in time; the message has its log."""


# --- brokers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    """Where workers and their client meet: broker URL, result backend, transport options."""

    name: str
    broker_url: str
    result_backend: str
    transport_options: Mapping[str, Any] = field(default_factory=dict)
    #: The kombu transport ("module:Class") client apps send with, if not the URL's.
    client_transport: str | None = None

    def environment(self) -> dict[str, str]:
        """The variables `configure_from_env` reads in the worker."""
        return {
            BROKER_URL: self.broker_url,
            RESULT_BACKEND: self.result_backend,
            TRANSPORT_OPTIONS: json.dumps(dict(self.transport_options)),
        }

    def client_app(self, main: str = "celery-timeouts-client") -> Any:
        """A Celery app in this process that sends tasks here and reads their results."""
        from celery import Celery

        app = Celery(main, set_as_current=False)
        configure(app, self.broker_url, self.result_backend, self.transport_options)
        if self.client_transport is not None:
            app.conf.broker_transport = self.client_transport
        return app


def filesystem_broker_in(folder: Path) -> Broker:
    """kombu's filesystem transport and a ``file://`` result backend, all kept under `folder`."""
    queue, processed, control, results = (
        folder / name for name in ("queue", "processed", "control", "results")
    )
    for path in (queue, processed, control, results):
        path.mkdir(parents=True, exist_ok=True)
    options = {
        # One folder both ways: producers and consumers are peers here.
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(processed),
        "store_processed": False,
        # Its default is "control" relative to the working directory.
        "control_folder": str(control),
        # The transport polls its folder; kombu's default of 1 s would dominate every task.
        "polling_interval": 0.05,
    }
    # Its clients write each message whole: see whole_messages.py.
    sender = "celery_timeouts.demo.whole_messages:Transport"
    return Broker("filesystem", "filesystem://", f"file://{results}", options, sender)


def redis_broker(url: str) -> Broker:
    """Messages on the database `url` names (0 if none), results on the next one.

    Raises ValueError naming `url` if it is not a ``redis://`` or ``rediss://`` URL with a
    numeric database.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in ("redis", "rediss") or not sep or not rest:
        raise ValueError(f"broker {url!r} is not a Redis URL; use redis://HOST:PORT[/DB]")
    server, _, database = rest.partition("/")
    database = database or "0"
    if not database.isdigit():
        raise ValueError(
            f"broker {url!r} names database {database!r}; use a number, e.g. {scheme}://{server}/0"
        )
    base = f"{scheme}://{server}"
    return Broker("redis", f"{base}/{database}", f"{base}/{int(database) + 1}")


def configure(
    app: Any, broker_url: str, result_backend: str, transport_options: Mapping[str, Any]
) -> Any:
    """Point `app` at a broker with settings that make a short-lived worker predictable."""
    app.conf.update(
        broker_url=broker_url,
        result_backend=result_backend,
        broker_transport_options=dict(transport_options),
        # Acknowledged when it starts: a worker killed mid-task does not get it back.
        task_acks_late=False,
        # One message at a time, so a slow task never holds the next one hostage.
        worker_prefetch_multiplier=1,
        # Results carry the task's name, args and worker.
        result_extended=True,
        broker_connection_retry_on_startup=True,
    )
    return app


def configure_from_env(app: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Configure `app` from CT_BROKER_URL, CT_RESULT_BACKEND and CT_TRANSPORT_OPTIONS (JSON).

    Raises RuntimeError naming the missing variables: such an app runs under `launch_worker`.
    """
    environ = os.environ if environ is None else environ
    missing = [name for name in (BROKER_URL, RESULT_BACKEND) if not environ.get(name)]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not set: start {app.main} with "
            "celery_timeouts.demo.workers.launch_worker(), which sets them from a Broker"
        )
    return configure(
        app,
        environ[BROKER_URL],
        environ[RESULT_BACKEND],
        json.loads(environ.get(TRANSPORT_OPTIONS) or "{}"),
    )


# --- worker processes ------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """A worker started by `launch_worker`: its node name, process and log file."""

    name: str  # the full node name, "<node>@<host>", as the worker logs it
    pool: str
    process: subprocess.Popen[bytes]
    log_path: Path
    #: Set by `stop`: the worker ignored SIGTERM for its timeout and was killed.
    killed: bool = False
    final_log: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_text(self) -> str:
        """The worker's stdout and stderr so far (all of it once `keep_log` has run)."""
        if self.final_log is not None:
            return self.final_log
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def keep_log(self) -> None:
        """Keep the log's text in memory, as its file may be deleted with its folder."""
        self.final_log = self.log_text()

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the log, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty log)"

    def is_ready(self) -> bool:
        """Celery 5 logs "<node> ready." once the consumer is taking messages."""
        return f"{self.name} ready." in self.log_text()

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Return once `text` is in the log.

        Raises WorkerError, with the log's tail, if the worker exits first or `timeout`
        seconds pass.
        """
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if self.process.poll() is not None and text not in self.log_text():
                raise WorkerError(
                    f"worker {self.name} exited with {self.returncode} before logging "
                    f"{text!r}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise WorkerError(
                    f"worker {self.name} did not log {text!r} within {timeout} s:\n{self.tail()}"
                )
            time.sleep(_POLL)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the worker takes tasks. Raises WorkerError like `wait_for_log`."""
        self.wait_for_log(f"{self.name} ready.", timeout)

    def request_stop(self) -> None:
        """Ask for a warm shutdown (SIGTERM, by PID) without waiting for it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the worker and every process of its group; see `stop_workers`."""
        stop_workers([self], timeout)


def worker_command(
    app_module: str, pool: str, node: str, concurrency: int | None, extra_args: Sequence[str]
) -> list[str]:
    """``python -m celery ... worker``: its __main__ monkey-patches for gevent/eventlet."""
    command = [sys.executable, "-m", "celery", "-A", app_module, "worker", "-P", pool]
    command += ["--loglevel=INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    command += ["-n", node]
    if concurrency is not None:
        command += ["-c", str(concurrency)]
    return [*command, *extra_args]


def worker_environment(
    broker: Broker, python_path: Sequence[str | Path], env: Mapping[str, str] | None
) -> dict[str, str]:
    """This process's environment, the broker's variables, `python_path` first on the path.

    Entries of an inherited relative PYTHONPATH (``PYTHONPATH=.``) are made absolute: the
    worker runs in another directory.
    """
    inherited = [
        str(Path(entry).resolve())
        for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry
    ]
    path = [str(Path(entry).resolve()) for entry in python_path] + inherited
    return {
        **os.environ,
        **broker.environment(),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(path)),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }


def launch_worker(
    app_module: str,
    pool: str,
    broker: Broker,
    workdir: Path,
    *,
    node: str | None = None,
    concurrency: int | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    python_path: Sequence[str | Path] = (),
) -> WorkerProcess:
    """Start a worker of `app_module` on `pool` and `broker`; return without waiting for it.

    It runs in `workdir`, logs to ``<node>.log`` there, and leads a process group of its
    own. `node` defaults to ``worker-<pool>-<random>``; `env` adds to (and overrides) its
    environment; `extra_args` go last on its command line; `python_path` goes first on
    its PYTHONPATH. Call `wait_ready`, and always `stop_workers` (or use `running_worker`).
    """
    node = node or f"worker-{pool}-{uuid.uuid4().hex[:8]}"
    log_path = workdir / f"{node}.log"
    command = worker_command(app_module, pool, f"{node}@%h", concurrency, extra_args)
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=worker_environment(broker, python_path, env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(f"{node}@{socket.gethostname()}", pool, process, log_path)


def living_members(group: int) -> list[int]:
    """PIDs in process group `group` that are not zombies (which an init may never reap)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass  # a member we cannot signal is still a member
    proc = Path("/proc")
    if not proc.is_dir():
        return [group]
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Fields after the command, which may hold spaces: state, ppid, pgrp, ...
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == group and state != "Z":
                members.append(int(stat.parent.name))
    return members


def _wait_until(condition: Any, deadline: float) -> bool:
    """Poll `condition()` until it is true or `deadline` (monotonic) passes; its last value."""
    while not condition():
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(_POLL)
    return True


def stop_workers(workers: Iterable[WorkerProcess], timeout: float = STOP_TIMEOUT) -> None:
    """Stop every worker and every process of its group; they stop side by side.

    SIGTERM by PID (a warm shutdown; pool children get a moment to follow); whatever is
    still running `timeout` seconds later gets SIGKILL, to the whole process group.
    Raises WorkerError naming the PIDs if any survive SIGKILL.
    """
    workers = list(workers)
    for worker in workers:
        worker.request_stop()
    deadline = time.monotonic() + timeout
    for worker in workers:
        # Each worker leads its own group (start_new_session), so its PID is the group's id.
        exited = _wait_until(lambda w=worker: w.process.poll() is not None, deadline)
        children_gone = exited and _wait_until(
            lambda w=worker: not living_members(w.pid), min(deadline, time.monotonic() + 2)
        )
        if not children_gone:
            worker.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
    survivors: dict[str, list[int]] = {}
    for worker in workers:
        worker.process.wait()
        group = worker.pid
        if not _wait_until(lambda g=group: not living_members(g), time.monotonic() + 5):
            survivors[worker.name] = living_members(group)
    if survivors:
        raise WorkerError(f"processes survived SIGKILL: {survivors}")


@contextlib.contextmanager
def supervised(
    worker: Worker, ready_timeout: float = READY_TIMEOUT, stop_timeout: float = STOP_TIMEOUT
) -> Iterator[Worker]:
    """Yield `worker` once it is ready; always stop it after, and keep its log's text.

    Raises WorkerError, with the log's tail, if it is not ready in `ready_timeout`.
    """
    try:
        worker.wait_ready(ready_timeout)
        yield worker
    finally:
        try:
            stop_workers([worker], stop_timeout)
        finally:
            worker.keep_log()  # before the caller may delete the log's folder


@contextlib.contextmanager
def running_worker(
    app_module: str,
    pool: str,
    broker: Broker,
    *,
    log_dir: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
    **options: Any,
) -> Iterator[WorkerProcess]:
    """`launch_worker`, yielding once the worker is ready and always stopping it after.

    Its log is in `log_dir` if given (kept), else in a folder deleted on exit (the text
    stays readable through `log_text`). `options` are `launch_worker`'s keyword arguments.
    Raises WorkerError, with the log's tail, if the worker is not ready in `ready_timeout`.
    """
    with contextlib.ExitStack() as cleanup:
        if log_dir is None:
            log_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="worker-")))
        worker = launch_worker(app_module, pool, broker, log_dir, **options)
        with supervised(worker, ready_timeout, stop_timeout):
            yield worker
