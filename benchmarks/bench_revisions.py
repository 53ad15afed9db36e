"""Per-call cost of every backend at two revisions of this repository, side by side.

Run: python benchmarks/bench_revisions.py BASE [NEW]   (e.g. `... 8531dd2`, or `... v0.1.0 HEAD`)

A change to the scope or a backend must not make the per-call path slower (the target
is 5% at most). This measures `with portable_timeout(30): pass` and a decorated call
that returns at once, on each backend, for BASE and NEW (default: the working tree).
Each revision is checked out into a temporary git worktree; every measurement runs in
a fresh interpreter (gevent and eventlet monkey-patched) with only that tree importable.
The revisions alternate, measurement by measurement, so a machine that slows down
slows both. Each interpreter reports its best round; the same code differs by a few
percent from one interpreter to the next (memory layout, hash seeds), so each number is
the median of those bests over the repeats, in microseconds. `spread` is the larger of
the two revisions' median absolute deviations, in percent: the noise to read a change
against (a repeat slowed down by the machine as a whole moves the median little).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("signal", "thread", "gevent", "eventlet", "asyncio")
FORMS = ("with", "decorator")

# Runs in the child: argv = backend, form, calls per round, rounds. Prints microseconds.
_MEASURE = r"""
import sys, time, threading
backend, form, n, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if backend == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
elif backend == "eventlet":
    import eventlet; eventlet.monkey_patch()
import asyncio
from celery_timeouts import portable_timeout

@portable_timeout(30)
def decorated():
    return None

@portable_timeout(30)
async def decorated_coroutine():
    return None

def best_of(step):
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        step()
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best

def with_block():
    for _ in range(n):
        with portable_timeout(30):
            pass

def decorator():
    for _ in range(n):
        decorated()

async def measure_async():
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        if form == "with":
            for _ in range(n):
                async with portable_timeout(30):
                    pass
        else:
            for _ in range(n):
                await decorated_coroutine()
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best

step = with_block if form == "with" else decorator
if backend == "signal":
    result = best_of(step)
elif backend == "thread":
    out = []
    worker = threading.Thread(target=lambda: out.append(best_of(step)))
    worker.start(); worker.join()
    result = out[0]
elif backend == "gevent":
    result = gevent.spawn(best_of, step).get()
elif backend == "eventlet":
    result = eventlet.spawn(best_of, step).wait()
else:
    result = asyncio.run(measure_async())
print(result)
"""


@contextlib.contextmanager
def checked_out(revision: str | None) -> Iterator[Path]:
    """The repository at `revision` in a temporary worktree (None: the working tree)."""
    if revision is None:
        yield REPO
        return
    with tempfile.TemporaryDirectory(prefix="bench-revision-") as folder:
        tree = Path(folder) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), revision],
            check=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                check=False,
            )


def measure(tree: Path, backend: str, form: str, calls: int, rounds: int) -> float:
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _MEASURE, backend, form, str(calls), str(rounds)],
        capture_output=True, text=True, env=environment, cwd=tree, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{backend}/{form} at {tree} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the revision to compare against (a commit, tag, branch)")
    parser.add_argument("new", nargs="?", help="the revision to measure (default: working tree)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="interpreters per revision and case (default 5)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated (default: all)"
    )
    options = parser.parse_args()
    calls, rounds = (2000, 3) if options.quick else (20000, 9)
    new_label = options.new or "working tree"
    backends = [name for name in options.backends.split(",") if name]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}: choose among {', '.join(BACKENDS)}")
    with checked_out(options.base) as base_tree, checked_out(options.new) as new_tree:
        trees = {options.base: base_tree, new_label: new_tree}
        bests: dict[tuple[str, str, str], list[float]] = {}
        for _ in range(options.repeats):
            for backend in backends:
                for form in FORMS:
                    for label, tree in trees.items():
                        value = measure(tree, backend, form, calls, rounds)
                        bests.setdefault((label, backend, form), []).append(value)
    print(
        f"per call, µs (median over {options.repeats} interpreters of the best of "
        f"{rounds} rounds of {calls} calls)"
    )
    print(
        f"{'backend':9} {'form':10} {options.base[:12]:>12} {new_label[:12]:>12}  "
        f"change  spread"
    )
    for backend in backends:
        for form in FORMS:
            before_all = bests[(options.base, backend, form)]
            after_all = bests[(new_label, backend, form)]
            before, after = statistics.median(before_all), statistics.median(after_all)
            change = (after - before) / before * 100
            spread = max(
                statistics.median(abs(value - middle) for value in values) / middle * 100
                for values, middle in ((before_all, before), (after_all, after))
            )
            print(
                f"{backend:9} {form:10} {before:12.3f} {after:12.3f}  {change:+5.1f}%"
                f"  ±{spread:.1f}%"
            )


if __name__ == "__main__":
    main()
