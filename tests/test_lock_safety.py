"""A timeout never lands where the stdlib holds a lock it has not guarded yet.

`Condition.__enter__` returns after acquiring its lock; a timeout raised at that return
leaves the lock held, and every thread using that queue deadlocks (the stress suite's
blocking-calls run hung on exactly this). `logging.Handler.handle` acquires its lock
before its `try`. Each case races many firing scopes against such code, in a child
process that dumps its stacks and exits if it deadlocks, then checks every lock is free.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import run_python

RACE = textwrap.dedent("""
    import faulthandler, io, json, logging, queue, sys, threading, time
    from celery_timeouts import TaskTimeout, portable_timeout

    faulthandler.dump_traceback_later(40, exit=True)  # a deadlock: stacks, then exit 1
    sys.setswitchinterval(0.0005)
    shared = queue.Queue()
    handler = logging.StreamHandler(io.StringIO())
    log = logging.getLogger("race")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    counts = {"fired": 0, "finished": 0}
    stop = time.monotonic() + 1.5

    def rounds(limit):
        while time.monotonic() < stop:
            try:
                with portable_timeout(limit):
                    for _ in range(30):
                        shared.put(1)
                        shared.get()
                        log.info("round")
                counts["finished"] += 1
            except TaskTimeout:
                counts["fired"] += 1

    def contend():  # outside any scope: takes the same locks as the timed bodies
        while time.monotonic() < stop:
            shared.put(2)
            shared.get()
            log.info("contend")

    helpers = [threading.Thread(target=contend)]
    if MODE == "threads":
        helpers += [threading.Thread(target=rounds, args=(0.0005,)) for _ in range(4)]
    for thread in helpers:
        thread.start()
    if MODE == "main":
        rounds(0.0003)  # SIGALRM, or the watchdog where signals are off
    for thread in helpers:
        thread.join()
    free = handler.lock.acquire(blocking=False)
    print(json.dumps({**counts, "queue lock held": shared.mutex.locked(),
                      "handler lock free": free}))
""")


@pytest.mark.parametrize("mode", ["threads", "main"])
def test_timeouts_never_leave_a_stdlib_lock_held(mode: str) -> None:
    completed = run_python(f"MODE = {mode!r}\n" + RACE, timeout=90)
    assert completed.returncode == 0, completed.stderr[-6000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["queue lock held"] is False, report
    assert report["handler lock free"] is True, report
    assert report["fired"] >= 20, report  # a race: the deadline won many rounds


def test_sigalrm_still_ends_a_wait_in_the_stdlibs_locking_code() -> None:
    """The main thread blocked in one of the stdlib's long waits is interrupted there, as
    before: the handler's exception ends the wait, and the lock around it is put back."""
    import queue
    import threading
    import time

    from celery_timeouts import TaskTimeout, portable_timeout

    forever = threading.Event()
    sleeper = threading.Thread(target=forever.wait, daemon=True)
    sleeper.start()
    shared = queue.Queue()  # type: ignore[var-annotated]
    waits = {
        "Queue.get": shared.get,
        "Event.wait": threading.Event().wait,
        "Semaphore.acquire": threading.Semaphore(0).acquire,
        "Thread.join": sleeper.join,
    }
    try:
        for name, wait in waits.items():
            started = time.monotonic()
            with pytest.raises(TaskTimeout), portable_timeout(0.2, backend="signal"):
                wait()
            assert time.monotonic() - started < 0.2 + 1.5, name
        assert not shared.mutex.locked()  # put back on the way out of the wait
        shared.put(1)
        assert shared.get(timeout=1) == 1  # and the queue still works
    finally:
        forever.set()
        sleeper.join(5)
