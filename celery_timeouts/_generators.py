"""`@portable_timeout(...)` on generator and async-generator functions.

The limit covers the generator's whole life, from its first `next()` (or `send`,
`asend`, ...) to its end: the same deadline a `with portable_timeout(n):` around the
loop that consumes it would have, and what a task time limit means. Timing each
resumption instead would let a generator that yields often run for ever (twelve
0.1 s steps under a 0.2 s limit), which no one who writes `@portable_timeout(0.2)`
expects.

The timeout is delivered only while the generator's own code runs: each resumption
runs inside a scope holding what is left of the deadline, and nothing is armed while
the generator is suspended at a `yield`, so the consumer is never interrupted. A
deadline that passed while the generator was suspended is raised at its next
resumption: the generator is closed (its `finally` blocks run) and the consumer gets
the timeout exception from `next()`. With `catchable=True` the exception is thrown
into the generator instead, which may catch it and go on, with no limit from then on.
Closing the generator early (`close()`, `aclose()`, garbage collection) is not timed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from time import monotonic
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._scope import TimeoutScope

Timing = tuple[float, str, type[BaseException], bool]  # seconds, backend, exception, catchable
# `TimeoutScope._trusted`, passed in by the decorator (the scope's module imports this one).
NewScope = Callable[[Any, str, "type[BaseException]", bool], "TimeoutScope"]


def timed_generator(
    generator: Generator[Any, Any, Any], timing: Timing, _scope: NewScope
) -> Generator[Any, Any, Any]:
    """Run `generator` step by step, each step inside a scope with what is left of the deadline."""
    steps = _Steps(timing, _scope)
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        remaining = steps.remaining()
        finished: StopIteration | None = None
        if steps.spent:
            try:
                item = _step(generator, sent, thrown)
            except StopIteration as stop:
                finished = stop
        elif remaining <= 0:
            overdue = steps.overdue()
            if not steps.catchable:
                generator.close()
                raise overdue
            try:
                item = _step(generator, None, overdue)
            except StopIteration as stop:
                finished = stop
        else:
            with steps.new_scope(remaining) as step:
                step.seconds = steps.seconds  # the message names the limit set, not what was left
                try:
                    item = _step(generator, sent, thrown)
                except StopIteration as stop:
                    finished = stop  # after `with`: a swallowed timeout still raises
            steps.ran(step)
        if finished is not None:
            return finished.value
        sent, thrown = None, None
        try:
            sent = yield item
        except GeneratorExit:
            generator.close()
            raise
        except BaseException as error:  # `throw()` by the consumer: pass it on
            thrown = error


def _step(generator: Generator[Any, Any, Any], sent: Any, thrown: BaseException | None) -> Any:
    if thrown is not None:
        return generator.throw(thrown)
    return generator.send(sent)


async def timed_async_generator(
    generator: AsyncGenerator[Any, Any], timing: Timing, _scope: NewScope
) -> AsyncGenerator[Any, Any]:
    """`timed_generator` for `async def` functions that `yield`."""
    steps = _Steps(timing, _scope)
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        remaining = steps.remaining()
        finished = False
        if steps.spent:
            try:
                item = await _async_step(generator, sent, thrown)
            except StopAsyncIteration:
                finished = True
        elif remaining <= 0:
            overdue = steps.overdue()
            if not steps.catchable:
                await generator.aclose()
                raise overdue
            try:
                item = await _async_step(generator, None, overdue)
            except StopAsyncIteration:
                finished = True
        else:
            async with steps.new_scope(remaining) as step:
                step.seconds = steps.seconds
                try:
                    item = await _async_step(generator, sent, thrown)
                except StopAsyncIteration:
                    finished = True
            steps.ran(step)
        if finished:
            return
        sent, thrown = None, None
        try:
            sent = yield item
        except GeneratorExit:
            await generator.aclose()
            raise
        except BaseException as error:
            thrown = error


async def _async_step(
    generator: AsyncGenerator[Any, Any], sent: Any, thrown: BaseException | None
) -> Any:
    if thrown is not None:
        return await generator.athrow(thrown)
    return await generator.asend(sent)


class _Steps:
    """What the steps of one timed generator share: its deadline (set at the first
    resumption), the backend that timed the last step, and whether a catchable timeout
    was delivered (no limit from then on)."""

    __slots__ = (
        "_new", "backend_used", "catchable", "deadline", "exception", "seconds", "spent",
        "wanted",
    )

    def __init__(self, timing: Timing, new_scope: NewScope) -> None:
        self.seconds, self.wanted, self.exception, self.catchable = timing
        self._new = new_scope
        self.deadline: float | None = None
        self.backend_used: str | None = None
        self.spent = False

    def remaining(self) -> float:
        if self.deadline is None:
            self.deadline = monotonic() + self.seconds
        return self.deadline - monotonic()

    def new_scope(self, seconds: float) -> TimeoutScope:
        return self._new(seconds, self.wanted, self.exception, self.catchable)

    def ran(self, step: TimeoutScope) -> None:
        """After a step's scope exited."""
        self.backend_used, self.spent = step.backend, step.fired

    def overdue(self) -> BaseException:
        """The timeout of a deadline that passed while the generator was suspended."""
        self.spent = True  # thrown in once (catchable): no limit from then on
        timeout = self.new_scope(self.seconds)
        timeout.backend = self.backend_used
        return timeout._public_exception(None)
