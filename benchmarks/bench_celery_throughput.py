"""Throughput of `-P threads -c 8`: stock Celery vs `enable_time_limits(app)`, with
`interrupt_blocking` off and on (the default).

Run: python benchmarks/bench_celery_throughput.py [--tasks 10000] [--rounds 2]
(needs Debian's redis-server on PATH; it starts a private one on 127.0.0.1).

Each round fills the queue with no-op tasks (with soft/hard limits set, which only the
celery-timeouts pool acts on), then starts a worker and measures from its first result
to its last: messages in flight and worker start-up are not counted. Stock and
the two celery-timeouts modes alternate, and the median of the rounds is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from celery_harness import (  # noqa: E402
    free_port,
    redis_broker_at,
    redis_command,
    start_worker,
    stop_process,
)

APP = "celery_apps.limits_app"
# label -> the worker's environment (celery_apps/limits_app.py reads it)
MODES = {
    "stock": {},
    "interrupt_blocking=False": {"CT_ENABLE_LIMITS": "1", "CT_INTERRUPT_BLOCKING": "0"},
    "interrupt_blocking=True": {"CT_ENABLE_LIMITS": "1"},
}


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    port = free_port()
    server = subprocess.Popen(
        [executable, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
         "--port", str(port), "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if redis_command(port, "PING") == b"+PONG":
                    break
            time.sleep(0.05)
        yield port
    finally:
        stop_process(server, 10)


def one_round(port: int, tasks: int, env: dict[str, str], limits: bool) -> float:
    """Tasks per second for one worker run."""
    redis_command(port, "FLUSHALL")
    broker = redis_broker_at(f"redis://127.0.0.1:{port}")
    client = broker.client_app("bench-client")
    for index in range(tasks):
        if limits:
            client.send_task(f"{APP}.add", args=[index, 1], soft_time_limit=30, time_limit=60)
        else:
            client.send_task(f"{APP}.add", args=[index, 1])
    with start_worker(APP, "threads", broker, concurrency=8, env=env) as worker:
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            stored = _dbsize(port, 1)
            now = time.monotonic()
            if stored and first is None:
                first = (now, stored)
            if stored >= tasks:
                last = (now, stored)
                break
            time.sleep(0.01)
        log = worker.log_text()
    client.close()
    if first is None or last is None:
        raise SystemExit(f"the worker did not finish {tasks} tasks:\n{log[-2000:]}")
    return (last[1] - first[1]) / (last[0] - first[0])


def _dbsize(port: int, database: int) -> int:
    """Number of keys (stored results) in `database`."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(f"SELECT {database}\r\nDBSIZE\r\n".encode())
        reply = b""
        while reply.count(b"\r\n") < 2:
            reply += connection.recv(1024)
    return int(reply.split(b"\r\n")[1].lstrip(b":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--no-limits", action="store_true", help="send the tasks without time limits"
    )
    options = parser.parse_args()
    rates: dict[str, list[float]] = {label: [] for label in MODES}
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as port:
        for _ in range(options.rounds):
            for label, env in MODES.items():
                rate = one_round(port, options.tasks, env, not options.no_limits)
                rates[label].append(rate)
                print(f"  {label:26} {rate:8.0f} tasks/s", flush=True)
    medians = {label: statistics.median(found) for label, found in rates.items()}
    stock = medians["stock"]
    print(f"\n-P threads -c 8, {options.tasks} no-op tasks on Redis, median of {options.rounds}")
    print(f"  {'stock Celery':40} {stock:8.0f} tasks/s")
    for label, rate in medians.items():
        if label != "stock":
            name = f"celery-timeouts, {label}"
            print(f"  {name:40} {rate:8.0f} tasks/s  ({rate / stock:.2f}x of stock)")


if __name__ == "__main__":
    main()
