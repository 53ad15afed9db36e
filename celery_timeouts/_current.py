"""Which scope is current: the innermost scope of this thread, greenlet or task, and the
walk out through the scopes around it, written once.

Each scope keeps its parent, the scope that was innermost when it was entered; the chain
may hold spent scopes (left out of order, or in another context), which the walks here
skip or report as asked. Imports nothing else of the package, so every module can use it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._scope import TimeoutScope


class ScopeState(enum.Enum):
    INIT = "init"
    ACTIVE = "active"
    EXITED = "exited"


_ACTIVE, _EXITED = ScopeState.ACTIVE, ScopeState.EXITED

# The innermost scope entered and not yet left here (a ContextVar: per thread, greenlet
# and asyncio task).
innermost: ContextVar[TimeoutScope | None] = ContextVar(
    "celery_timeouts_innermost_scope", default=None
)


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
    """The innermost active scope of this thread, greenlet or task."""
    scope = innermost.get()
    if scope is not None and scope._state is _EXITED:
        return live(scope)
    return scope


def earliest(
    scope: TimeoutScope | None, qualifies: Callable[[TimeoutScope], bool]
) -> TimeoutScope | None:
    """Among `scope` and the active scopes around it that have a deadline and that
    `qualifies` accepts, the one whose deadline comes first (the innermost of equal ones).
    Spent scopes left in the chain never count: their timeouts have no owner here."""
    best: TimeoutScope | None = None
    best_deadline = 0.0
    while scope is not None:
        deadline = scope.deadline
        if (
            deadline is not None
            and (best is None or deadline < best_deadline)
            and scope._state is _ACTIVE
            and qualifies(scope)
        ):
            best, best_deadline = scope, deadline
        scope = scope._parent
    return best
