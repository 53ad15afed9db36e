"""`celery-timeouts demo`, run for real in a subprocess: real workers on the embedded
filesystem broker, the JSON it prints, Ctrl-C, and a pool whose extra is missing.

Timing bounds are loose on purpose: two cores, shared with other test runs. What they
tell apart is which limit acted (soft at 1 s, hard at 3 s, none: the task's full 6 s).
The task that catches its soft limit is there to show the hard one.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from celery_timeouts.__main__ import main
from celery_timeouts.demo.scenario import BLOCKED_FOR, RUN_FOR, TASKS, Outcome
from celery_timeouts.demo.workers import filesystem_broker_in

pytest_plugins = ["celery_harness"]  # the redis_url fixture

REPO = Path(__file__).resolve().parent.parent
# The embedded broker's tasks run for 6 s unless a limit stops them.
UNLIMITED = 5.5


def demo_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


class Demo:
    """A `celery-timeouts demo` subprocess whose progress lines (stderr) can be waited for."""

    def __init__(self, *args: str, python_code: str | None = None) -> None:
        start = ["-c", python_code] if python_code else ["-m", "celery_timeouts"]
        self.process = subprocess.Popen(
            [sys.executable, *start, "demo", *args],
            cwd=REPO,
            env=demo_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.progress: list[str] = []
        self.stdout = ""
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()

    def wait_for_progress(self, text: str, timeout: float) -> None:
        """Return once a progress line contains `text`; fail with what it printed if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.progress.append(line)
            if text in line:
                return
        pytest.fail(f"the demo did not print {text!r} in {timeout} s:\n{self.stderr()}")

    def finish(self, timeout: float) -> int:
        """Wait for the demo to exit; its exit code."""
        returncode = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return returncode

    def stderr(self) -> str:
        while not self.lines.empty():
            self.progress.append(self.lines.get())
        return "".join(self.progress)

    def stop(self) -> None:
        """Stop the demo by its PID if it still runs: SIGINT (it stops its workers), then
        SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_demo(*args: str, python_code: str | None = None) -> Iterator[Demo]:
    demo = Demo(*args, python_code=python_code)
    try:
        yield demo
    finally:
        demo.stop()


def alive(pid: int) -> bool:
    """`pid` runs and is not a zombie (which an init in a container may never reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process still alive."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found.append((int(stat.parent.name), int(fields[1]), int(fields[2])))
    return found


def workers_of(demo_pid: int) -> list[int]:
    """The demo's workers (its children, each leading a group) and every member of their
    groups, such as prefork's pool processes."""
    everything = processes()
    groups = {pid for pid, parent, _ in everything if parent == demo_pid}
    return [pid for pid, _, group in everything if group in groups]


def kill_leftovers(pids: list[int]) -> list[int]:
    """SIGKILL what is left of `pids`, so a failing test leaves nothing behind; the PIDs
    that were still alive."""
    left = [pid for pid in pids if alive(pid)]
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


@pytest.fixture(scope="module")
def threads_and_solo() -> tuple[dict[str, Any], str]:
    """One real run on threads and solo, shared by the tests that read its JSON."""
    with running_demo("--pools", "threads,solo", "--json") as demo:
        returncode = demo.finish(timeout=120)
        assert returncode == 0, demo.stderr()
        return json.loads(demo.stdout), demo.stderr()


def outcome(report: dict[str, Any], pool: str, task: str, mode: str) -> dict[str, Any]:
    got: dict[str, Any] = report["pools"][pool]["tasks"][task][mode]
    return got


@pytest.mark.timeout(150)
def test_stock_threads_run_past_the_limits_ours_stop_at_the_soft_limit(
    threads_and_solo: tuple[dict[str, Any], str],
) -> None:
    report, progress = threads_and_solo
    assert report["broker"] == "filesystem"
    assert not report["interrupted"]
    for pool in ("threads", "solo"):
        for task in ("cpu", "sleep"):
            stock = outcome(report, pool, task, "stock")
            assert stock["outcome"] == "SUCCESS", (pool, task, stock)
            assert stock["result"] == "finished"
            assert stock["seconds"] >= UNLIMITED, (pool, task, stock)
            ours = outcome(report, pool, task, "celery-timeouts")
            assert ours["outcome"] == "SoftTimeLimitExceeded", (pool, task, ours)
            # The soft limit (1 s), well before the hard one (3 s).
            assert 0.9 <= ours["seconds"] < 2.5, (pool, task, ours)
        # One blocking call each (a sleep, a read from a server that never answers):
        # stock waits for it to end, ours raises the soft limit inside the call.
        for task in ("one_sleep", "silent_server"):
            stock = outcome(report, pool, task, "stock")
            assert (stock["outcome"], stock["result"]) == ("SUCCESS", "finished"), (pool, stock)
            assert stock["seconds"] >= BLOCKED_FOR - 0.5, (pool, task, stock)
            assert stock["text"] == f"SUCCESS {stock['seconds']:.1f} s (limits ignored)"
            ours = outcome(report, pool, task, "celery-timeouts")
            assert ours["outcome"] == "SoftTimeLimitExceeded", (pool, task, ours)
            assert 0.9 <= ours["seconds"] < 2.5, (pool, task, ours)
    # Progress named the pool and the task while it ran.
    assert "threads/celery-timeouts: CPU-bound loop sent" in progress
    assert "solo/stock: time.sleep loop ->" in progress
    assert "threads/celery-timeouts: read, silent server -> SoftTimeLimitExceeded" in progress


@pytest.mark.timeout(150)
def test_a_task_that_catches_its_soft_limit_is_ended_by_the_hard_one_with_ours(
    threads_and_solo: tuple[dict[str, Any], str],
) -> None:
    report, progress = threads_and_solo
    for pool in ("threads", "solo"):
        stock = outcome(report, pool, "catch_soft", "stock")
        # Neither limit: no soft limit to catch, the loop's full 6 s.
        assert (stock["outcome"], stock["result"]) == ("SUCCESS", "finished"), (pool, stock)
        assert stock["seconds"] >= RUN_FOR, (pool, stock)
        assert stock["soft_limit_caught"] is None, (pool, stock)
        assert stock["text"] == f"SUCCESS {stock['seconds']:.1f} s (limits ignored)"
        ours = outcome(report, pool, "catch_soft", "celery-timeouts")
        # The soft limit raised at 1 s and caught, the hard one (3 s) not catchable.
        assert ours["outcome"] == "TimeLimitExceeded", (pool, ours)
        assert 2.9 <= ours["seconds"] <= 4.5, (pool, ours)
        assert 0.9 <= ours["soft_limit_caught"] < 2.5, (pool, ours)
        assert ours["text"] == f"TimeLimitExceeded {ours['seconds']:.1f} s (soft limit caught)"
    assert "threads/celery-timeouts: catches soft limit sent" in progress


def test_a_caught_soft_limit_is_said_so_not_ignored() -> None:
    task = next(task for task in TASKS if task.catches_soft)
    # Stock gevent: only its hard limit, the soft one never raised.
    assert Outcome("TimeLimitExceeded", 3.0).text(task) == (
        "TimeLimitExceeded 3.0 s (soft limit ignored)"
    )
    caught = Outcome("TimeLimitExceeded", 3.0, soft_limit_caught=1.0)
    assert caught.text(task) == "TimeLimitExceeded 3.0 s (soft limit caught)"
    unlimited = Outcome("SUCCESS", 6.0, result="finished", soft_limit_caught=1.0)
    assert unlimited.text(task) == "SUCCESS 6.0 s (soft limit caught, hard limit ignored)"


@pytest.mark.timeout(150)
def test_alarm_style_code_fires_in_threads_with_compat_patch(
    threads_and_solo: tuple[dict[str, Any], str],
) -> None:
    report, _ = threads_and_solo
    stock = outcome(report, "threads", "alarm", "stock")
    assert stock["outcome"] == "ValueError", stock
    assert "main thread" in stock["message"], stock
    fired_in = [("threads", "celery-timeouts"), ("solo", "stock"), ("solo", "celery-timeouts")]
    for pool, mode in fired_in:
        fired = outcome(report, pool, "alarm", mode)
        assert (fired["outcome"], fired["result"]) == ("SUCCESS", "alarm fired"), (pool, mode)
        assert 0.9 <= fired["seconds"] < 2.0, (pool, mode, fired)  # its own 1 s alarm


@pytest.mark.timeout(150)
def test_threads_autoscale_stock_dies_ours_serves(
    threads_and_solo: tuple[dict[str, Any], str],
) -> None:
    report, _ = threads_and_solo
    stock, ours = report["autoscale"]["stock"], report["autoscale"]["celery-timeouts"]
    assert stock["died"] and stock["grow_error"], stock
    assert "'TaskPool' object has no attribute 'grow'" in stock["summary"]
    assert not ours["died"] and ours["served"] == ours["tasks"], ours
    assert ours["summary"] == f"served {ours['tasks']} of {ours['tasks']} tasks"


@pytest.mark.timeout(150)
def test_every_worker_is_gone_after_a_run(threads_and_solo: tuple[dict[str, Any], str]) -> None:
    report, _ = threads_and_solo
    pids = [worker["pid"] for worker in report["workers"]]
    assert len(pids) == 6  # stock and ours for threads and solo, and the autoscale pair
    assert all(worker["returncode"] is not None for worker in report["workers"])
    assert not [pid for pid in pids if alive(pid)]


@pytest.mark.timeout(90)
def test_runs_on_a_real_redis_broker(redis_url: str) -> None:
    with running_demo("--pools", "solo", "--broker", f"{redis_url}/2", "--json") as demo:
        returncode = demo.finish(timeout=60)
    assert returncode == 0, demo.stderr()
    report = json.loads(demo.stdout)
    assert report["broker"] == "redis"
    assert outcome(report, "solo", "cpu", "stock")["seconds"] >= UNLIMITED
    ours = outcome(report, "solo", "cpu", "celery-timeouts")
    assert ours["outcome"] == "SoftTimeLimitExceeded", ours
    assert 0.9 <= ours["seconds"] < 2.5, ours
    # The caught soft limit, read from the Redis result backend while the task ran.
    caught = outcome(report, "solo", "catch_soft", "celery-timeouts")
    assert caught["outcome"] == "TimeLimitExceeded", caught
    assert caught["soft_limit_caught"] is not None, caught
    assert report["autoscale"] == {}  # only with -P threads
    assert not [worker["pid"] for worker in report["workers"] if alive(worker["pid"])]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("moment", "transport"),
    [
        # Still importing Celery. On Redis (which outlives the demo, unlike the filesystem
        # broker's folder) a worker left behind would wait for tasks forever.
        ("started 6 workers", "redis"),
        # Busy with a task, prefork's pool child forked.
        ("prefork/stock: CPU-bound loop sent", "filesystem"),
    ],
)
def test_ctrl_c_stops_every_worker_it_started(
    moment: str, transport: str, request: pytest.FixtureRequest
) -> None:
    redis = transport == "redis"
    options = ["--broker", f"{request.getfixturevalue('redis_url')}/0"] if redis else []
    with running_demo("--pools", "prefork,threads", "--json", *options) as demo:
        demo.wait_for_progress(moment, timeout=30)
        workers = workers_of(demo.process.pid)
        try:
            assert len(workers) >= 6, workers
            demo.process.send_signal(signal.SIGINT)
            # Workers busy with a task get 3 s before their group is killed.
            returncode = demo.finish(timeout=20)
            left = wait_gone(workers, timeout=2)
        finally:
            leftovers = kill_leftovers(workers)
    assert returncode == 130, demo.stderr()
    assert "interrupted: stopping 6 workers" in demo.stderr()
    assert json.loads(demo.stdout)["interrupted"] is True
    assert not left and not leftovers, (left, leftovers)


