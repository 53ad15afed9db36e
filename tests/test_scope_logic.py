"""The scope's own logic, exactly and fast: a fake backend that never fires by itself.

Nesting, settling, catchable and quiet scopes, the deadline that holds at exit, entry
failures and deadline moves, each with the timeout delivered at a chosen instruction
(`FakeBackend.fire`) instead of by a real timer. The real backends get the same cases,
with real timers, in test_conformance.py.
"""

from __future__ import annotations

import contextlib
import dis
import math
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

import pytest

from celery_timeouts import (
    ScopeState,
    TaskTimeout,
    current_scope,
    move_on_after,
    portable_timeout,
)
from celery_timeouts._scope import TimeoutScope
from celery_timeouts.backends import _instances
from celery_timeouts.backends.base import Backend

LONG = 1000.0  # no deadline passes by itself during a test


class FakeBackend(Backend):
    """Stands in for the thread backend; records what the scopes ask of it."""

    name = "thread"

    def __init__(self) -> None:
        self.log: list[tuple[str, TimeoutScope]] = []
        self.armed: list[TimeoutScope] = []
        self.refuse_next_arm: BaseException | None = None
        self.while_arming: Callable[[TimeoutScope], object] | None = None
        self.known: dict[int, float] = {}  # id(scope) -> the deadline it was told of

    def unavailable_reason(self) -> str | None:
        return None

    def arm(self, scope: TimeoutScope) -> tuple[str, TimeoutScope]:
        if self.refuse_next_arm is not None:
            error, self.refuse_next_arm = self.refuse_next_arm, None
            raise error
        self.log.append(("arm", scope))
        self.armed.append(scope)
        self.known[id(scope)] = scope._deadline
        if self.while_arming is not None:
            self.while_arming(scope)
        return ("record", scope)

    def disarm(self, scope: TimeoutScope) -> None:
        self.log.append(("disarm", scope))
        self.armed.remove(scope)

    def reschedule(self, scope: TimeoutScope) -> None:
        if scope._backend_state is None:
            self.log.append(("reschedule before the record", scope))
            return  # as every backend: nothing to act on until arm() returns
        assert scope._backend_state == ("record", scope)
        self.log.append(("reschedule", scope))
        self.known[id(scope)] = scope._deadline

    def fire(self, scope: TimeoutScope) -> NoReturn:
        """Deliver `scope`'s timeout here, as a backend's delivery lands in the body."""
        assert scope in self.armed, "a backend delivers only for a scope it has armed"
        raise scope._fire()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBackend]:
    backend = FakeBackend()
    monkeypatch.setitem(_instances, "thread", backend)
    yield backend
    assert backend.armed == [], "a scope was left armed"
    assert current_scope() is None


def scope(seconds: float | None = LONG, **options: object) -> TimeoutScope:
    return portable_timeout(seconds, backend="thread", **options)  # type: ignore[arg-type]


def test_the_inner_scope_fired_raises_there_and_the_outer_body_goes_on(
    fake: FakeBackend,
) -> None:
    steps = []
    with scope() as outer:
        with pytest.raises(TaskTimeout), scope() as inner:
            fake.fire(inner)
        steps.append("outer body goes on")
    assert steps == ["outer body goes on"]
    assert inner.fired and not outer.fired
    assert fake.log == [("arm", outer), ("arm", inner), ("disarm", inner), ("disarm", outer)]


def test_the_outer_scope_fired_inside_the_inner_passes_through_it(fake: FakeBackend) -> None:
    reached = []
    with pytest.raises(TaskTimeout) as raised, scope(exception=TaskTimeout) as outer:
        with scope() as inner:
            fake.fire(outer)
        reached.append("after inner")  # never: the unwinding goes on to the outer scope
    assert reached == []
    assert outer.fired and not inner.fired
    assert f"{LONG:g} s" in str(raised.value)


def test_except_exception_in_the_body_cannot_stop_the_unwinding(fake: FakeBackend) -> None:
    caught = []
    with pytest.raises(TaskTimeout), scope() as timed:
        try:
            fake.fire(timed)
        except Exception:  # what user code does
            caught.append("swallowed")
    assert caught == []


def test_a_swallowed_timeout_is_raised_again_at_exit(fake: FakeBackend) -> None:
    # The body insists: suppress(BaseException) inside the scope.
    with pytest.raises(TaskTimeout), scope() as timed, contextlib.suppress(BaseException):
        fake.fire(timed)
    assert timed.fired


def test_a_catchable_timeout_caught_in_the_body_ends_there(fake: FakeBackend) -> None:
    class Soft(Exception):
        pass

    caught = []
    with scope(exception=Soft, catchable=True) as soft:
        try:
            fake.fire(soft)
        except Soft as error:
            caught.append(error)
    assert len(caught) == 1 and soft.fired


def test_a_catchable_timeout_not_caught_leaves_as_its_own_exception(fake: FakeBackend) -> None:
    class Soft(Exception):
        pass

    with pytest.raises(Soft), scope(exception=Soft, catchable=True) as soft:
        fake.fire(soft)


def test_move_on_after_swallows_only_its_own_timeout(fake: FakeBackend) -> None:
    with move_on_after(LONG, backend="thread") as quiet:
        fake.fire(quiet)
    assert quiet.fired
    with (
        pytest.raises(TaskTimeout),
        scope() as outer,
        move_on_after(LONG, backend="thread") as quiet,
    ):
        fake.fire(outer)
    assert not quiet.fired


