"""Real Celery workers on real brokers, for tests that need a worker rather than a mock.

A test module opts in to the fixtures with ``pytest_plugins = ["celery_harness"]`` and imports
the helpers it calls (``from celery_harness import start_worker``). Fixtures:

- `redis_url`: a private ``redis-server`` on 127.0.0.1 for the session (Debian's package);
- `filesystem_broker`: kombu's filesystem transport in the test's own folder;
- `broker`: each test once per broker, ``filesystem`` and ``redis``.

Brokers and worker processes are the demo's (`celery_timeouts.demo.workers`); this adds
the fixtures, a client app per worker, and failures in pytest's terms. `start_worker` runs
``python -m celery worker`` in its own process group and always stops it, so no test
leaves a worker behind to steal the next test's messages.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin, too late
to rewrite its asserts (pytest would warn); it fails with explicit messages instead.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery

from celery_timeouts.demo.workers import (
    READY_TIMEOUT,
    STOP_TIMEOUT,
    Broker,
    WorkerError,
    WorkerProcess,
    filesystem_broker_in,
    launch_worker,
    living_members,
    redis_broker,
    supervised,
)

__all__ = [
    "Broker",
    "RunningWorker",
    "filesystem_broker_in",
    "free_port",
    "living_members",
    "redis_broker_at",
    "redis_command",
    "require_or_skip",
    "start_worker",
    "stop_process",
]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
BROKER_NAMES = ("filesystem", "redis")
POOLS = ("solo", "threads", "prefork", "gevent", "eventlet")
LOG_TAIL_LINES = 40


def redis_broker_at(redis_url: str) -> Broker:
    """Broker on database 0, results on database 1 of the server at `redis_url`."""
    return redis_broker(redis_url)


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
        # Celery < 5.5: an AsyncResult caught in a reference cycle reconnects to the result
        # backend when it is collected, retrying for minutes once the server is gone.
        gc.collect()
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


@contextlib.contextmanager
def failing_the_test() -> Iterator[None]:
    """Turn a WorkerError (its message has the worker's log tail) into a test failure."""
    try:
        yield
    except WorkerError as error:
        pytest.fail(str(error), pytrace=False)


@dataclass(kw_only=True)
class RunningWorker(WorkerProcess):
    """A worker started by `start_worker`; `app` sends it tasks and reads their results."""

    app: Celery

    @classmethod
    def of(cls, worker: WorkerProcess, app: Celery) -> RunningWorker:
        return cls(
            name=worker.name,
            pool=worker.pool,
            process=worker.process,
            log_path=worker.log_path,
            app=app,
        )

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Return once `text` is in the log; fail with the log's tail if the worker exits first
        or `timeout` seconds pass."""
        with failing_the_test():
            super().wait_for_log(text, timeout)


def tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of `log`, for failure messages."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


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
        launched = launch_worker(
            app_module,
            pool,
            broker,
            log_dir,
            node=node,
            concurrency=concurrency,
            extra_args=extra_args,
            env=env,
            python_path=[REPO, TESTS],
        )
        worker = RunningWorker.of(launched, client)
        with failing_the_test(), supervised(worker, ready_timeout, stop_timeout):
            yield worker