BLOCK_GREEN_LIBRARIES = textwrap.dedent(
    """
    import sys

    class NotInstalled:
        # A real import failure, as when the extra was never installed.
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("gevent", "eventlet"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    from celery_timeouts.__main__ import main
    raise SystemExit(main(sys.argv[1:]))
    """
)


@pytest.mark.timeout(60)
def test_a_pool_whose_extra_is_missing_is_shown_as_not_installed() -> None:
    code = BLOCK_GREEN_LIBRARIES
    with running_demo("--pools", "gevent,eventlet", python_code=code) as demo:
        returncode = demo.finish(timeout=30)
    assert returncode == 0, demo.stderr()
    rows = [line.split(None, 1) for line in demo.stdout.splitlines()]
    assert ["gevent", "not installed: pip install celery-timeouts[gevent]"] in rows, demo.stdout
    assert ["eventlet", "not installed: pip install celery-timeouts[eventlet]"] in rows
    assert "Traceback" not in demo.stderr()

    with running_demo("--pools", "gevent", "--json", python_code=code) as demo:
        assert demo.finish(timeout=30) == 0, demo.stderr()
    gevent = json.loads(demo.stdout)["pools"]["gevent"]
    note = "not installed: pip install celery-timeouts[gevent]"
    assert gevent == {"installed": False, "note": note}


