"""The invariant under fire: 100,000 racing exits per backend, and nothing leaks.

Each backend runs in its own process (tests/stress_runner.py): bodies last about as long
as their limit, half the rounds nest a second racing scope, and a checkpoint after every
round catches any timeout that escaped the scope owning it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import TESTS

ROUNDS = 100_000
WORKERS = {"signal": 1, "thread": 16, "gevent": 100, "eventlet": 100, "asyncio": 100}
# Greenlets that never yield run one after another, for tens of ms a round.
CPU_ROUNDS = 600
# Each round waits for a feeding thread (a millisecond or two): about 10 s for these.
BLOCKING_ROUNDS = 12_000


def race(mode: str, rounds: int, workers: int, *, both_sides: int) -> None:
    """Run tests/stress_runner.py; fail on any leak, and unless both the timeout and the
    exit won at least `both_sides` rounds (a race, not a formality)."""
    completed = subprocess.run(
        [sys.executable, str(TESTS / "stress_runner.py"), mode, str(rounds), str(workers)],
        capture_output=True, text=True, timeout=280,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
    )
    # A SIGALRM or injection that escaped would kill the process or fail the round.
    assert completed.returncode == 0, completed.stderr[-20000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    counts = report["counts"]
    assert report["problems"] == [], report
    assert counts.get("problems", 0) == 0
    assert counts["rounds"] >= rounds
    fired = counts.get("inner fired", 0) + counts.get("outer fired", 0)
    assert fired >= both_sides, counts
    assert counts.get("finished in time", 0) >= both_sides, counts


@pytest.mark.stress
@pytest.mark.parametrize("backend", list(WORKERS))
def test_racing_exits_leak_nothing(backend: str) -> None:
    race(backend, ROUNDS, WORKERS[backend], both_sides=ROUNDS // 50)


@pytest.mark.stress
@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_green_guard_racing_exits_leak_nothing(library: str) -> None:
    # The green guard's SIGURG races the exit of greenlets that never yield.
    race(f"{library}-cpu", CPU_ROUNDS, 10, both_sides=CPU_ROUNDS // 10)


@pytest.mark.stress
def test_blocking_calls_racing_deadlines_leak_nothing() -> None:
    # celery_timeouts.blocking: the deadline against a sleep, a socket recv or a
    # queue.get that ends, or gets its byte or item, at about the same moment.
    race("thread-blocking", BLOCKING_ROUNDS, 8, both_sides=BLOCKING_ROUNDS // 50)


# Hostile bodies, 10,000 rounds each (a few seconds): a body that installs its own
# SIGALRM handler (or ignores the signal) and puts ours back, entries that fail inside
# the backend's arm, and scopes of generators suspended halfway while the consumer works.
HOSTILE = {
    "signal-own-handler": 1, "signal-entry-failure": 1, "thread-entry-failure": 16,
    "signal-generator": 1, "thread-generator": 16, "gevent-generator": 100,
    "eventlet-generator": 100,
}


@pytest.mark.stress
@pytest.mark.parametrize("mode", list(HOSTILE))
def test_hostile_bodies_leak_nothing(mode: str) -> None:
    race(mode, 10_000, HOSTILE[mode], both_sides=100)

