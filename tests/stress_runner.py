"""Race the deadline against the scope's exit, many times, and count what leaks.

Usage: python tests/stress_runner.py BACKEND ITERATIONS WORKERS
BACKEND is a backend name, or gevent-cpu / eventlet-cpu: greenlets whose bodies never
yield, so that the green guard's signal (not the hub's timer) races the exit;
thread-blocking: worker threads under `celery_timeouts.blocking.patch()` whose bodies
block in `time.sleep`, a socket `recv` or a `queue.get` that another thread answers at
about the deadline (the deadline races the data: a call that the deadline ended may not
have taken a byte or an item, and the socket must be blocking again after every round).
Hostile variants: signal-own-handler (the body installs its own SIGALRM handler, or
ignores the signal, and puts ours back), signal-entry-failure and thread-entry-failure
(one entry in eight fails inside the backend's arm).
Prints one JSON object with the counts. Each worker (the main thread for `signal`,
threads, greenlets, green threads or asyncio tasks) runs ITERATIONS / WORKERS rounds.

A round is a scope whose body lasts about as long as its limit, so the timeout and the
exit race; every other round nests it in an outer scope whose deadline races too. Then
a checkpoint runs outside every scope: anything raised there, or anywhere outside the
scope that owns it, is a leak. Each round also checks that the exception names the
scope that fired, and that no scope is left behind as the innermost one.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

mode, ITERATIONS, WORKERS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
backend, _, VARIANT = mode.partition("-")
NEVER_YIELDS = VARIANT == "cpu"
BLOCKING = VARIANT == "blocking"
if backend == "gevent":
    from gevent import monkey

    monkey.patch_all()
elif backend == "eventlet":
    import eventlet

    eventlet.monkey_patch()

import asyncio  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402

from celery_timeouts import TaskTimeout, current_scope, portable_timeout  # noqa: E402

# Limits per backend: short enough for 100,000 rounds, long enough for the timer's
# resolution. The body lasts limit * U(0.5, 1.5).
LIMIT = {"signal": 0.0001, "thread": 0.0005, "gevent": 0.002, "eventlet": 0.002,
         "asyncio": 0.002}[backend]
if BLOCKING:
    LIMIT = 0.002  # the feeding thread's sleep is less precise than a spin
if VARIANT == "generator" and backend in ("gevent", "eventlet"):
    LIMIT = 0.01  # three green sleeps a round, each at least the hub's 1 ms resolution
if NEVER_YIELDS:
    # The guard acts 10 to 30 ms after the deadline (its grace, then its 20 ms tick):
    # bodies of 15 to 45 ms race it.
    LIMIT = 0.01

counts: Counter[str] = Counter()
problems: list[str] = []
lock = threading.Lock()


class InnerTimeout(TaskTimeout):
    pass


class OuterTimeout(TaskTimeout):
    pass


def problem(text: str) -> None:
    with lock:
        counts["problems"] += 1
        if len(problems) < 20:
            problems.append(text)


def record(outcome: str) -> None:
    with lock:
        counts[outcome] += 1


def verdict(inner: Any, outer: Any, caught: set[str]) -> None:
    """The exceptions seen must match the scopes that say they fired."""
    if rang_for_own(inner) and not caught:
        problem("the deadline passed long before the body ended; nothing was raised")
    if "inner" in caught and not inner.fired:
        problem("InnerTimeout raised by a scope that did not fire")
    if "outer" in caught and (outer is None or not outer.fired):
        problem("OuterTimeout raised by a scope that did not fire")
    if inner.fired and "inner" not in caught and not (outer is not None and outer.fired):
        problem("inner scope fired but raised nothing")
    if outer is not None and outer.fired and "outer" not in caught:
        problem("outer scope fired but raised nothing")
    if current_scope() is not None:
        problem(f"scope left behind as the innermost one: {current_scope()!r}")
    record("rounds")
    for name in caught:
        record(f"{name} fired")
    if not caught:
        record("finished in time")


# -- synchronous rounds (signal, thread, gevent, eventlet) ----------------------------------

if backend in ("gevent", "eventlet"):
    if backend == "gevent":
        import gevent

        green_sleep: Callable[[float], None] = gevent.sleep
    else:
        green_sleep = eventlet.sleep

    def body(seconds: float, rng: random.Random) -> None:
        if NEVER_YIELDS:
            spin_until(time.perf_counter() + seconds * 3)
            return
        # Greenlet timers land only where the body yields: sleep, then a short CPU tail
        # (the deadline and the exit race in the hub, whichever timer it runs first).
        green_sleep(seconds)
        spin_until(time.perf_counter() + rng.uniform(0, 0.00005))

    def checkpoint() -> None:
        helper()  # a signal handler that was still to run would raise here
        green_sleep(0)  # a timer that was not cancelled would throw here
        helper()
else:

    def body(seconds: float, rng: random.Random) -> None:
        # Alternate CPU-bound and blocking bodies: the watchdog lands in both.
        if VARIANT == "own-handler":
            own_handler_body(seconds, rng)
        elif backend == "thread" and rng.random() < 0.5:
            time.sleep(seconds)
        else:
            spin_until(time.perf_counter() + seconds)

    def checkpoint() -> None:
        helper()
        time.sleep(0)  # a pending injection would land right after this call
        helper()
        if backend == "signal" and signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
            problem(f"itimer still armed after the scope: {signal.getitimer(signal.ITIMER_REAL)}")


def interrupted(error: BaseException) -> None:
    """A round's timeout was caught (blocking mode: note where it was raised)."""