def test_filesystem_clients_write_each_message_whole(tmp_path: Path) -> None:
    # kombu's own transport creates the file before writing it (celery/kombu#1551).
    from celery_timeouts.demo.whole_messages import Transport

    broker = filesystem_broker_in(tmp_path)
    client = broker.client_app()
    try:
        with client.connection_for_write() as connection:
            assert type(connection.transport) is Transport
        client.send_task("some.task", args=[1], queue="whole")
    finally:
        client.close()
    written = sorted(path.name for path in (tmp_path / "queue").iterdir())
    assert len(written) == 1 and written[0].endswith(".whole.msg"), written
    message = json.loads((tmp_path / "queue" / written[0]).read_text())
    assert message["headers"]["task"] == "some.task"


def test_bad_options_name_the_value_and_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["demo", "--pools", "threads,greenlets"])
    assert usage.value.code == 2
    assert "'greenlets'" in capsys.readouterr().err
    assert main(["demo", "--pools", "solo", "--broker", "amqp://localhost"]) == 2
    error = capsys.readouterr().err
    assert "'amqp://localhost' is not a Redis URL; use redis://HOST:PORT[/DB]" in error


def test_a_broker_that_does_not_answer_is_an_error_not_a_wait(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert main(["demo", "--pools", "solo", "--broker", f"redis://127.0.0.1:{port}/0"]) == 2
    assert time.monotonic() - started < 15
    error = capsys.readouterr().err
    assert f"broker redis://127.0.0.1:{port}/0 does not answer" in error
    assert "leave --broker out for the embedded default" in error


def test_demo_help_is_the_demos_and_other_commands_refuse_its_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as shown:
        main(["demo", "--help"])
    assert shown.value.code == 0
    assert "usage: celery-timeouts demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["selfcheck", "--pools", "solo"])
    assert usage.value.code == 2
    assert "unrecognized arguments: --pools solo" in capsys.readouterr().err


def test_scan_and_selfcheck_do_not_import_the_demo(tmp_path: Path) -> None:
    clean = tmp_path / "clean.py"
    clean.write_text("x = 1\n")
    code = textwrap.dedent(f"""
        import sys
        from celery_timeouts.__main__ import main
        assert main(["scan", {str(clean)!r}]) == 0
        main(["selfcheck"])
        loaded = sorted(name for name in sys.modules if name.startswith("celery_timeouts.demo"))
        print(loaded)
    """)
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[]", completed.stdout
