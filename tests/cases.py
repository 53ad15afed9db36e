"""The conformance cases every synchronous backend must pass.

Each case is a plain function run in the context under test: the main thread
(signal), a worker thread (thread), a gevent greenlet, an eventlet green thread. The
green contexts run them in a monkey-patched subprocess (tests/green_runner.py), so the
cases import nothing but the library and use `spin()` as their body: a loop of short
sleeps, which every backend can interrupt (greenlets only where they yield).

Timing bounds are loose on purpose: CI machines stall, and a timeout that fires a
few hundred milliseconds late is still a timeout. What must never happen is the
opposite: no timeout, or an exception outside its scope.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import threading
import time
import weakref

from celery_timeouts import (
    TaskTimeout,
    check,
    current_scope,
    move_on_after,
    portable_timeout,
    remaining,
    sleep,
)

SLACK = 1.0  # seconds a timeout may be late on a loaded machine


def spin(seconds: float) -> None:
    """Work that lasts `seconds` and yields often (greenlets can be interrupted in it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.0005)


def _timed(body, *args):
    started = time.monotonic()
    try:
        result = body(*args)
    except BaseException as error:
        return error, time.monotonic() - started
    return result, time.monotonic() - started


def case_fires(expected_backend: str) -> None:
    with_scope = {}

    def body():
        with portable_timeout(0.1) as scope:
            with_scope["scope"] = scope
            spin(10)

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout), repr(error)
    assert isinstance(error, TimeoutError)
    assert 0.09 <= elapsed < 0.1 + SLACK, elapsed
    scope = with_scope["scope"]
    assert scope.fired and scope.backend == expected_backend, scope
    assert str(error) == f"exceeded 0.1 s timeout (backend={expected_backend})"


def case_no_fire_returns_value(expected_backend: str) -> None:
    with portable_timeout(5) as scope:
        value = 42
    assert value == 42 and not scope.fired and scope.backend == expected_backend
    # Nothing armed is left behind: a scope left well before its deadline, then time past
    # that deadline (a timer or injection left armed would raise in the spin).
    with portable_timeout(0.05) as short:
        pass
    spin(0.3)
    assert not short.fired and short.state.value == "exited"


def case_except_exception_cannot_swallow(expected_backend: str) -> None:
    swallowed = []

    def body():
        with portable_timeout(0.1):
            try:
                spin(10)
            except Exception as error:  # the timeout is not an Exception
                swallowed.append(error)

    error, _ = _timed(body)
    assert isinstance(error, TaskTimeout) and not swallowed, (error, swallowed)


def case_finally_runs(expected_backend: str) -> None:
    cleaned = []

    def body():
        with portable_timeout(0.1):
            try:
                spin(10)
            finally:
                cleaned.append(True)

    error, _ = _timed(body)
    assert isinstance(error, TaskTimeout) and cleaned == [True]


def case_swallowed_timeout_still_raises(expected_backend: str) -> None:
    def body():
        with portable_timeout(0.1):
            try:  # noqa: SIM105 - user code that eats everything
                spin(10)
            except BaseException:
                pass
            return "partial result"

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout), error
    assert elapsed < 0.1 + SLACK


def case_nested_inner_first(expected_backend: str) -> None:
    events = []

    def body():
        with portable_timeout(0.6) as outer:
            try:
                with portable_timeout(0.1) as inner:
                    spin(10)
            except TaskTimeout:
                events.append(("inner", inner.fired, outer.fired))
            spin(10)  # the outer deadline is still armed
        events.append("not reached")

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout) and "0.6 s" in str(error), error
    assert events == [("inner", True, False)], events
    assert 0.55 <= elapsed < 0.6 + SLACK, elapsed


def case_nested_outer_first(expected_backend: str) -> None:
    seen = {}

    def body():
        with portable_timeout(0.1) as outer:
            seen["outer"] = outer
            with portable_timeout(5) as inner:
                seen["inner"] = inner
                spin(10)

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout) and "0.1 s" in str(error), error
    assert seen["outer"].fired and not seen["inner"].fired
    assert elapsed < 0.1 + SLACK


def case_inner_exit_keeps_outer_armed(expected_backend: str) -> None:
    def body():
        with portable_timeout(0.3):
            for _ in range(5):
                with portable_timeout(5):
                    spin(0.01)
            spin(10)

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout) and 0.28 <= elapsed < 0.3 + SLACK, (error, elapsed)


def case_custom_exception(expected_backend: str) -> None:
    class Slow(Exception):
        pass

    def body():
        with portable_timeout(0.1, exception=Slow):
            spin(10)

    error, _ = _timed(body)
    assert type(error) is Slow and "exceeded 0.1 s timeout" in str(error), repr(error)


