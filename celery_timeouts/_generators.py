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
    seconds, backend, exception, catchable = timing
    deadline: float | None = None
    backend_used: str | None = None
    spent = False  # a catchable timeout was delivered: no limit from then on
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        if deadline is None:
            deadline = monotonic() + seconds
        remaining = deadline - monotonic()
        finished: StopIteration | None = None
        if spent:
            try:
                item = _step(generator, sent, thrown)
            except StopIteration as stop:
                finished = stop
        elif remaining <= 0:
            overdue = _overdue(timing, backend_used, _scope)
            if not catchable:
                generator.close()
                raise overdue
            spent = True
            try:
                item = _step(generator, None, overdue)
            except StopIteration as stop:
                finished = stop
        else:
            with _scope(remaining, backend, exception, catchable) as step:
                step.seconds = seconds  # the message names the limit set, not what was left
                try:
                    item = _step(generator, sent, thrown)
                except StopIteration as stop:
                    finished = stop  # after `with`: a swallowed timeout still raises
            backend_used, spent = step.backend, step.fired
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
    seconds, backend, exception, catchable = timing
    deadline: float | None = None
    backend_used: str | None = None
    spent = False
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        if deadline is None:
            deadline = monotonic() + seconds
        remaining = deadline - monotonic()
        finished = False
        if spent:
            try:
                item = await _async_step(generator, sent, thrown)
            except StopAsyncIteration:
                finished = True
        elif remaining <= 0:
            overdue = _overdue(timing, backend_used, _scope)
            if not catchable:
                await generator.aclose()
                raise overdue
            spent = True
            try:
                item = await _async_step(generator, None, overdue)
            except StopAsyncIteration:
                finished = True
        else:
            async with _scope(remaining, backend, exception, catchable) as step:
                step.seconds = seconds
                try:
                    item = await _async_step(generator, sent, thrown)
                except StopAsyncIteration:
                    finished = True
            backend_used, spent = step.backend, step.fired
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


def _overdue(timing: Timing, backend_used: str | None, _scope: NewScope) -> BaseException:
    """The timeout of a deadline that passed while the generator was suspended."""
    seconds, backend, exception, catchable = timing
    timeout = _scope(seconds, backend, exception, catchable)
    timeout.backend = backend_used
    return timeout._public_exception(None)
