"""Which scope is current: the innermost scope of this thread, greenlet or task, and the
walk out through the scopes around it, written once.

Each scope keeps its parent, the scope that was innermost when it was entered; the chain
may hold spent scopes (left out of order, or in another context), which the walks here
skip or report as asked. Imports nothing else of the package, so every module can use it.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._scope import TimeoutScope


class ScopeState(enum.Enum):
    INIT = "init"
    ACTIVE = "active"
    EXITED = "exited"


class DeliveryState(enum.Enum):
    """Where a timeout (a scope's, or another timed item's) stands."""

    PENDING = "pending"  # its deadline has not been acted on
    # Due, not delivered yet: no safe place to land so far, a suspended generator's body,
    # a delivery asked for and not landed. If the body ends first, its exit raises it.
    OVERDUE = "overdue"
    FIRED = "fired"  # delivered to the body (or claimed by the body itself)


_ACTIVE, _EXITED = ScopeState.ACTIVE, ScopeState.EXITED

# The innermost scope entered and not yet left here (a ContextVar: per thread, greenlet
# and asyncio task).
innermost: ContextVar[TimeoutScope | None] = ContextVar(
    "celery_timeouts_innermost_scope", default=None
)


# Frames that can stop halfway and let the thread run on elsewhere in the same context:
# a scope entered in one may be current while its body is not running (suspended).
SUSPENDABLE = (
    inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
)
# How often a backend looks again for a suspended body, to deliver its timeout once it
# runs (or its scope's exit raises it).
RESUME_POLL = 0.05


_CONTEXTLIB = contextlib.__file__


def owning_frame(frame: FrameType) -> FrameType:
    """The frame whose code a scope entered in `frame` times.

    Usually `frame` itself. A generator that runs as a context manager is suspended at
    its `yield` while the code it wraps runs, and a scope around that `yield` times that
    code: for `@contextmanager`/`@asynccontextmanager` (entered through contextlib's
    `__enter__`, `ExitStack` included) the frame of the code that entered it, and for a
    pluggy hook wrapper (pytest's hooks) the frame of the hook call, which runs the
    wrapped hooks. Any other generator's scope times only the generator's own code.
    """
    if not frame.f_code.co_flags & SUSPENDABLE:
        return frame
    driver = frame.f_back
    while driver is not None and driver.f_code.co_flags & SUSPENDABLE:
        driver = driver.f_back  # generators delegating with `yield from`
    if driver is None:
        return frame
    if driver.f_code in _CONTEXT_MANAGER_ENTRIES:
        user = driver.f_back
        while user is not None and user.f_code.co_filename == _CONTEXTLIB:
            user = user.f_back  # ExitStack.enter_context, ContextDecorator
        return frame if user is None else owning_frame(user)
    if driver.f_code is _hook_call_code():
        return driver
    return frame


_CONTEXT_MANAGER_ENTRIES = frozenset({
    contextlib._GeneratorContextManager.__enter__.__code__,
    contextlib._AsyncGeneratorContextManager.__aenter__.__code__,
})


def _hook_call_code() -> object:
    """The code of pluggy's `_multicall`, once pluggy is imported (never imported here)."""
    callers = sys.modules.get("pluggy._callers")
    multicall = getattr(callers, "_multicall", None)
    return getattr(multicall, "__code__", None)


def entered_in_generator(scope: TimeoutScope) -> bool:
    """True if `scope` was entered in a generator or coroutine frame (see `suspended`)."""
    entry = scope._entry_frame
    return entry is not None and bool(entry.f_code.co_flags & SUSPENDABLE)


def suspended(scope: TimeoutScope, frame: FrameType | None = None) -> bool:
    """True if `scope`'s body is not running: it was entered in a generator or coroutine
    frame that is not on the stack from `frame` out (the caller's by default).

    Its timeout must wait: raised now it would land in the code that resumed the thread,
    which no scope of it owns (a generator's consumer, another coroutine).
    """
    entry = scope._entry_frame
    if entry is None or not entry.f_code.co_flags & SUSPENDABLE:
        return False
    return not on_stack(entry, sys._getframe(1) if frame is None else frame)


def on_stack(wanted: FrameType | None, frame: FrameType | None) -> bool:
    """True if `wanted` is `frame` or one of the frames it was called from."""
    while frame is not None:
        if frame is wanted:
            return True
        frame = frame.f_back
    return False


def being_closed(scope: TimeoutScope, handled: object) -> bool:
    """True if `scope` was entered in a generator or coroutine and the thread is handling
    a GeneratorExit (`handled`: its exception being handled, or that `exc_info` tuple):
    the generator is being closed, and its clean-up code is not interrupted."""
    if isinstance(handled, tuple):
        handled = handled[1]
    return isinstance(handled, GeneratorExit) and entered_in_generator(scope)


def enclosing(scope: TimeoutScope | None) -> Iterator[TimeoutScope]:
    """`scope` and the scopes around it, innermost first, spent ones included."""
    while scope is not None:
        yield scope
        scope = scope._parent


def live(scope: TimeoutScope | None) -> TimeoutScope | None:
    """`scope`, or its nearest enclosing scope that is not spent."""
    while scope is not None and scope._state is _EXITED:
        scope = scope._parent
    return scope


def current_scope() -> TimeoutScope | None:
    """The innermost active scope of this thread, greenlet or task whose body is running
    (a generator suspended inside a scope leaves that scope current in its consumer's
    context: it is skipped)."""
    scope = innermost.get()
    if scope is not None and scope._state is _EXITED:
        scope = live(scope)
    while scope is not None and suspended(scope, sys._getframe(1)):
        scope = live(scope._parent)
    return scope


def earliest(
    scope: TimeoutScope | None, qualifies: Callable[[TimeoutScope], bool]
) -> TimeoutScope | None:
    """Among `scope` and the active scopes around it that have a deadline and that
    `qualifies` accepts, the one whose deadline comes first (the innermost of equal ones).
    Spent scopes left in the chain never count: their timeouts have no owner here; nor
    do scopes whose body is suspended (see `suspended`), judged from the caller."""
    best: TimeoutScope | None = None
    best_deadline = 0.0
    caller = sys._getframe(1)
    while scope is not None:
        deadline = scope.deadline
        if (
            deadline is not None
            and (best is None or deadline < best_deadline)
            and scope._state is _ACTIVE
            and qualifies(scope)
            and not suspended(scope, caller)
        ):
            best, best_deadline = scope, deadline
        scope = scope._parent
    return best