def settle() -> None:
    """After the checkpoint (blocking mode: account for every byte and item)."""


if BLOCKING:
    import queue
    import socket
    import traceback

    from celery_timeouts import blocking

    blocking.patch()
    lanes = threading.local()

    class Lane:
        """A worker's socketpair and queue, and a thread that feeds one of them a byte or
        an item at about the deadline. The feeder waits on a SimpleQueue (C, never
        patched) and sleeps outside any scope: stock calls."""

        def __init__(self) -> None:
            self.ours, self.theirs = socket.socketpair()
            self.items: queue.Queue[int] = queue.Queue()
            self.orders: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
            self.fed: queue.SimpleQueue[str] = queue.SimpleQueue()
            self.sent = self.taken = 0
            self.waiting = False
            self.ended_by_deadline = False
            threading.Thread(target=self.feed, daemon=True).start()

        def feed(self) -> None:
            while True:
                kind, delay = self.orders.get()
                time.sleep(delay)
                if kind == "recv":
                    self.theirs.send(b"x")
                else:
                    self.items.put(1)
                self.fed.put(kind)

        def body(self, seconds: float, rng: random.Random) -> None:
            seconds *= 0.35  # the feeder and the waiter need the GIL back: both sides win
            kind = rng.choice(("sleep", "recv", "get"))
            if kind == "sleep":
                time.sleep(seconds)
                return
            self.waiting = True
            self.sent += 1
            self.orders.put((kind, seconds * rng.uniform(0.8, 1.2)))
            if kind == "recv":
                self.taken += len(self.ours.recv(1))
            else:
                self.taken += self.items.get()

        def settle(self) -> None:
            if self.ours.gettimeout() is not None or not os.get_blocking(self.ours.fileno()):
                problem(f"socket not blocking after the round: {self.ours.gettimeout()}")
            if self.waiting:
                self.waiting = False
                self.fed.get()
                left = self.drain()
                if self.sent != self.taken + left:
                    if self.ended_by_deadline:
                        problem(f"a wait ended by the deadline lost data: sent {self.sent}, "
                                f"taken {self.taken}, left {left}")
                    else:  # consumed, then interrupted before counting: not ours to judge
                        record("taken, then interrupted")
                    self.taken = self.sent - left
                self.taken += left
            self.ended_by_deadline = False

        def drain(self) -> int:
            left = 0
            self.ours.setblocking(False)
            try:
                while True:
                    left += len(self.ours.recv(64))
            except BlockingIOError:
                pass
            finally:
                self.ours.setblocking(True)
            while True:
                try:
                    left += self.items.get_nowait()
                except queue.Empty:
                    return left

    def this_lane() -> Lane:
        lane: Lane | None = getattr(lanes, "lane", None)
        if lane is None:
            lane = lanes.lane = Lane()
        return lane

    def body(seconds: float, rng: random.Random) -> None:
        this_lane().body(seconds, rng)

    def interrupted(error: BaseException) -> None:
        innermost = traceback.extract_tb(error.__traceback__)[-1].filename
        if f"{os.sep}blocking{os.sep}" in innermost:
            this_lane().ended_by_deadline = True
            record("ended by the deadline in a blocking call")

    def settle() -> None:
        this_lane().settle()


def helper() -> int:
    return 1


def spin_until(end: float) -> None:
    while time.perf_counter() < end:
        pass


