"""The asyncio backend: task cancellation turned into the scope's timeout."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from celery_timeouts import TaskTimeout, portable_timeout, remaining


def test_coroutine_function_times_out_when_awaited() -> None:
    @portable_timeout(0.1)
    async def slow() -> None:
        await asyncio.sleep(10)

    coroutine = slow()  # the timer starts when it runs, not when it is created
    time.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(TaskTimeout, match=r"backend=asyncio"):
        asyncio.run(coroutine)
    assert 0.09 <= time.monotonic() - started < 1.0


def test_async_with_no_fire_and_remaining() -> None:
    async def main() -> float | None:
        async with portable_timeout(5) as scope:
            await asyncio.sleep(0.01)
            left = remaining()
        assert not scope.fired and scope.backend == "asyncio"
        return left

    left = asyncio.run(main())
    assert left is not None and 4 < left < 5


def test_nested_with_stdlib_timeout_and_task_stays_usable() -> None:
    async def main() -> str:
        with pytest.raises(TaskTimeout):
            async with portable_timeout(0.05):
                await asyncio.sleep(10)
        await asyncio.sleep(0.01)  # no stray cancellation left behind
        task = asyncio.current_task()
        if sys.version_info >= (3, 11):
            assert task is not None and task.cancelling() == 0
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    async with portable_timeout(5):
                        await asyncio.sleep(10)
        return "ok"

    assert asyncio.run(main()) == "ok"


def test_external_cancellation_is_not_turned_into_a_timeout() -> None:
    async def main() -> None:
        async def victim() -> None:
            async with portable_timeout(5):
                await asyncio.sleep(10)

        task = asyncio.ensure_future(victim())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_many_tasks_fire_in_parallel() -> None:
    async def main() -> float:
        @portable_timeout(0.2)
        async def one() -> None:
            await asyncio.sleep(10)

        started = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(100)), return_exceptions=True)
        assert all(isinstance(result, TaskTimeout) for result in results)
        return time.monotonic() - started

    assert asyncio.run(main()) < 1.5
