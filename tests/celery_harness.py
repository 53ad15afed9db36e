"""Real Celery workers on real brokers, for tests that need a worker rather than a mock.

A test module opts in to the fixtures with ``pytest_plugins = ["celery_harness"]`` and imports
the helpers it calls (``from celery_harness import start_worker``). Fixtures:

- `redis_url`: a private ``redis-server`` on 127.0.0.1 for the session (Debian's package);
- `filesystem_broker`: kombu's filesystem transport in the test's own folder;
- `broker`: each test once per broker, ``filesystem`` and ``redis``.

`start_worker` runs ``python -m celery worker`` in its own process group and always stops
it, so no test leaves a worker behind to steal the next test's messages.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin, too late
to rewrite its asserts (pytest would warn); it fails with explicit messages instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery_apps.common import BROKER_URL, RESULT_BACKEND, TRANSPORT_OPTIONS, configure

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
BROKER_NAMES = ("filesystem", "redis")
POOLS = ("solo", "threads", "prefork", "gevent", "eventlet")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40


# --- brokers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    """Where a worker and its test meet: broker, result backend and transport options."""

    name: str
    broker_url: str
    result_backend: str
    transport_options: Mapping[str, Any] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """The variables `celery_apps.common.configure_from_env` reads in the worker."""
        return {
            BROKER_URL: self.broker_url,
            RESULT_BACKEND: self.result_backend,
            TRANSPORT_OPTIONS: json.dumps(dict(self.transport_options)),
        }

    def client_app(self, main: str = "harness-client") -> Celery:
        """A Celery app in this process that sends tasks to, and reads results from, here."""
        app = Celery(main, set_as_current=False)
        return configure(app, self.broker_url, self.result_backend, self.transport_options)


def filesystem_broker_in(folder: Path) -> Broker:
    """kombu's filesystem transport, with every file it writes kept under `folder`."""
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
        # The transport polls its folder; kombu's default 1 s would dominate every test.
        "polling_interval": 0.05,
    }
    return Broker("filesystem", "filesystem://", f"file://{results}", options)


def redis_broker_at(redis_url: str) -> Broker:
    """Broker on database 0, results on database 1 of the server at `redis_url`."""
    return Broker("redis", f"{redis_url}/0", f"{redis_url}/1")


# --- redis-server ----------------------------------------------------------------------------


def require_or_skip(message: str) -> None:
    """Fail on CI, where a missing tool is a broken setup; skip on a developer's machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def redis_command(port: int, *words: str, timeout: float = 1.0) -> bytes:
    """Send one inline command to the Redis server on 127.0.0.1:`port`; return the reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(" ".join(words).encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = connection.recv(1024)
            if not chunk:
                break
            reply += chunk
        return reply.strip()


def wait_for_redis(server: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    """Return once the server answers PING; fail with its log if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"redis-server exited with {server.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError):
            if redis_command(port, "PING") == b"+PONG":
                return
        time.sleep(0.05)
    pytest.fail(f"redis-server did not answer PING within {timeout} s:\n{tail(log)}")


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Terminate `process` by its PID, and kill it if it outlives `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the session, without persistence: ``redis://127.0.0.1:N``."""
    install = "install Debian's redis-server package (apt-get install redis-server)"
    executable = shutil.which("redis-server")
    if executable is None:
        require_or_skip(f"redis-server is not on PATH; {install}")
    if importlib.util.find_spec("redis") is None:
        require_or_skip("the redis client is missing; pip install -e '.[test]'")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = folder / "redis-server.log"
    command = [
        str(executable),
        *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)),
    ]
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_redis(server, port, log, timeout=10)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop_process(server, timeout=STOP_TIMEOUT)


@pytest.fixture
def filesystem_broker(tmp_path: Path) -> Broker:
    """A filesystem broker and file result backend of the test's own, empty."""
    return filesystem_broker_in(tmp_path / "filesystem-broker")


