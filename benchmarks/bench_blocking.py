"""celery_timeouts.blocking: what a patched call costs, and how soon a blocked thread hears
of its deadline. Stock and patched side by side, in one run, in a worker thread.

Run: python benchmarks/bench_blocking.py [--quick]

  * per-call overhead of `time.sleep(0)` and `socket.recv(1)` on a ready socketpair,
    over the stock call: outside any scope (target <= 0.3 us) and inside a thread-backend
    scope (target <= 3 us); median of several rounds;
  * from the deadline to the exception in a thread blocked in `time.sleep`, `recv` and
    `queue.get` (target p99 <= 20 ms), over >= 40 trials.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import queue
import socket
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from celery_timeouts import TaskTimeout, blocking, portable_timeout


def least_timer_slack() -> None:
    """Linux sleeps at least the thread's timer slack (50 us by default), even for
    `time.sleep(0)`: that noise would hide a difference of 0.1 us. 1 ns for this thread."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK


def in_thread(func: Callable[[], Any]) -> Any:
    result: list[Any] = []

    def run() -> None:
        least_timer_slack()
        result.append(func())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def medians_us(
    calls: dict[str, Callable[[], object]], n: int, before: Callable[[], object]
) -> dict[str, float]:
    """The median time of one call of each, in microseconds, the calls interleaved so that
    a busy machine slows them all alike (`before` runs, untimed, every CHUNK calls)."""
    samples: dict[str, list[int]] = {name: [] for name in calls}
    clock = time.perf_counter_ns
    for start in range(0, n, CHUNK):
        before()
        for _ in range(min(CHUNK, n - start)):
            for name, call in calls.items():
                started = clock()
                call()
                samples[name].append(clock() - started)
    return {name: statistics.median(values) / 1000 for name, values in samples.items()}


CHUNK = 1000


def overhead(n: int) -> dict[str, float]:
    """Microseconds per call, stock, and patched over stock outside and inside a scope."""
    a, b = socket.socketpair()
    stock_sleep = blocking._waits.original_sleep
    stock_recv = socket.socket.recv

    def fill() -> None:  # bytes waiting for every recv(1) of the next chunk
        b.sendall(b"x" * CHUNK * 2)  # two recv(1) a round: stock and patched

    def measure() -> dict[str, float]:
        with blocking.patched():
            patched_sleep, patched_recv = time.sleep, socket.socket.recv
            outside = medians_us(
                {"sleep stock": lambda: stock_sleep(0), "sleep": lambda: patched_sleep(0),
                 "recv stock": lambda: stock_recv(a, 1), "recv": lambda: patched_recv(a, 1)},
                n, fill,
            )
            with portable_timeout(3600) as scope:
                assert scope.backend == "thread"
                inside = medians_us(
                    {"sleep stock": lambda: stock_sleep(0), "sleep": lambda: patched_sleep(0),
                     "recv stock": lambda: stock_recv(a, 1),
                     "recv": lambda: patched_recv(a, 1)},
                    n, fill,
                )
        return {
            "time.sleep(0) stock (us per call)": outside["sleep stock"],
            "socket.recv stock (us per call)": outside["recv stock"],
            "time.sleep(0) patched, outside scopes (over stock)":
                outside["sleep"] - outside["sleep stock"],
            "socket.recv patched, outside scopes (over stock)":
                outside["recv"] - outside["recv stock"],
            "time.sleep(0) patched, in a thread scope (over stock)":
                inside["sleep"] - inside["sleep stock"],
            "socket.recv patched, in a thread scope (over stock)":
                inside["recv"] - inside["recv stock"],
        }

    try:
        return dict(in_thread(measure))
    finally:
        a.close()
        b.close()


def latency_ms(trials: int, limit: float = 0.05) -> dict[str, float]:
    """p50/p99/max from the deadline to the exception, in a thread blocked in C."""
    a, b = socket.socketpair()
    waits: dict[str, Callable[[], object]] = {
        "time.sleep": lambda: time.sleep(30),
        "socket.recv": lambda: a.recv(1),
        "queue.Queue.get": lambda: queue.Queue().get(),
    }

    def trial(wait: Callable[[], object]) -> float:
        scope = portable_timeout(limit)
        try:
            with scope:
                wait()
        except TaskTimeout:
            assert scope.deadline is not None
            return (time.monotonic() - scope.deadline) * 1000
        raise AssertionError("not interrupted")

    results: dict[str, float] = {}
    with blocking.patched():
        for name, wait in waits.items():
            samples = sorted(in_thread(lambda wait=wait: [trial(wait) for _ in range(trials)]))
            results[f"{name}: p50 ms"] = statistics.median(samples)
            results[f"{name}: p99 ms"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
            results[f"{name}: max ms"] = samples[-1]
    a.close()
    b.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and trials")
    options = parser.parse_args()
    n = 20_000 if options.quick else 200_000
    trials = 40 if options.quick else 100
    report = {
        "overhead_us": {key: round(value, 3) for key, value in overhead(n).items()},
        "deadline_to_exception": {
            key: round(value, 2) for key, value in latency_ms(trials).items()
        },
        "trials": trials,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
