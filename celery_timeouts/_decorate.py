"""`@portable_timeout(...)` for functions, methods, class/static methods and coroutines.

Built on wrapt so signature, `__name__`, `__wrapped__` and descriptor binding are kept.
The timer of a coroutine function starts when the coroutine runs, not when the call
creates it; a generator or async generator is timed over its whole life from its
first resumption (see `_generators`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import wrapt

from ._generators import NewScope, Timing, timed_async_generator, timed_generator
from .backends import _mismatch
from .exceptions import BackendUnavailable

_F = TypeVar("_F", bound=Callable[..., Any])


def decorate(
    wrapped: _F,
    seconds: float | None,
    backend: str,
    exception: type[BaseException],
    catchable: bool,
    scope: NewScope,
) -> _F:
    """`wrapped`, each call of it timed by a fresh `scope(seconds, backend, exception,
    catchable)` (`TimeoutScope._trusted`, passed in: this module does not import the
    scope's, which imports it)."""
    target = getattr(wrapped, "__func__", wrapped)  # classmethod / staticmethod objects
    if not callable(target):
        raise TypeError(
            f"portable_timeout(...) decorates functions and methods, got {wrapped!r}"
        )
    if seconds is not None and inspect.isasyncgenfunction(target):
        if backend not in ("auto", "asyncio"):
            raise BackendUnavailable(_mismatch(backend, coroutine=True))
        return _timed_generator_function(
            wrapped, timed_async_generator, (seconds, backend, exception, catchable), scope
        )
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
    if seconds is not None and inspect.isgeneratorfunction(target):
        return _timed_generator_function(
            wrapped, timed_generator, (seconds, backend, exception, catchable), scope
        )

    def timed(
        call: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        with scope(seconds, backend, exception, catchable):
            return call(*args, **kwargs)

    function = _TimedFunction(wrapped, timed)
    function._self_new_scope = functools.partial(scope, seconds, backend, exception, catchable)
    return cast(_F, function)


def _timed_generator_function(
    wrapped: _F, run: Callable[[Any, Timing, NewScope], Any], timing: Timing, scope: NewScope
) -> _F:
    """`wrapped`, a generator or async generator function, whose every generator is run
    by `run` (`timed_generator`, `timed_async_generator`): timed over its whole life."""

    @wrapt.decorator
    def timed_generator_function(
        call: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return run(call(*args, **kwargs), timing, scope)

    return cast(_F, timed_generator_function(wrapped))


if TYPE_CHECKING:
    from ._scope import TimeoutScope

    _FunctionWrapper = wrapt.FunctionWrapper[..., Any]
else:  # wrapt 1.x cannot be subscripted at run time
    _FunctionWrapper = wrapt.FunctionWrapper


class _TimedFunction(_FunctionWrapper):
    """A decorated function called as itself (not as a bound method) runs here.

    wrapt's own call of an unbound wrapper first looks for `__self__` on the wrapped
    function, raising and clearing an AttributeError for every plain function: that
    costs more than the whole timeout. The wrapper never uses the instance, so a direct
    call does the same. Bound methods go through wrapt's binding, to `timed`.
    """

    _self_new_scope: Callable[[], TimeoutScope]  # a fresh scope for each call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._self_new_scope():
            return self.__wrapped__(*args, **kwargs)
