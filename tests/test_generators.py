"""`@portable_timeout(...)` on generators and async generators: the deadline covers the
whole life from the first resumption, is delivered only while the generator runs, and
never reaches the consumer while the generator is suspended.

Timing bounds are loose (seconds against 0.3 s limits) for loaded CI machines."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from celery_timeouts import TaskTimeout, current_scope, portable_timeout


def slow_steps(events: list[str]) -> Callable[[], Iterator[int]]:
    @portable_timeout(0.3)
    def steps() -> Iterator[int]:
        try:
            for index in range(30):  # 3 s in all, 0.1 s a step: each step is under 0.3 s
                time.sleep(0.1)
                yield index
        finally:
            events.append("cleaned up")

    return steps


def consume(steps: Callable[[], Iterator[int]], got: list[int]) -> float:
    started = time.monotonic()
    with pytest.raises(TaskTimeout, match=r"exceeded 0\.3 s timeout"):
        for item in steps():
            got.append(item)
    return time.monotonic() - started


def test_a_generator_is_timed_over_its_whole_life_in_the_main_thread() -> None:
    events: list[str] = []
    got: list[int] = []
    elapsed = consume(slow_steps(events), got)
    assert 1 <= len(got) < 10, got
    assert elapsed < 2.0
    assert events == ["cleaned up"]
    assert current_scope() is None


def test_a_generator_is_timed_in_a_worker_thread() -> None:
    outcome: list[object] = []

    def worker() -> None:
        got: list[int] = []
        outcome.append((consume(slow_steps([]), got), got))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    ((elapsed, got),) = outcome
    assert isinstance(elapsed, float) and elapsed < 2.0
    assert isinstance(got, list) and 1 <= len(got) < 10


def test_the_consumer_is_never_interrupted_while_the_generator_is_suspended() -> None:
    events: list[str] = []

    @portable_timeout(0.3)
    def quick() -> Iterator[int]:
        try:
            yield 1
            events.append("resumed")  # must not run: the deadline passed while suspended
            yield 2
        finally:
            events.append("cleaned up")

    items = quick()
    assert next(items) == 1
    time.sleep(0.6)  # past the deadline, in no scope: nothing may land here
    assert current_scope() is None
    with pytest.raises(TaskTimeout):
        next(items)
    assert events == ["cleaned up"]


def test_a_fast_generator_keeps_send_and_its_return_value() -> None:
    @portable_timeout(5)
    def echo() -> Iterator[object]:
        received = yield "ready"
        while received != "stop":
            received = yield f"got {received}"
        return "done"

    def delegate() -> Iterator[object]:
        result = yield from echo()
        yield result

    items = delegate()
    assert next(items) == "ready"
    assert items.send(1) == "got 1"
    assert items.send("stop") == "done"


def test_a_swallowed_timeout_still_ends_a_generator() -> None:
    @portable_timeout(0.3)
    def stubborn() -> Iterator[int]:
        with contextlib.suppress(BaseException):  # swallows the timeout on purpose
            time.sleep(3)
        yield 1

    with pytest.raises(TaskTimeout):
        list(stubborn())


def test_catchable_lets_the_generator_handle_its_timeout() -> None:
    @portable_timeout(0.3, catchable=True)
    def careful() -> Iterator[str]:
        try:
            time.sleep(3)
            yield "finished"
        except TaskTimeout:
            yield "timed out, partial result"

    assert list(careful()) == ["timed out, partial result"]


def test_an_async_generator_is_timed_over_its_whole_life() -> None:
    events: list[str] = []

    @portable_timeout(0.3)
    async def steps() -> AsyncIterator[int]:
        try:
            for index in range(30):
                await asyncio.sleep(0.1)
                yield index
        finally:
            events.append("cleaned up")

    async def main() -> list[int]:
        got: list[int] = []
        with pytest.raises(TaskTimeout):
            async for item in steps():
                got.append(item)
        return got

    started = time.monotonic()
    got = asyncio.run(main())
    assert 1 <= len(got) < 10 and time.monotonic() - started < 2.0
    assert events == ["cleaned up"]


def test_an_async_consumer_is_not_cancelled_while_the_generator_is_suspended() -> None:
    @portable_timeout(0.3)
    async def quick() -> AsyncIterator[int]:
        yield 1
        yield 2

    async def main() -> None:
        items = quick()
        assert await items.__anext__() == 1
        await asyncio.sleep(0.6)  # would be cancelled if the deadline were armed here
        with pytest.raises(TaskTimeout):
            await items.__anext__()

    asyncio.run(main())


def test_a_fast_async_generator_runs_to_the_end() -> None:
    @portable_timeout(5)
    async def numbers() -> AsyncIterator[int]:
        for index in range(3):
            await asyncio.sleep(0)
            yield index

    async def main() -> list[int]:
        return [item async for item in numbers()]

    assert asyncio.run(main()) == [0, 1, 2]


def test_a_decorated_generator_method_is_still_a_generator_function() -> None:
    class Source:
        def __init__(self) -> None:
            self.items = [1, 2]

        @portable_timeout(5)
        def each(self) -> Iterator[int]:
            yield from self.items

    assert inspect.isgeneratorfunction(Source.each)
    assert list(Source().each()) == [1, 2]
