"""Throughput of `-P threads -c 8`: stock Celery vs `enable_time_limits(app)`, with
`interrupt_blocking` off and on (the default).

Run: python benchmarks/bench_celery_throughput.py [--tasks 10000] [--rounds 2]
(needs Debian's redis-server on PATH; it starts a private one on 127.0.0.1).

Each round fills the queue with no-op tasks (with soft/hard limits set, which only the
celery-timeouts pool acts on), then starts a worker and measures from its first result
to its last: messages in flight and worker start-up are not counted. The worker's CPU
time over the same stretch is reported too (per task): on a shared machine the rate
swings with the neighbours' load, the CPU a task costs much less. Stock and
the two celery-timeouts modes alternate, and the median of the rounds is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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


def one_round(
    port: int, tasks: int, env: dict[str, str], limits: bool
) -> tuple[float, float]:
    """Tasks per second for one worker run, and the worker's CPU microseconds per task."""
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
                first = (now, stored, _cpu_seconds(worker.pid))
            if stored >= tasks:
                last = (now, stored, _cpu_seconds(worker.pid))
                break
            time.sleep(0.01)
        log = worker.log_text()
    client.close()
    if first is None or last is None:
        raise SystemExit(f"the worker did not finish {tasks} tasks:\n{log[-2000:]}")
    done = last[1] - first[1]
    return done / (last[0] - first[0]), (last[2] - first[2]) / done * 1e6


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    cpu: dict[str, list[float]] = {label: [] for label in MODES}
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as port:
        for _ in range(options.rounds):
            for label, env in MODES.items():
                rate, cpu_us = one_round(port, options.tasks, env, not options.no_limits)
                rates[label].append(rate)
                cpu[label].append(cpu_us)
                print(f"  {label:26} {rate:8.0f} tasks/s  {cpu_us:6.0f} us CPU/task", flush=True)
    medians = {label: statistics.median(found) for label, found in rates.items()}
    cpu_medians = {label: statistics.median(found) for label, found in cpu.items()}
    stock, stock_cpu = medians["stock"], cpu_medians["stock"]
    print(f"\n-P threads -c 8, {options.tasks} no-op tasks on Redis, median of {options.rounds}")
    print(f"  {'stock Celery':40} {stock:8.0f} tasks/s  {stock_cpu:6.0f} us CPU/task")
    for label, rate in medians.items():
        if label != "stock":
            name = f"celery-timeouts, {label}"
            print(
                f"  {name:40} {rate:8.0f} tasks/s  ({rate / stock:.2f}x of stock)  "
                f"{cpu_medians[label]:6.0f} us CPU/task ({stock_cpu / cpu_medians[label]:.2f}x "
                f"stock's tasks per CPU second)"
            )


if __name__ == "__main__":
    main()
