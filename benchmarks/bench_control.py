"""Stopping work on demand: what `scope.reschedule()` costs next to a scope's entry and
exit, and how long `revoke(terminate=True)` takes to stop a CPU-bound task on each pool.

Run: python benchmarks/bench_control.py [--trials 20] [--pools threads,solo,...]
(the revoke part needs Debian's redis-server on PATH; it starts a private one on
127.0.0.1 and real `celery worker` processes; `--no-workers` skips it).

reschedule: the minimum over rounds of the per-call time (the least disturbed round),
for the signal backend (main thread) and the thread backend (a worker thread).
revoke: from sending the revoke to the task's stop, p50 and p99 over the trials: the
time its `finally:` block ran (it writes it), or where that never runs (prefork kills
its child process) its last heartbeat (the task, a loop that never yields, writes the
time every 20 ms); and to the client seeing REVOKED (polling every 20 ms). Stock
prefork is measured alongside.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from bench_celery_throughput import redis_server  # noqa: E402
from celery_harness import redis_broker_at, redis_command, start_worker  # noqa: E402

from celery_timeouts import portable_timeout  # noqa: E402

APP = "celery_apps.limits_app"
NUMBER = 20_000


def per_call(statement: object, rounds: int = 7) -> float:
    """Microseconds per call: the minimum over `rounds` rounds of NUMBER calls."""
    timer = timeit.Timer(statement)  # type: ignore[arg-type]
    return min(timer.repeat(rounds, NUMBER)) / NUMBER * 1e6


def reschedule_costs() -> dict[str, tuple[float, float]]:
    """backend -> (µs per scope entry and exit, µs per reschedule)."""

    def measure() -> tuple[float, float]:
        def enter_exit() -> None:
            with portable_timeout(30):
                pass

        with portable_timeout(30) as scope:
            far = time.monotonic() + 60

            def move() -> None:
                scope.reschedule(far)

            moving = per_call(move)
        return per_call(enter_exit), moving

    results = {"signal": measure()}
    box: dict[str, tuple[float, float]] = {}
    worker = threading.Thread(target=lambda: box.update(thread=measure()))
    worker.start()
    worker.join()
    results.update(box)
    return results


def revoke_latencies(
    port: int, pool: str, trials: int, folder: Path
) -> tuple[list[float], list[float]]:
    """Seconds from the revoke to the task's stop, and to REVOKED seen, per trial."""
    redis_command(port, "FLUSHALL")
    broker = redis_broker_at(f"redis://127.0.0.1:{port}")
    env = {} if pool == "prefork" else {"CT_ENABLE_LIMITS": "1"}
    latencies, seen = [], []
    with start_worker(APP, pool, broker, concurrency=2, env=env) as worker:
        for trial in range(trials):
            beat = folder / f"{pool}-{trial}.beat"
            running = worker.app.send_task(f"{APP}.heartbeat", args=[str(beat), "cpu"])
            give_up = time.monotonic() + 30
            while not beat.exists():
                if time.monotonic() > give_up:
                    raise SystemExit(f"{pool}: the task did not start")
                time.sleep(0.01)
            time.sleep(0.2)
            revoked_at = time.time()
            worker.app.control.revoke(running.id, terminate=True, destination=[worker.name])
            give_up = time.monotonic() + 30
            while running.state != "REVOKED":
                if time.monotonic() > give_up:
                    raise SystemExit(f"{pool}: trial {trial} not REVOKED within 30 s")
                time.sleep(0.02)
            seen.append(time.time() - revoked_at)
            time.sleep(0.3)  # a task still running would beat meanwhile
            unwound = Path(f"{beat}.finally")
            stopped = float((unwound if unwound.exists() else beat).read_text())
            latencies.append(stopped - revoked_at)
    return latencies, seen


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--pools", default="threads,solo,gevent,eventlet,prefork")
    parser.add_argument("--no-workers", action="store_true")
    options = parser.parse_args()

    print("reschedule() next to one scope's entry and exit (min of 7 rounds):")
    for backend, (scope, move) in reschedule_costs().items():
        print(f"  {backend:7} entry+exit {scope:5.2f} µs   reschedule {move:5.2f} µs"
              f"   ratio {move / scope:4.2f}")
    if options.no_workers:
        return
    print(f"revoke(terminate=True) of a CPU-bound task, {options.trials} trials:")
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as port:
        for pool in options.pools.split(","):
            stops, seen = revoke_latencies(port, pool, options.trials, Path(folder))
            print(
                f"  {pool:9} stopped: p50 {percentile(stops, 0.5) * 1000:6.1f} ms  "
                f"p99 {percentile(stops, 0.99) * 1000:6.1f} ms   "
                f"REVOKED seen: p50 {percentile(seen, 0.5) * 1000:6.1f} ms  "
                f"p99 {percentile(seen, 0.99) * 1000:6.1f} ms  "
                f"(mean stop {statistics.mean(stops) * 1000:.1f} ms)"
            )


if __name__ == "__main__":
    main()
