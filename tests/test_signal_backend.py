"""The SIGALRM backend restores what it changed and precisely times the main thread."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from celery_timeouts import TaskTimeout, portable_timeout

from conftest import run_python


@pytest.fixture(autouse=True)
def _no_itimer_left() -> Iterator[None]:
    yield
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_user_handler_is_restored_after_the_outermost_scope() -> None:
    calls = []

    def mine(signum: int, frame: object) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGALRM, mine)
    try:
        with portable_timeout(5), portable_timeout(3):
            assert signal.getsignal(signal.SIGALRM) is not mine
        assert signal.getsignal(signal.SIGALRM) is mine
        with pytest.raises(TaskTimeout), portable_timeout(0.05):
            while True:
                pass
        assert signal.getsignal(signal.SIGALRM) is mine and calls == []
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_pending_user_alarm_is_rearmed_with_its_remaining_time() -> None:
    calls = []
    previous = signal.signal(signal.SIGALRM, lambda *a: calls.append(time.monotonic()))
    try:
        started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with portable_timeout(5):
            time.sleep(0.1)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0.3 < left <= 0.4, left
        while not calls and time.monotonic() - started < 2:
            time.sleep(0.01)
        assert calls and 0.45 < calls[0] - started < 0.8
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_user_alarm_due_inside_a_scope_still_runs_its_handler() -> None:
    class UserTimeout(Exception):
        pass

    def mine(signum: int, frame: object) -> None:
        raise UserTimeout("took too long")

    previous = signal.signal(signal.SIGALRM, mine)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(UserTimeout, match="took too long"), portable_timeout(5):
            time.sleep(2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_sub_second_precision() -> None:
    started = time.monotonic()
    with pytest.raises(TaskTimeout), portable_timeout(0.02):
        while True:
            pass
    assert 0.02 <= time.monotonic() - started < 0.2


def test_sigalrm_outside_a_scope_acts_as_the_default() -> None:
    completed = run_python(
        """
import signal, time
from celery_timeouts import portable_timeout
with portable_timeout(1):
    pass
signal.alarm(1)
time.sleep(5)
print("survived")
"""
    )
    assert completed.returncode == -signal.SIGALRM, (completed.returncode, completed.stdout)
    assert "survived" not in completed.stdout


def test_forked_child_keeps_its_deadline() -> None:
    # A child does not inherit the itimer: the backend re-arms it after fork, so a scope
    # open in the forking main thread still fires in the child, as in the parent.
    completed = run_python(
        """
import os, sys, time
from celery_timeouts import portable_timeout, TaskTimeout
started = time.monotonic()
try:
    with portable_timeout(0.3) as scope:
        pid = os.fork()
        while time.monotonic() - started < 5:
            pass  # CPU-bound: only SIGALRM can stop it
        if pid == 0:
            os._exit(5)  # the child's deadline was lost
except TaskTimeout:
    late = time.monotonic() - started - 0.3
    if pid == 0:
        os._exit(0 if scope.backend == 'signal' and -0.01 < late < 2 else 3)
if pid == 0:
    os._exit(4)
_, status = os.waitpid(pid, 0)
print('parent timeout', os.waitstatus_to_exitcode(status))
""",
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "parent timeout 0", completed.stdout


def test_scope_entered_after_every_other_fired_still_fires() -> None:
    # Cleanup code of a timed-out scope may open a new scope: it gets its own timer even
    # though no unfired deadline was left when the outer one fired.
    inner_fired = []
    with pytest.raises(TaskTimeout), portable_timeout(0.05):
        try:
            while True:
                pass
        finally:
            started = time.monotonic()
            with pytest.raises(TaskTimeout), portable_timeout(0.05):
                while time.monotonic() - started < 2:
                    pass
            inner_fired.append(time.monotonic() - started)
    assert len(inner_fired) == 1 and inner_fired[0] < 1.0


def test_while_loop_directly_inside_the_scope_is_interrupted_inside_it() -> None:
    # Python 3.13 leaves the jump that closes `while <condition>:` out of the handlers
    # around the loop (cpython#130279): a timeout raised there would skip __exit__.
    # The handler lands it elsewhere in the loop instead.
    for _ in range(20):
        started = time.monotonic()
        with pytest.raises(TaskTimeout), portable_timeout(0.02):
            while time.monotonic() - started < 2:
                pass
        assert time.monotonic() - started < 1.0