@pytest.fixture(params=BROKER_NAMES)
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each test once per broker; Redis is emptied first, so no message outlives its test."""
    if request.param == "filesystem":
        filesystem: Broker = request.getfixturevalue("filesystem_broker")
        return filesystem
    url: str = request.getfixturevalue("redis_url")
    port = int(url.rsplit(":", 1)[1])
    reply = redis_command(port, "FLUSHALL")
    if reply != b"+OK":
        pytest.fail(f"redis-server at {url} answered FLUSHALL with {reply!r}")
    return redis_broker_at(url)


# --- workers ---------------------------------------------------------------------------------


@dataclass
class RunningWorker:
    """A worker started by `start_worker`; `app` sends it tasks and reads their results."""

    name: str
    pool: str
    process: subprocess.Popen[bytes]
    log_path: Path
    app: Celery
    #: Set on exit: the worker ignored SIGTERM for `stop_timeout` and was killed.
    killed: bool = False
    final_log: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_text(self) -> str:
        """The worker's stdout and stderr so far (all of it, once the worker has stopped)."""
        if self.final_log is not None:
            return self.final_log
        return self.log_path.read_text(errors="replace")

    def keep_log(self) -> None:
        """Keep the log's final text in memory, as its file may be deleted."""
        self.final_log = self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Return once `text` is in the log; fail with the log's tail if the worker exits first
        or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if self.process.poll() is not None and text not in self.log_text():
                pytest.fail(
                    f"worker {self.name} exited with {self.returncode} before logging "
                    f"{text!r}:\n{tail(self.log_path)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"worker {self.name} did not log {text!r} within {timeout} s:\n"
                    f"{tail(self.log_path)}",
                    pytrace=False,
                )
            time.sleep(0.05)


def tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of `log`, for failure messages."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def worker_command(
    app_module: str, pool: str, node: str, concurrency: int | None, extra_args: Sequence[str]
) -> list[str]:
    """``python -m celery``: its __main__ applies the gevent/eventlet patches for ``-P``."""
    command = [sys.executable, "-m", "celery", "-A", app_module, "worker", "-P", pool]
    command += ["--loglevel=INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    command += ["-n", node]
    if concurrency is not None:
        command += ["-c", str(concurrency)]
    return [*command, *extra_args]


def worker_environment(broker: Broker, env: Mapping[str, str] | None) -> dict[str, str]:
    """This process's environment, the broker's variables, and the checkout on the path."""
    path = [str(REPO), str(TESTS)]
    return {
        **os.environ,
        **broker.environment(),
        "PYTHONPATH": os.pathsep.join(path),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }


def living_members(group: int) -> list[int]:
    """PIDs in process group `group` that are not zombies (which an init may never reap)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return []
    proc = Path("/proc")
    if not proc.is_dir():
        return [group]
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # Fields after the command, which may hold spaces: state, ppid, pgrp, ...
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == group and state != "Z":
                members.append(int(stat.parent.name))
    return members


def stop_worker(worker: RunningWorker, timeout: float) -> None:
    """SIGTERM (warm shutdown) by PID; after `timeout`, SIGKILL the whole process group."""
    group = worker.pid  # start_new_session: the worker leads its own group
    if worker.process.poll() is None:
        os.kill(worker.pid, signal.SIGTERM)
        try:
            worker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.killed = True
    # Pool children outlive a killed parent; give a warm shutdown's children a moment.
    deadline = time.monotonic() + (0 if worker.killed else 2)
    while living_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    if living_members(group):
        worker.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    worker.process.wait()
    deadline = time.monotonic() + 5
    while living_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = living_members(group)
    if survivors:
        pytest.fail(f"processes {survivors} of worker {worker.name} survived SIGKILL")


@contextlib.contextmanager
def start_worker(
    app_module: str,
    pool: str,
    broker: Broker,
    *,
    concurrency: int | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[RunningWorker]:
    """Run a worker of `app_module` (e.g. ``celery_apps.harness_app``) on `pool` and `broker`.

    Yields once the worker is ready to take tasks; on exit the worker is always stopped and
    nothing of its process group is left. `env` adds to (and overrides) the worker's
    environment; `extra_args` go last on its command line. Its working directory and
    ``<node>.log`` are in `log_dir` if given (kept: pass pytest's ``tmp_path`` to read the log
    after a failure), else in a folder deleted on exit. Fails the test, showing the log's tail,
    if the worker exits or is not ready within `ready_timeout`.
    """
    node = f"harness-{pool}-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as cleanup:
        if log_dir is None:
            log_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=node)))
        client = broker.client_app(f"client-of-{node}")
        cleanup.callback(client.close)
        log_path = log_dir / f"{node}.log"
        command = worker_command(app_module, pool, f"{node}@%h", concurrency, extra_args)
        with log_path.open("wb") as output:
            process = subprocess.Popen(
                command,
                cwd=log_dir,
                env=worker_environment(broker, env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = RunningWorker(f"{node}@{socket.gethostname()}", pool, process, log_path, client)
        # Runs after stop_worker below, even if that fails, and before the folder goes.
        cleanup.callback(worker.keep_log)
        try:
            # Celery 5 logs "<node> ready." once the consumer is taking messages.
            worker.wait_for_log(f"{worker.name} ready.", ready_timeout)
            yield worker
        finally:
            stop_worker(worker, stop_timeout)
