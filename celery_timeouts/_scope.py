"""The timeout scope: the unit of cancellation.

A scope carries its deadline (on `time.monotonic`), its backend and its state. It is
single-use. Inside the body its timeout unwinds as a private `ScopeTimeout`; only the
scope that owns it converts it to the public exception, on its way out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextvars import Token
from sys import _getframe
from time import monotonic as _monotonic
from types import TracebackType
from typing import Any, TypeVar

from ._current import SUSPENDABLE as _SUSPENDABLE
from ._current import DeliveryState, ScopeState, enclosing
from ._current import innermost as _innermost
from ._current import live as _live
from ._current import owning_frame as _owning_frame
from ._decorate import decorate
from ._on_timeout import OnTimeout, drop, not_active, register
from ._on_timeout import run_deadline_callbacks as _run_deadline_callbacks
from ._unwind import ScopeTimeout, exit_entry, protected
from ._validation import (
    validate_backend,
    validate_catchable,
    validate_deadline,
    validate_exception,
    validate_seconds,
)
from .backends import resolve, resolve_if_possible
from .backends.base import Backend
from .exceptions import BackendUnavailable, TaskTimeout, _describe

_F = TypeVar("_F", bound=Callable[..., Any])


_INIT, _ACTIVE, _EXITED = ScopeState.INIT, ScopeState.ACTIVE, ScopeState.EXITED
_PENDING, _OVERDUE, _FIRED = DeliveryState.PENDING, DeliveryState.OVERDUE, DeliveryState.FIRED


class TimeoutScope:
    """A deadline for one block of code. Create it with `portable_timeout(...)`."""

    __slots__ = (
        "__weakref__",
        "_backend",
        "_backend_state",
        "_cancel_called",
        "_catchable",
        "_children",
        "_deadline",
        "_deadline_calls",
        "_deadline_moved",
        "_delivery",
        "_entry_frame",
        "_exception",
        "_in_body",
        "_parent",
        "_requested",
        "_state",
        "_token",
        "backend",
        "deadline",
        "seconds",
    )

    # Set on entry.
    _parent: TimeoutScope | None
    _token: Token[TimeoutScope | None]
    _deadline: float  # as `deadline`, for backends (math.inf: no limit); set on entry
    _entry_frame: Any  # the frame holding the `with`, while active
    # What the backend armed (its timer, the thread or task it interrupts, ...): its
    # own record, kept here for it and never read by the scope (see Backend.arm).
    _backend_state: Any
    # None, or the `on_timeout` callbacks: `_on_timeout` alone sets it, through
    # `_swap_deadline_calls` (a marker list once they have run or been dropped).
    _deadline_calls: list[OnTimeout] | None
    _children: Any  # child processes the body started (celery_timeouts.blocking), or None
    # move_on_after's scopes end the body at the deadline and exit quietly.
    _quiet = False

    def __init__(
        self,
        seconds: float | None,
        *,
        backend: str = "auto",
        exception: type[BaseException] = TaskTimeout,
        catchable: bool = False,
    ) -> None:
        self.seconds: float | None = validate_seconds(seconds)
        self._requested = backend if backend == "auto" else validate_backend(backend)
        self._exception = exception if exception is TaskTimeout else validate_exception(exception)
        self._catchable = (
            catchable if catchable is False or catchable is True else validate_catchable(catchable)
        )
        # The state of a scope not entered yet (as in _trusted). A backend keeps what it
        # arms in its own record (_backend_state), set on entry.
        self.deadline: float | None = None
        self.backend: str | None = None
        self._backend: Backend | None = None
        self._state = _INIT
        # Backends change it only through _mark_fired, _fire, _mark_overdue and
        # _not_overdue_any_more.
        self._delivery = _PENDING
        self._cancel_called = False
        self._deadline_calls = None
        self._children = None

    @classmethod
    def _trusted(
        cls, seconds: float | None, backend: str, exception: type[BaseException], catchable: bool
    ) -> TimeoutScope:
        """A fresh scope from settings validated once, at decoration time (what it saves
        on every decorated call: benchmarks/bench_hot_path.py)."""
        scope = _new_scope(cls)
        scope.seconds = seconds
        scope._requested = backend
        scope._exception = exception
        scope._catchable = catchable
        # As __init__: this runs on every decorated call.
        scope.deadline = scope.backend = scope._backend = None
        scope._state = _INIT
        scope._delivery = _PENDING
        scope._cancel_called = False
        scope._deadline_calls = None
        scope._children = None
        return scope

    # -- what callers read ---------------------------------------------------------

    @property
    def state(self) -> ScopeState:
        return self._state

    @property
    def fired(self) -> bool:
        """True once this scope delivered its timeout to its body."""
        return self._delivery is _FIRED

    @property
    def cancel_called(self) -> bool:
        """True once `cancel()` was called (whether or not the body was interrupted)."""
        return self._cancel_called

    @property
    def expired(self) -> bool:
        """True once the deadline has passed (whether or not it fired yet)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def remaining(self) -> float | None:
        """Seconds left before this scope's deadline (never negative); None if no limit."""
        if self.deadline is None:
            return None  # not entered yet, or no limit (given, or set by reschedule(None))
        return max(self.deadline - time.monotonic(), 0.0)

    def reschedule(self, deadline: float | None) -> None:
        """Move the deadline to `deadline`, a `time.monotonic()` time, earlier or later;
        None removes it. As `asyncio.Timeout.reschedule`, from any thread or greenlet.

        A deadline already past interrupts the body now. Raises RuntimeError if the scope
        is not active or its timeout was already delivered, TypeError/ValueError for a
        deadline that is not a number (or is NaN).
        """
        when = validate_deadline(deadline)
        if self._state is not _ACTIVE:
            raise RuntimeError(
                f"reschedule() needs an active scope, and {self!r} is not: call it inside "
                f"its 'with' block (or while the decorated call runs)"
            )
        if self._delivery is _FIRED:
            raise RuntimeError(
                f"{self!r} has already delivered its timeout: it can no longer be "
                f"rescheduled"
            )
        self._move_deadline(when)

    def cancel(self) -> None:
        """Interrupt the body now, as its deadline would, from any thread or greenlet.

        The body gets the scope's timeout, whose message says "cancelled"; the scope then
        raises its exception (`move_on_after` exits quietly). Called before the scope is
        entered, the body is interrupted at once; after it was left, it does nothing.
        Idempotent.
        """
        if self._cancel_called:
            return
        self._cancel_called = True
        if self._state is _ACTIVE and self._delivery is not _FIRED:
            self._move_deadline(_monotonic())

    @protected
    def _move_deadline(self, when: float) -> None:
        backend = self._backend
        if backend is None:
            raise RuntimeError(
                f"{self!r} has no backend that can interrupt its body here, so its "
                f"deadline cannot be moved; give it a limit, or a backend that runs here"
            )
        refusal = backend.reschedule_refusal(self)
        if refusal is not None:
            raise RuntimeError(refusal)
        self.deadline = None if when == math.inf else when
        self._deadline = when
        self._deadline_moved = True
        backend.reschedule(self)

    def on_timeout(self, callback: Callable[..., object], *args: Any) -> OnTimeout:
        """Call `callback(*args)` once when this scope's deadline passes, just before its
        timeout is delivered; returns a handle whose `cancel()` takes it back.

        It runs where the backend acts at the deadline: the watchdog thread (thread),
        the hub (gevent, eventlet), the SIGALRM handler (signal), the event loop
        (asyncio). Use it to unblock a call no timeout reaches: `conn.cancel()`,
        `sock.shutdown(socket.SHUT_RDWR)`, `proc.kill()`. Keep it short and non-blocking.
        Its exception is logged, never raised. It is dropped when the scope exits; if
        the deadline has already passed, it runs at once, here.

        Raises RuntimeError if the scope is not active or has no limit, TypeError if
        `callback` is not callable.
        """
        if self._state is not _ACTIVE:
            raise RuntimeError(not_active(self))
        return register(self, callback, args)

    def __repr__(self) -> str:
        limit = "no limit" if self.seconds is None else f"{self.seconds:g} s"
        return (
            f"<TimeoutScope {limit} backend={self.backend or self._requested} "
            f"state={self._state.value} fired={self._delivery is _FIRED}>"
        )

    # -- the sync context manager ------------------------------------------------------

    @exit_entry
    @protected
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._leave()
        if exc is not None:
            return self._settle(exc)
        if self._delivery is not _PENDING and not self._catchable:
            # The body swallowed the timeout, or finished while the watchdog was still
            # waiting for a safe place to deliver it: the deadline holds either way.
            self._delivery = _FIRED
            self._raise_timeout(None)
        return False

    # -- the async context manager ---------------------------------------------------------

    @protected
    async def __aenter__(self) -> TimeoutScope:
        self._enter(True)
        return self

    @protected
    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        self._leave()
        backend = self._backend
        if backend is None or self._delivery is _PENDING:
            return self._settle(exc)  # nothing delivered: no cancellation of ours
        ours = backend.own_cancellation(self, exc)
        if ours is None:
            return self._settle(exc)
        if not ours:
            return False  # someone else cancelled the task too: theirs wins
        self._delivery = _FIRED
        return self._raise_timeout(exc)

    # -- the decorator ---------------------------------------------------------------------

    def __call__(self, wrapped: _F) -> _F:
        """Decorate a function, method or coroutine function: each call gets a fresh scope."""
        if self._quiet:
            raise TypeError(
                "move_on_after() is a 'with' block only: a decorated call that moved on "
                "would have no value to return; use portable_timeout(...) as the decorator"
            )
        return decorate(
            wrapped, self.seconds, self._requested, self._exception, self._catchable,
            TimeoutScope._trusted,
        )

    # -- internals --------------------------------------------------------------------------

    @protected
    def _enter(self, coroutine: bool = False) -> TimeoutScope:
        """Resolve the backend, become the innermost scope, then arm (the timer goes last).

        It is `__enter__` itself too: one call less on every `with` and decorated call
        (benchmarks/bench_hot_path.py).
        """
        if self._state is not _INIT:
            raise RuntimeError(
                "this portable_timeout scope was already used; each scope may be used for "
                "a single 'with' block: call portable_timeout(...) again for a new one"
            )
        parent = _innermost.get()
        if parent is not None and parent._state is _EXITED:
            parent = _live(parent)  # spent scopes left in the chain (see _leave)
        self._parent = parent
        seconds = self.seconds
        if seconds is not None:
            backend: Backend | None = resolve(self._requested, coroutine)
            self.deadline = self._deadline = _monotonic() + seconds
        else:
            # No limit, but armed all the same (with no timer): reschedule() and
            # cancel() can then give it one from anywhere.
            backend = resolve_if_possible(self._requested, coroutine)
            self._deadline = math.inf
        if backend is not None:
            self._backend = backend
            self.backend = backend.name
            # Until arm() returns its record, a move of the deadline by another thread
            # finds none to act on: it is noted here, and passed on once armed (below).
            self._backend_state = None
            self._deadline_moved = False
        self._state = _ACTIVE
        # Checked once active: a cancel() from now on moves the deadline itself.
        if self._cancel_called:  # cancelled before it was entered: interrupted at once
            self.deadline = self._deadline = _monotonic()
        self._token = _innermost.set(self)
        # The frame holding the `with` (_enter is __enter__; __aenter__ calls it): backends
        # deliver only while it runs (see _current.suspended), and the watchdog judges
        # landings up to it. Dropped on leaving, so it and the scope don't keep each other.
        frame = _getframe(2 if coroutine else 1)
        if frame.f_code.co_flags & _SUSPENDABLE:
            frame = _owning_frame(frame)  # a @contextmanager's: the block using it
        self._entry_frame = frame
        if backend is not None:
            try:
                self._backend_state = backend.arm(self)
            except BaseException as error:
                self._backend = None
                if seconds is None and isinstance(error, BackendUnavailable):
                    self.backend = None  # nothing to time: it stays a scope without one
                    return self
                self._leave()
                raise
            if self._deadline_moved:  # by another thread, while arming
                try:
                    backend.reschedule(self)
                except BaseException:
                    self._leave()  # armed: disarmed there
                    raise
        return self

    __enter__ = _enter

    @protected
    def _leave(self) -> None:
        """Disarm and stop being the innermost scope; the scope is then spent.

        A spent scope may stay in a chain of scopes (left out of order, or in another
        context): `current_scope()` and new scopes skip it. Raises RuntimeError, once
        everything is cleaned up, if this is not the context that entered the scope.
        """
        self._state = _EXITED
        backend = self._backend
        if backend is not None:
            backend.disarm(self)
        self._entry_frame = None
        if self._deadline_calls:  # registrations that have not run: never will now
            drop(self)
        children = self._children
        if children is not None:
            children.release(self)  # celery_timeouts.blocking: kill them or pass them on
        current = _innermost.get()
        if current is self:
            try:
                _innermost.reset(self._token)
                return
            except ValueError:  # a copy of the entering context
                _innermost.set(_live(self._parent))
        elif any(outer is self for outer in enclosing(current)):
            return  # left out of order here, say by a generator: skipped from now on
        raise RuntimeError(
            "a portable_timeout scope was left in another thread or context than the one "
            "that entered it (a generator resumed elsewhere, a scope object handed to "
            "another thread or task); it is cleaned up, but its timeout is no longer "
            "enforced: enter and leave each scope in the same thread, greenlet or task"
        )

    @protected
    def _settle(self, exc: BaseException | None) -> bool:
        """After the body: raise this scope's timeout if it is ours to raise. True if
        the exit swallows it instead (move_on_after)."""
        if isinstance(exc, ScopeTimeout):
            if exc.scope is self:
                self._delivery = _FIRED
                return self._raise_timeout(exc)
            return False  # an enclosing scope's timeout: let it through
        if exc is None and self._delivery is _FIRED and not self._catchable:
            return self._raise_timeout(None)  # the body swallowed it: the deadline holds
        return False

    # -- the two slots other modules fill (the scope hands them back at its exit) --------

    def _swap_deadline_calls(self, calls: list[OnTimeout] | None) -> list[OnTimeout] | None:
        """Set what `on_timeout` registered, and return what was there: `_on_timeout`
        moves its registrations through their states (a list, run, dropped), locked."""
        before, self._deadline_calls = self._deadline_calls, calls
        return before

    def _children_made_by(self, make: Callable[[], Any]) -> Any:
        """The child processes the body started (`blocking._subprocess`), from `make()`
        at the first one."""
        if self._children is None:
            self._children = make()
        return self._children

    # -- how backends change the delivery state -----------------------------------------

    def _mark_fired(self) -> None:
        """The timeout is delivered (or the body raises it itself): nothing more of it."""
        self._delivery = _FIRED

    def _fire(self) -> BaseException:
        """Mark the timeout delivered and return what the body is interrupted with."""
        self._delivery = _FIRED
        return self._unwinding()

    def _mark_overdue(self) -> None:
        """Due, and not delivered yet: if the body ends first, the exit raises it."""
        if self._delivery is _PENDING:
            self._delivery = _OVERDUE

    def _not_overdue_any_more(self) -> None:
        """The deadline moved past now before the pending delivery landed."""
        if self._delivery is _OVERDUE:
            self._delivery = _PENDING

    @protected
    def _unwinding(self) -> BaseException:
        """What the body is interrupted with: the private `ScopeTimeout`, or for a
        catchable scope the public exception itself."""
        if self._deadline_calls:
            # Delivered by the body itself (check(), a patched blocking call) before the
            # backend got to run the callbacks: they still go first.
            _run_deadline_callbacks(self)
        if self._catchable:
            return self._public_exception(None)
        return ScopeTimeout(self)

    @protected
    def _raise_timeout(self, unwinding: BaseException | None) -> bool:
        """Raise this scope's public exception; a quiet scope returns True instead."""
        if self._quiet:
            return True
        raise self._public_exception(unwinding) from None

    @protected
    def _public_exception(self, unwinding: BaseException | None) -> BaseException:
        exception_class = self._exception
        public: BaseException
        if issubclass(exception_class, TaskTimeout):
            public = exception_class(self.seconds, self.backend)
            if self._cancel_called:  # a subclass may take (seconds, backend) only
                public.cancelled = True
                public.args = (_describe(self.seconds, self.backend, True),)
        else:
            public = exception_class(
                _describe(self.seconds, self.backend, self._cancel_called)
            )
        if unwinding is not None:
            # Keep the traceback down to where the body was interrupted.
            public = public.with_traceback(unwinding.__traceback__)
        public.__cause__ = None
        public.__suppress_context__ = True
        return public

    @protected
    def _exit_before_it_ran(
        self, owner: TimeoutScope, exc: BaseException | None
    ) -> BaseException:
        """`owner`'s timeout reached this scope's `__exit__` before its first instruction.

        Do the exit's work now and return what it would have raised, as if the timeout
        had landed at the end of the body (see `_unwind._Landing`).
        """
        self._leave()
        if self is not owner:
            return owner._unwinding()  # on its way to the scope that owns it
        self._delivery = _FIRED
        if exc is None or (isinstance(exc, ScopeTimeout) and exc.scope is self):
            return self._public_exception(None)
        return exc  # another exception was already leaving the body: it goes on


_new_scope = object.__new__