class Soft(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded."""


def case_catchable_is_raised_in_the_body_which_carries_on(expected_backend: str) -> None:
    caught = []

    def body():
        with portable_timeout(0.1, exception=Soft, catchable=True) as scope:
            try:
                spin(10)
            except Soft as error:  # the public exception itself, where the body was
                caught.append(error)
                spin(0.2)  # clean-up: not interrupted again
            return scope

    scope, elapsed = _timed(body)
    assert not isinstance(scope, BaseException), repr(scope)
    assert scope.fired and scope.state.value == "exited"
    assert len(caught) == 1 and type(caught[0]) is Soft, caught
    assert "exceeded 0.1 s timeout" in str(caught[0])
    assert 0.29 <= elapsed < 0.3 + SLACK, elapsed
    assert current_scope() is None


def case_catchable_uncaught_leaves_as_itself(expected_backend: str) -> None:
    def body():
        with portable_timeout(0.1, exception=Soft, catchable=True):
            spin(10)

    error, elapsed = _timed(body)
    assert type(error) is Soft, repr(error)
    assert 0.09 <= elapsed < 0.1 + SLACK, elapsed


def case_catchable_soft_inside_a_hard_limit(expected_backend: str) -> None:
    # Celery's pairing: the soft limit is caught and the task keeps working; the hard
    # limit then ends it, and `except Exception:` cannot stop that.
    events = []

    def body():
        with portable_timeout(0.5), portable_timeout(0.1, exception=Soft, catchable=True):
            try:
                spin(10)
            except Soft:
                events.append("soft")
                try:
                    spin(10)
                except Exception:
                    events.append("swallowed")

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout) and "0.5 s" in str(error), repr(error)
    assert events == ["soft"], events
    assert 0.45 <= elapsed < 0.5 + SLACK, elapsed


def case_catchable_decorator_and_check(expected_backend: str) -> None:
    @portable_timeout(0.05, exception=Soft, catchable=True)
    def polls():
        end = time.monotonic() + 10
        while time.monotonic() < end:
            check()
        return "not reached"

    error, _ = _timed(polls)
    assert type(error) is Soft, repr(error)


def case_decorator_kinds(expected_backend: str) -> None:
    class Worker:
        factor = 3

        @portable_timeout(5)
        def method(self, x: int, *, y: int = 1) -> int:
            """Multiply."""
            return x * y * self.factor

        @portable_timeout(5)
        @classmethod
        def klass(cls, x: int) -> int:
            return x * cls.factor

        @portable_timeout(5)
        @staticmethod
        def static(x: int) -> int:
            return x + 1

        @portable_timeout(0.1)
        def slow(self) -> None:
            spin(10)

    worker = Worker()
    assert worker.method(2, y=2) == 12
    assert Worker.klass(2) == 6 and worker.klass(2) == 6
    assert Worker.static(2) == 3 and worker.static(2) == 3
    assert Worker.method.__name__ == "method" and Worker.method.__doc__ == "Multiply."
    signature = inspect.signature(Worker.method)
    assert list(signature.parameters) == ["self", "x", "y"], signature
    assert signature == inspect.signature(Worker.method.__wrapped__)
    assert Worker.__dict__["method"].__wrapped__.__name__ == "method"
    error, _ = _timed(worker.slow)
    assert isinstance(error, TaskTimeout)
    error, _ = _timed(worker.slow)  # every call gets a fresh scope
    assert isinstance(error, TaskTimeout)


def case_cooperative_helpers(expected_backend: str) -> None:
    assert remaining() is None and current_scope() is None
    check()  # no scope: nothing to do
    with portable_timeout(0.3) as scope:
        left = remaining()
        assert left is not None and 0.2 < left <= 0.3
        assert current_scope() is scope
        with portable_timeout(None):
            assert remaining() is not None and remaining() <= left  # type: ignore[operator]

    def body():
        with portable_timeout(0.1):
            sleep(10)  # returns early by raising

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout) and elapsed < 0.1 + SLACK, (error, elapsed)
    assert remaining() is None


def case_reuse_is_refused(expected_backend: str) -> None:
    scope = portable_timeout(5)
    with scope:
        pass
    try:
        with scope:
            pass
    except RuntimeError as error:
        assert "single 'with' block" in str(error)
    else:
        raise AssertionError("a scope was entered twice")


def case_no_limit(expected_backend: str) -> None:
    with portable_timeout(None) as scope:
        spin(0.05)
    assert not scope.fired and scope.deadline is None and scope.remaining() is None
    # Armed without a timer, by the backend that reschedule() or cancel() would use.
    assert scope.backend == expected_backend


def case_nothing_leaks_after_many_timeouts(expected_backend: str) -> None:
    fired = 0
    for _ in range(20):
        try:
            with portable_timeout(0.01):
                spin(1)
        except TaskTimeout:
            fired += 1
    assert fired == 20
    spin(0.1)  # a stray timeout would surface here


def case_a_left_scope_is_freed_without_the_collector(expected_backend: str) -> None:
    # What the backend armed (its record, timer, heap entry) keeps nothing alive once
    # the scope is left: reference counting alone frees it. (A fired scope's timeout
    # holds it through the traceback's frames, as any exception holds its frames.)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(3):
            with portable_timeout(30) as scope:
                pass
            assert scope.backend == expected_backend
            left = weakref.ref(scope)
            del scope
            assert left() is None, "a left scope is still referenced"
    finally:
        if enabled:
            gc.enable()


def _later(seconds, action):
    """Run `action` after `seconds` in another thread (a greenlet where patched)."""
    def run():
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def case_cancel_from_another_thread(expected_backend: str) -> None:
    for limit in (None, 30):
        box = {}

        def body(limit=limit, box=box):
            with portable_timeout(limit) as scope:
                box["scope"] = scope
                _later(0.1, scope.cancel)
                spin(10)

        error, elapsed = _timed(body)
        assert isinstance(error, TaskTimeout), (limit, repr(error))
        assert error.cancelled and "cancelled" in str(error), str(error)
        assert 0.09 <= elapsed < 0.1 + SLACK, (limit, elapsed)
        scope = box["scope"]
        assert scope.cancel_called and scope.fired, scope
        assert scope.backend == expected_backend, scope
        assert current_scope() is None


def case_cancel_in_the_body_and_before_entry(expected_backend: str) -> None:
    def cancelled_inside():
        with portable_timeout(30) as scope:
            scope.cancel()
            scope.cancel()  # idempotent
            spin(10)

    error, elapsed = _timed(cancelled_inside)
    assert isinstance(error, TaskTimeout) and error.cancelled, repr(error)
    assert elapsed < SLACK, elapsed

    scope = portable_timeout(30)
    scope.cancel()
    error, elapsed = _timed(lambda: _enter_and_spin(scope))
    assert isinstance(error, TaskTimeout) and error.cancelled, repr(error)
    assert elapsed < SLACK, elapsed
    scope.cancel()  # after the exit: nothing happens


def _enter_and_spin(scope):
    with scope:
        spin(10)


def case_cancel_of_a_catchable_scope_reaches_the_body(expected_backend: str) -> None:
    caught = []
    with portable_timeout(30, catchable=True) as scope:
        _later(0.1, scope.cancel)
        try:
            spin(10)
        except TaskTimeout as error:
            caught.append(error)
        spin(0.05)  # carries on, as after a soft limit
    assert len(caught) == 1 and caught[0].cancelled, caught


def case_reschedule_earlier_later_and_none(expected_backend: str) -> None:
    def earlier():
        with portable_timeout(30) as scope:
            scope.reschedule(time.monotonic() + 0.1)
            assert scope.remaining() <= 0.1
            spin(10)

    error, elapsed = _timed(earlier)
    assert isinstance(error, TaskTimeout) and not error.cancelled, repr(error)
    assert 0.09 <= elapsed < 0.1 + SLACK, elapsed

    with portable_timeout(0.1) as scope:
        scope.reschedule(time.monotonic() + 30)
        spin(0.3)
        scope.reschedule(None)
        assert scope.deadline is None and scope.remaining() is None
        spin(0.2)
    assert not scope.fired

    def none_then_a_deadline():
        with portable_timeout(None) as scope:
            scope.reschedule(time.monotonic() + 0.1)
            spin(10)

    error, elapsed = _timed(none_then_a_deadline)
    assert isinstance(error, TaskTimeout), repr(error)
    assert 0.09 <= elapsed < 0.1 + SLACK, elapsed


def case_reschedule_from_another_thread(expected_backend: str) -> None:
    def body():
        with portable_timeout(30) as scope:
            _later(0.05, lambda: scope.reschedule(time.monotonic() + 0.1))
            spin(10)

    error, elapsed = _timed(body)
    assert isinstance(error, TaskTimeout) and not error.cancelled, repr(error)
    assert 0.14 <= elapsed < 0.15 + SLACK, elapsed

    # Later, from another thread, before the first deadline: it does not fire then.
    with portable_timeout(0.3) as scope:
        _later(0.05, lambda: scope.reschedule(time.monotonic() + 30)).join()
        spin(0.6)
    assert not scope.fired


def case_reschedule_refuses_what_it_cannot_do(expected_backend: str) -> None:
    with portable_timeout(30) as scope:
        for bad, kind in (("30", TypeError), (True, TypeError), (float("nan"), ValueError)):
            try:
                scope.reschedule(bad)
            except kind as error:
                assert repr(bad) in str(error), str(error)
            else:
                raise AssertionError(f"reschedule({bad!r}) was accepted")
    try:
        scope.reschedule(time.monotonic() + 1)
    except RuntimeError as error:
        assert "active" in str(error)
    else:
        raise AssertionError("reschedule() after the exit was accepted")
    # A deadline beyond what timers count is no practical limit.
    with portable_timeout(0.1) as scope:
        scope.reschedule(1e300)
        spin(0.2)
    assert not scope.fired


def case_move_on_after(expected_backend: str) -> None:
    started = time.monotonic()
    with move_on_after(0.1) as scope:
        spin(10)
    elapsed = time.monotonic() - started
    assert scope.fired and 0.09 <= elapsed < 0.1 + SLACK, (scope, elapsed)

    with move_on_after(30) as scope:
        spin(0.05)
    assert not scope.fired

    # Inside a longer portable_timeout: it moves on, the outer scope carries on.
    with portable_timeout(30) as outer:
        with move_on_after(0.1) as inner:
            spin(10)
        spin(0.05)
    assert inner.fired and not outer.fired

    # Around a shorter portable_timeout: the inner timeout is raised, not swallowed.
    def inner_first():
        with move_on_after(30) as around, portable_timeout(0.1):
            spin(10)
        return around

    error, _ = _timed(inner_first)
    assert isinstance(error, TaskTimeout), repr(error)

    # Inside a shorter portable_timeout: the outer timeout goes through it.
    def outer_first():
        with portable_timeout(0.1), move_on_after(30):
            spin(10)

    error, elapsed = _timed(outer_first)
    assert isinstance(error, TaskTimeout) and elapsed < 0.1 + SLACK, repr(error)

    # Cancelled: it moves on too.
    with move_on_after(None) as scope:
        _later(0.1, scope.cancel)
        spin(10)
    assert scope.cancel_called and scope.fired
    assert current_scope() is None


def case_suspended_generator_gets_its_timeout_only_while_it_runs(expected_backend: str) -> None:
    """A generator suspended at a `yield` inside a scope: its consumer, in no scope of its
    own, is never interrupted; the timeout reaches the generator's body once it runs
    again, or its scope's exit."""

    def working():
        with portable_timeout(0.2):
            yield "first"
            spin(5)  # resumed after the deadline: interrupted here
            yield "never"

    def idle():
        with portable_timeout(0.2) as scope:
            yield scope
        yield "after the scope"

    generator = working()
    assert next(generator) == "first"
    assert current_scope() is None  # the consumer's code is in no scope
    assert remaining() is None
    spin(0.6)  # past the deadline: nothing lands here
    check()  # nor here: the deadline is the generator's
    error, elapsed = _timed(next, generator)
    assert isinstance(error, TaskTimeout), repr(error)
    assert elapsed < 0.5 + SLACK, elapsed  # well before the 5 s the body would spin

    generator = idle()
    scope = next(generator)
    spin(0.6)
    error, _ = _timed(next, generator)  # resumed, and its scope exits at once
    assert isinstance(error, TaskTimeout), repr(error)
    assert scope.fired and scope.backend == expected_backend, scope
    spin(0.2)  # nothing was left armed for it


def case_a_contextmanager_scope_times_the_with_block_using_it(expected_backend: str) -> None:
    """`@contextmanager` around a scope: its generator is suspended at the `yield` while
    the `with` block using it runs, and that block is what the scope times."""

    @contextlib.contextmanager
    def limited(seconds):
        with portable_timeout(seconds) as scope:
            yield scope

    def body():
        with limited(0.1) as scope:
            assert current_scope() is scope
            spin(10)

    def in_an_exit_stack():
        with contextlib.ExitStack() as stack:
            stack.enter_context(limited(0.1))
            spin(10)

    @limited(0.1)
    def decorated():
        spin(10)

    for run in (body, in_an_exit_stack, decorated):
        error, elapsed = _timed(run)
        assert isinstance(error, TaskTimeout), (run.__name__, repr(error))
        assert elapsed < 0.1 + SLACK, (run.__name__, elapsed)


CASES = {name: func for name, func in sorted(globals().items()) if name.startswith("case_")}
