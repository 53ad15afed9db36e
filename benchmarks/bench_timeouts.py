"""Side-by-side benchmark: celery-timeouts vs the peer libraries and the raw primitives.

Run: scripts/bench   (or: python benchmarks/bench_timeouts.py [--quick])

Measures, in one run on this machine:
  * per-call overhead when the timeout does not fire (median of several rounds,
    minus the cost of calling the bare function);
  * fire latency of a pure-Python loop (p99 over >= 40 trials), in threads and in
    greenlets that never yield (the green guard);
  * 1,000 threads each inside a scope: extra threads and RSS growth.
gevent and eventlet are measured in their own monkey-patched subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

ROUNDS = 7


def per_call_us(call: Callable[[], object], n: int) -> float:
    """Median over ROUNDS of the time per call, in microseconds."""
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(n):
            call()
        samples.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(samples)


def noop() -> None:
    return None


def overhead_main_thread(n: int) -> dict[str, float]:
    import stopit
    import timeout_decorator
    from func_timeout import func_timeout

    from celery_timeouts import portable_timeout

    base = per_call_us(noop, n)
    results: dict[str, float] = {}
    ours = portable_timeout(30)(noop)
    results["celery-timeouts signal (decorator)"] = per_call_us(ours, n) - base

    def ours_with() -> None:
        with portable_timeout(30):
            pass

    results["celery-timeouts signal (with)"] = per_call_us(ours_with, n) - base

    def raw_signal() -> None:
        old = signal.signal(signal.SIGALRM, lambda *a: None)  # celery-timeouts: ignore
        signal.setitimer(signal.ITIMER_REAL, 30)  # celery-timeouts: ignore
        signal.setitimer(signal.ITIMER_REAL, 0)  # celery-timeouts: ignore
        signal.signal(signal.SIGALRM, old)  # celery-timeouts: ignore

    results["raw: 2x setitimer + 2x signal.signal"] = per_call_us(raw_signal, n) - base
    td = timeout_decorator.timeout(30)(noop)
    results["timeout-decorator (signals)"] = per_call_us(td, n) - base

    def stopit_signal() -> None:
        with stopit.SignalTimeout(30):
            pass

    results["stopit SignalTimeout"] = per_call_us(stopit_signal, n) - base
    small = max(n // 20, 200)

    def stopit_thread() -> None:
        with stopit.ThreadingTimeout(30):
            pass

    results["stopit ThreadingTimeout"] = per_call_us(stopit_thread, small) - base
    results["func-timeout"] = per_call_us(lambda: func_timeout(30, noop), small) - base
    from wrapt_timeout_decorator import timeout as wrapt_timeout

    results["wrapt-timeout-decorator (signals)"] = (
        per_call_us(wrapt_timeout(30)(noop), n) - base
    )
    # Off the main thread it has no signals: each call runs in a new process.
    spawned = wrapt_timeout(30, use_signals=False)(noop)
    results["wrapt-timeout-decorator (use_signals=False)"] = (
        per_call_us(spawned, max(n // 2000, 5)) - base
    )
    try:
        import cancelscope

        def cancel_scope() -> None:
            with cancelscope.fail_after(30):
                pass

        results["cancelscope fail_after"] = per_call_us(cancel_scope, n) - base
    except ImportError:
        pass
    return results


def overhead_worker_thread(n: int) -> dict[str, float]:
    from celery_timeouts import portable_timeout

    out: dict[str, float] = {}

    def run() -> None:
        base = per_call_us(noop, n)
        decorated = portable_timeout(30)(noop)
        out["celery-timeouts thread (decorator)"] = per_call_us(decorated, n) - base

        def ours_with() -> None:
            with portable_timeout(30):
                pass

        out["celery-timeouts thread (with)"] = per_call_us(ours_with, n) - base

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return out


def overhead_asyncio(n: int) -> dict[str, float]:
    from celery_timeouts import portable_timeout

    async def body() -> None:
        return None

    ours = portable_timeout(30)(body)

    async def measure() -> dict[str, float]:
        async def loop(factory: Callable[[], Any]) -> float:
            samples = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                for _ in range(n):
                    await factory()
                samples.append((time.perf_counter() - started) / n * 1e6)
            return statistics.median(samples)

        base = await loop(body)
        result = {"celery-timeouts asyncio (decorator)": await loop(ours) - base}
        if hasattr(asyncio, "timeout"):

            async def stdlib() -> None:
                async with asyncio.timeout(30):
                    await body()

            result["raw: asyncio.timeout"] = await loop(stdlib) - base
        return result

    return asyncio.run(measure())


GREEN_CODE = """
import functools, json, statistics, sys, time
lib = sys.argv[1]; n = int(sys.argv[2])
if lib == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    Timeout, spawn = gevent.Timeout, gevent.spawn
    join = lambda g: g.get()
else:
    import eventlet; eventlet.monkey_patch()
    Timeout, spawn = eventlet.Timeout, eventlet.spawn
    join = lambda g: g.wait()
from celery_timeouts import portable_timeout
def noop(): return None
def per_call(call):
    samples = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n): call()
        samples.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(samples)
def raw():
    t = Timeout(30)
    if lib == "gevent": t.start()
    t.cancel()
