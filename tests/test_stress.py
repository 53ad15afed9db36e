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


@pytest.mark.stress
@pytest.mark.parametrize("backend", list(WORKERS))
def test_racing_exits_leak_nothing(backend: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(TESTS / "stress_runner.py"), backend, str(ROUNDS),
         str(WORKERS[backend])],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
    )
    # A SIGALRM or injection that escaped would kill the process or fail the round.
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    counts = report["counts"]
    assert report["problems"] == [], report
    assert counts.get("problems", 0) == 0
    assert counts["rounds"] >= ROUNDS
    # Both sides of the race happened, many times: this was a race, not a formality.
    fired = counts.get("inner fired", 0) + counts.get("outer fired", 0)
    assert fired >= ROUNDS // 50, counts
    assert counts.get("finished in time", 0) >= ROUNDS // 50, counts


@pytest.mark.stress
@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_green_guard_racing_exits_leak_nothing(library: str) -> None:
    # The green guard's SIGURG races the exit of greenlets that never yield.
    completed = subprocess.run(
        [sys.executable, str(TESTS / "stress_runner.py"), f"{library}-cpu", str(CPU_ROUNDS),
         "10"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    counts = report["counts"]
    assert report["problems"] == [], report
    assert counts.get("problems", 0) == 0
    assert counts["rounds"] >= CPU_ROUNDS
    fired = counts.get("inner fired", 0) + counts.get("outer fired", 0)
    assert fired >= CPU_ROUNDS // 10, counts
    assert counts.get("finished in time", 0) >= CPU_ROUNDS // 10, counts