def new_round(rng: random.Random, nested: bool) -> tuple[float, Any, Any]:
    """A body duration, the inner scope and (every other round) an outer one."""
    duration = LIMIT * rng.uniform(0.5, 1.5)
    inner = portable_timeout(LIMIT, exception=InnerTimeout)
    outer = None
    if nested:
        outer = portable_timeout(LIMIT * rng.uniform(0.8, 1.6), exception=OuterTimeout)
    return duration, inner, outer


def sync_round(rng: random.Random, nested: bool) -> None:
    duration, inner, outer = new_round(rng, nested)
    caught: set[str] = set()
    try:
        if outer is not None:
            try:
                with outer:
                    try:
                        with inner:
                            body(duration, rng)
                    except InnerTimeout as error:
                        caught.add("inner")
                        interrupted(error)
                    helper()
            except OuterTimeout as error:
                caught.add("outer")
                interrupted(error)
        else:
            try:
                with inner:
                    body(duration, rng)
            except InnerTimeout as error:
                caught.add("inner")
                interrupted(error)
        checkpoint()
        settle()
    except InjectedFailure:
        raise  # entry_failure_round checks what it left
    except BaseException as leaked:  # counting them is the point
        problem(f"leaked outside its scope: {leaked!r}")
    verdict(inner, outer, caught)


# -- hostile rounds (signal, thread) ---------------------------------------------------------


def own_handler_body(seconds: float, rng: random.Random) -> None:
    """The body installs its own SIGALRM handler (or ignores the signal) and puts ours back:
    a deadline that passed meanwhile must still be raised as the scope exits."""
    own = signal.SIG_IGN if rng.random() < 0.5 else (lambda signum, frame: None)
    if rng.random() < 1 / 16:
        seconds += 0.008  # well past the deadline: the signal rings while `own` is set
    scope = current_scope()
    previous = signal.signal(signal.SIGALRM, own)
    installed = time.monotonic()
    try:
        spin_until(time.perf_counter() + seconds)
    finally:
        restored = time.monotonic()
        signal.signal(signal.SIGALRM, previous)
    # Past its deadline, and with `own` installed, for 4 ms: our timer (or its 0.5 ms
    # retry) rang for `own` then, unless the kernel was later still (a loaded machine;
    # our handler then took it after `restored`, and it raced the exit as usual).
    deadline = None if scope is None else scope.deadline
    if deadline is not None and max(deadline, installed) + 0.004 <= restored:
        ended_late[id(scope)] = restored


def rang_for_own(scope: Any) -> bool:
    restored = ended_late.pop(id(scope), None)
    if restored is None:
        return False
    signal_backend: Any = __import__("celery_timeouts.backends", fromlist=["x"]).get_backend(
        "signal"
    )
    return bool(signal_backend._handled_at < restored)


ended_late: dict[int, float] = {}  # scope id -> when the body put our handler back


class InjectedFailure(Exception):
    pass


def inject_entry_failures() -> None:
    """Make one entry in eight fail inside the backend's arm, at its last step: setting
    the itimer (signal), waking the watchdog up for a new earliest deadline (thread)."""
    from celery_timeouts.backends import get_backend

    chooser = random.Random(1234)

    def failing_now() -> bool:
        # Called from arm (through at most two of the backend's own helpers)? The
        # backend's frames are left as they are: arm records the frame of the `with`.
        frame = sys._getframe(2)
        for _ in range(3):
            if frame is None:
                return False
            if frame.f_code.co_name == "arm":
                return chooser.random() < 0.125
            frame = frame.f_back
        return False

    armer: Any = get_backend(backend)
    if backend == "signal":
        from celery_timeouts.backends import sigalrm

        real_signal = sigalrm._signal

        class FailingSignal:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_signal, name)

            @staticmethod
            def setitimer(*args: Any) -> Any:
                if failing_now():
                    raise InjectedFailure("setitimer")
                return real_signal.setitimer(*args)

        sigalrm._signal = FailingSignal()
    else:
        real_wakeup = armer._wakeup

        class FailingWakeup:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_wakeup, name)

            @staticmethod
            def notify() -> None:
                if failing_now():
                    raise InjectedFailure("notify")
                real_wakeup.notify()

        armer._wakeup = FailingWakeup()


def entry_failure_round(rng: random.Random, nested: bool) -> None:
    try:
        sync_round(rng, nested)
    except InjectedFailure:
        record("entry failed")
        record("rounds")
        try:
            checkpoint()
            spin_until(time.perf_counter() + LIMIT * 2)  # a timer left armed lands here
            checkpoint()
        except BaseException as leaked:
            problem(f"leaked after a failed entry: {leaked!r}")
        if current_scope() is not None:
            problem(f"a failed entry left a scope behind: {current_scope()!r}")