def test_an_overdue_timeout_not_delivered_yet_is_raised_at_exit(fake: FakeBackend) -> None:
    # The backend found no safe place before the body ended: the deadline holds.
    with pytest.raises(TaskTimeout), scope() as timed:
        timed._mark_overdue()
    assert timed.fired


def test_an_entry_that_fails_in_arm_leaves_nothing(fake: FakeBackend) -> None:
    with scope() as outer:
        fake.refuse_next_arm = OSError("no timer")
        with pytest.raises(OSError, match="no timer"), scope():
            pytest.fail("the body of a scope that could not arm must not run")
        assert current_scope() is outer
    assert [event for event, _ in fake.log] == ["arm", "disarm"]


def test_reschedule_and_cancel_move_the_deadline_and_tell_the_backend(
    fake: FakeBackend,
) -> None:
    with pytest.raises(TaskTimeout) as raised, scope() as timed:
        later = time.monotonic() + 2 * LONG
        timed.reschedule(later)
        assert timed.deadline == later and fake.log[-1] == ("reschedule", timed)
        timed.reschedule(None)
        assert timed.deadline is None and timed.remaining() is None
        before = time.monotonic()
        timed.cancel()
        assert timed.cancel_called and before <= timed._deadline <= time.monotonic()
        assert [event for event, _ in fake.log].count("reschedule") == 3
        fake.fire(timed)
    assert raised.value.cancelled  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="active scope"):
        timed.reschedule(None)


@pytest.mark.parametrize("move", ["cancel", "reschedule"])
def test_a_deadline_moved_while_the_backend_arms_reaches_it_once_armed(
    fake: FakeBackend, move: str
) -> None:
    # As another thread's cancel() or reschedule() landing between the scope becoming
    # active and arm() returning its record: the backend gets the move after arm().
    later = time.monotonic() + 2 * LONG
    fake.while_arming = (
        (lambda timed: timed.cancel()) if move == "cancel"
        else (lambda timed: timed.reschedule(later))
    )
    with contextlib.ExitStack() as stack:
        if move == "cancel":
            stack.enter_context(pytest.raises(TaskTimeout))
        timed = stack.enter_context(scope())
        fake.while_arming = None
        events = [event for event, _ in fake.log]
        assert events == ["arm", "reschedule before the record", "reschedule"], events
        assert timed.deadline == (later if move == "reschedule" else timed._deadline)
        if move == "cancel":
            fake.fire(timed)


def _enter_acting_before(
    line: int, act: Callable[[TimeoutScope], object]
) -> tuple[TimeoutScope, bool]:
    """Enter a new scope, running `act(scope)` once just before the entry's `line` (as
    another thread may at any instruction); the scope, and whether `act` ran."""
    code = TimeoutScope._enter.__code__
    timed = scope()
    pending = [True]

    def at_line(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == line and pending:
            pending.clear()
            act(timed)
        return at_line

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return at_line if frame.f_code is code else None

    before = sys.gettrace()
    sys.settrace(calls)
    try:
        timed.__enter__()
    finally:
        sys.settrace(before)
    return timed, not pending


def _at_each_line_of_entry(
    act: Callable[[TimeoutScope], object]
) -> Iterator[tuple[int, TimeoutScope]]:
    """For each line of the scope's entry, a scope entered with `act` run just before
    that line; yields the line and the scope while it is entered (lines the entry does
    not run, its error paths, are skipped)."""
    code = TimeoutScope._enter.__code__
    lines = sorted({line for _, line in dis.findlinestarts(code) if line is not None})
    reached = 0
    for line in lines:
        timed, acted = _enter_acting_before(line, act)
        try:
            if acted:
                reached += 1
                yield line, timed
        finally:
            timed._leave()
    assert reached >= 15, f"the entry ran only {reached} of its lines: {lines}"


@pytest.mark.parametrize("move", ["cancel", "reschedule later", "away and back"])
def test_a_move_at_any_point_of_the_entry_reaches_the_backend(
    fake: FakeBackend, move: str
) -> None:
    # Whatever instruction of the entry another thread's cancel() or reschedule() lands
    # at, the backend ends up enforcing the scope's deadline, not an older one.
    def away_and_back(timed: TimeoutScope) -> None:
        # A move, undone while the backend arms: the scope ends with the deadline it
        # started with, though the backend may have seen the other one.
        if timed.state is ScopeState.ACTIVE:  # reschedule() is refused before
            original = timed._deadline
            timed.reschedule(None)
            fake.while_arming = lambda again: again.reschedule(original)

    acts: dict[str, Callable[[TimeoutScope], object]] = {
        "cancel": lambda timed: timed.cancel(),
        "reschedule later": lambda timed: (
            timed.reschedule(time.monotonic() + 2 * LONG)
            if timed.state is ScopeState.ACTIVE else None
        ),
        "away and back": away_and_back,
    }
    for line, timed in _at_each_line_of_entry(acts[move]):
        fake.while_arming = None
        assert fake.known[id(timed)] == timed._deadline, f"moved before line {line}"
        if move == "cancel":
            assert timed._deadline <= time.monotonic(), f"cancelled before line {line}"


def test_a_scope_without_a_limit_is_armed_with_no_deadline(fake: FakeBackend) -> None:
    with scope(None) as unlimited:
        assert unlimited._deadline == math.inf and unlimited.deadline is None
        assert fake.armed == [unlimited]
        unlimited.reschedule(time.monotonic() + LONG)
        assert unlimited.remaining() is not None


def test_each_scope_is_used_once(fake: FakeBackend) -> None:
    once = scope()
    with once:
        pass
    with pytest.raises(RuntimeError, match="single 'with' block"), once:
        pass
