"""`@portable_timeout(...)` for functions, methods, class/static methods and coroutines.

Built on wrapt so signature, `__name__`, `__wrapped__` and descriptor binding are kept.
The timer of a coroutine function starts when the coroutine runs, not when the call
creates it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

import wrapt

from ._scope import TimeoutScope
from .backends import _mismatch
from .exceptions import BackendUnavailable

_F = TypeVar("_F", bound=Callable[..., Any])


def decorate(
    wrapped: _F,
    seconds: float | None,
    backend: str,
    exception: type[BaseException],
    catchable: bool,
) -> _F:
    target = getattr(wrapped, "__func__", wrapped)  # classmethod / staticmethod objects
    if not callable(target):
        raise TypeError(
            f"portable_timeout(...) decorates functions and methods, got {wrapped!r}"
        )
    scope = TimeoutScope._trusted
    if inspect.iscoroutinefunction(target):
        if backend not in ("auto", "asyncio"):
            raise BackendUnavailable(_mismatch(backend, coroutine=True))

        @wrapt.decorator
        async def timed_coroutine(
            call: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            async with scope(seconds, backend, exception, catchable):
                return await call(*args, **kwargs)

        return cast(_F, timed_coroutine(wrapped))

    if backend == "asyncio":
        raise BackendUnavailable(_mismatch(backend, coroutine=False))

    @wrapt.decorator
    def timed(
        call: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        with scope(seconds, backend, exception, catchable):
            return call(*args, **kwargs)

    return cast(_F, timed(wrapped))