# -- generator rounds: the inner scope is a generator's, suspended halfway ------------------


def generator_round(rng: random.Random, nested: bool) -> None:
    """The inner scope is entered in a generator that yields halfway through its body;
    the consumer works meanwhile (inside the outer scope, if any). The inner timeout
    may reach the generator's body or its scope's exit, never the consumer."""
    duration, inner, outer = new_round(rng, nested)
    caught: set[str] = set()

    def generator() -> Any:
        with inner:
            body(duration / 3, rng)
            yield
            body(duration / 3, rng)

    def consume() -> None:
        steps = generator()
        try:
            try:
                next(steps)
            except InnerTimeout as error:  # the first half of its body timed out
                caught.add("inner")
                interrupted(error)
                return
            try:
                body(duration / 3, rng)  # the consumer's own work, the generator suspended
            except BaseException as error:
                if getattr(error, "scope", None) is inner or isinstance(error, InnerTimeout):
                    problem(f"the suspended generator's timeout reached its consumer: {error!r}")
                raise
            try:
                next(steps, None)
            except InnerTimeout as error:
                caught.add("inner")
                interrupted(error)
        finally:
            steps.close()  # left suspended when the outer timeout ended the consumer

    try:
        if outer is not None:
            try:
                with outer:
                    consume()
                    helper()
            except OuterTimeout as error:
                caught.add("outer")
                interrupted(error)
        else:
            consume()
        checkpoint()
        settle()
    except BaseException as leaked:  # counting them is the point
        problem(f"leaked outside its scope: {leaked!r}")
    verdict(inner, outer, caught)


def sync_worker(seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    play = {"entry-failure": entry_failure_round, "generator": generator_round}.get(
        VARIANT, sync_round
    )
    for index in range(rounds):
        play(rng, nested=index % 2 == 1)


# -- asyncio rounds ----------------------------------------------------------------------------

async def async_round(rng: random.Random, nested: bool) -> None:
    duration, inner, outer = new_round(rng, nested)
    caught: set[str] = set()
    try:
        if outer is not None:
            try:
                async with outer:
                    try:
                        async with inner:
                            await asyncio.sleep(duration)
                    except InnerTimeout:
                        caught.add("inner")
                    helper()
            except OuterTimeout:
                caught.add("outer")
        else:
            try:
                async with inner:
                    await asyncio.sleep(duration)
            except InnerTimeout:
                caught.add("inner")
        await asyncio.sleep(0)  # a stray cancellation would land here
    except BaseException as leaked:
        problem(f"leaked outside its scope: {leaked!r}")
    verdict(inner, outer, caught)


async def async_worker(seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    for index in range(rounds):
        await async_round(rng, nested=index % 2 == 1)


# -- drivers -----------------------------------------------------------------------------------

def run() -> None:
    rounds = -(-ITERATIONS // WORKERS)
    if VARIANT == "entry-failure":
        inject_entry_failures()
    if backend == "signal":
        sync_worker(0, ITERATIONS)
    elif backend == "thread":
        sys.setswitchinterval(0.0005)  # more interleavings, and a watchdog that gets the GIL
        threads = [threading.Thread(target=sync_worker, args=(seed, rounds))
                   for seed in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        watchdog = __import__("celery_timeouts.backends", fromlist=["get_backend"]).get_backend(
            "thread"
        )
        if watchdog._pending:
            problem(f"injections still pending after every scope exited: {watchdog._pending}")
    elif backend == "gevent":
        gevent.joinall([gevent.spawn(sync_worker, seed, rounds) for seed in range(WORKERS)],
                       raise_error=True)
    elif backend == "eventlet":
        pool = [eventlet.spawn(sync_worker, seed, rounds) for seed in range(WORKERS)]
        for green_thread in pool:
            green_thread.wait()
    else:

        async def main() -> None:
            await asyncio.gather(*(async_worker(seed, rounds) for seed in range(WORKERS)))

        asyncio.run(main())


# A run that hangs prints every thread's stack and exits, well before the test's timeout.
faulthandler.dump_traceback_later(float(os.environ.get("STRESS_HANG_AFTER", "240")), exit=True)
started = time.monotonic()
run()
faulthandler.cancel_dump_traceback_later()
print(json.dumps({
    "backend": mode,
    "counts": dict(counts),
    "problems": problems,
    "seconds": round(time.monotonic() - started, 1),
}))