def raw_with():
    with Timeout(30):
        noop()
def raw_decorator(func):  # what a hand-written decorator around the raw Timeout costs
    @functools.wraps(func)
    def timed(*args, **kwargs):
        with Timeout(30):
            return func(*args, **kwargs)
    return timed
def ours_with():
    with portable_timeout(30):
        noop()
def work():
    base = per_call(noop)
    return {f"celery-timeouts {lib} (with)": per_call(ours_with) - base,
            f"celery-timeouts {lib} (decorator)": per_call(portable_timeout(30)(noop)) - base,
            f"raw: with {lib}.Timeout": per_call(raw_with) - base,
            f"raw: {lib}.Timeout in a functools.wraps decorator":
                per_call(raw_decorator(noop)) - base,
            f"raw: {lib}.Timeout start+cancel": per_call(raw) - base}
def never_yields(limit=0.05, trials=40):
    # A CPU loop that never yields: only the green guard's signal can stop it.
    from celery_timeouts import TaskTimeout
    late = []
    for _ in range(trials):
        started = time.perf_counter()
        try:
            with portable_timeout(limit):
                while True:
                    pass
        except TaskTimeout:
            late.append((time.perf_counter() - started - limit) * 1e3)
    late.sort()
    return late[min(len(late) - 1, int(len(late) * 0.99))]
result = join(spawn(work))
result[f"celery-timeouts {lib} (greenlet that never yields)"] = join(spawn(never_yields))
print(json.dumps(result))
"""


def overhead_green(library: str, n: int) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, "-c", GREEN_CODE, library, str(n)],
        capture_output=True, text=True, check=True,
    )
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def fire_latency_ms(trials: int, limit: float = 0.05) -> dict[str, float]:
    """p99 of (time the timeout surfaced - limit), in ms, for a pure-Python loop."""
    import stopit
    from func_timeout import FunctionTimedOut, func_timeout

    from celery_timeouts import TaskTimeout, portable_timeout

    def spin() -> None:
        while True:
            pass

    def measure(run: Callable[[], None]) -> float:
        lateness = []
        for _ in range(trials):
            started = time.perf_counter()
            run()
            lateness.append((time.perf_counter() - started - limit) * 1e3)
        lateness.sort()
        return lateness[min(len(lateness) - 1, int(len(lateness) * 0.99))]

    def ours() -> None:
        try:
            with portable_timeout(limit):
                spin()
        except TaskTimeout:
            pass

    def stopit_threading() -> None:
        with stopit.ThreadingTimeout(limit):
            spin()

    def func_timeout_run() -> None:
        with contextlib.suppress(FunctionTimedOut):
            func_timeout(limit, spin)

    results = {"celery-timeouts signal (main thread)": measure(ours)}
    out: dict[str, float] = {}

    def in_thread() -> None:
        out["celery-timeouts thread (worker thread)"] = measure(ours)
        out["stopit ThreadingTimeout (worker thread)"] = measure(stopit_threading)
        out["func-timeout (worker thread)"] = measure(func_timeout_run)

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    results.update(out)
    return results


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def thousand_threads(count: int = 1000) -> dict[str, float]:
    """Extra threads and RSS growth when `count` threads each sit inside a scope."""
    from celery_timeouts import portable_timeout

    def population(with_scope: bool) -> tuple[int, int]:
        release = threading.Event()
        entered = threading.Semaphore(0)

        def body() -> None:
            if with_scope:
                with portable_timeout(60):
                    entered.release()
                    release.wait()
            else:
                entered.release()
                release.wait()

        threads = [threading.Thread(target=body) for _ in range(count)]
        for thread in threads:
            thread.start()
        for _ in threads:
            entered.acquire()
        time.sleep(0.2)
        measured = (threading.active_count(), rss_kib())
        release.set()
        for thread in threads:
            thread.join()
        return measured

    population(False)  # warm-up: thread stacks and allocator arenas
    threads_plain, rss_plain = population(False)
    threads_scoped, rss_scoped = population(True)
    return {
        "extra threads with 1,000 scopes": threads_scoped - threads_plain,
        "RSS growth with 1,000 scopes (MiB)": round((rss_scoped - rss_plain) / 1024, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = 2_000 if args.quick else 20_000
    trials = 10 if args.quick else 40
    # First, before anything else here starts the watchdog: its thread must be counted.
    threads = thousand_threads()
    green = {**overhead_green("gevent", n), **overhead_green("eventlet", n)}
    green_latency = {name: green.pop(name) for name in list(green) if "never yields" in name}
    report: dict[str, dict[str, float]] = {
        "per-call overhead, no fire (us)": {
            **overhead_main_thread(n),
            **overhead_worker_thread(n),
            **overhead_asyncio(n),
            **green,
        },
        f"fire latency p99 over {trials} trials (ms)": {
            **fire_latency_ms(trials), **green_latency,
        },
        "1,000 threads in scopes": threads,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"Python {sys.version.split()[0]}")
    for section, rows in report.items():
        print(f"\n{section}")
        for name, value in rows.items():
            print(f"  {name:<45} {value:10.2f}")


if __name__ == "__main__":
    main()
