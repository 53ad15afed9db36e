"""The private exception a timeout unwinds with, and the code it must never land in.

A timeout travels through the body as `ScopeTimeout`, a `BaseException` that knows its
scope, so `except Exception:` in user code cannot swallow it. Only the owning scope turns
it into the public exception. Asynchronous backends (SIGALRM, the watchdog thread) must
not deliver it while the target is running the library's own enter/exit code: it would
escape the `with` statement. Such functions are registered here with `@protected`.
"""

from __future__ import annotations

import dis
import functools
import os
import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import TYPE_CHECKING, TypeVar, cast

if TYPE_CHECKING:
    from ._scope import TimeoutScope

_F = TypeVar("_F", bound=Callable[..., object])

_PROTECTED_CODE: set[CodeType] = set()


class ScopeTimeout(BaseException):
    """Unwinds a timed-out body up to the scope that owns it (never seen outside it)."""

    scope: TimeoutScope

    def __init__(self, scope: TimeoutScope | None = None) -> None:
        # Injected subclasses (see `injectable`) are raised without arguments and carry
        # their scope as a class attribute.
        if scope is not None:
            self.scope = scope
        super().__init__()

    def __str__(self) -> str:
        scope = self.scope
        limit = "no limit" if scope.seconds is None else f"{scope.seconds:g} s"
        return f"timeout of a portable_timeout scope ({limit}, backend={scope.backend})"


class _Landing(type):
    """Metaclass of injected timeouts: decides what they become where they land.

    CPython creates the instance of an asynchronous exception in the target thread, at
    the point where it is delivered, so this runs exactly there. Python 3.13 delivers it
    at the thread's next check rather than where the thread was interrupted
    (cpython#139622): that can be the first instruction of a scope's `__exit__`, before
    it could withdraw the injection. There, the exit's own work is done here and what
    that exit would have raised is raised instead.
    """

    scope: TimeoutScope
    landed: Callable[[], object]

    def __call__(cls, *args: object) -> BaseException:
        exit_call = _land(cls.landed)
        if exit_call is not None:
            exiting, exc = exit_call
            return exiting._exit_before_it_ran(cls.scope, exc)
        unwinding = cls.scope._unwinding()
        if isinstance(unwinding, ScopeTimeout):
            return unwinding
        # A catchable scope's own exception: raised, not returned, or 3.10 and 3.11
        # would keep this class as the exception's type when matching `except` clauses.
        raise unwinding


def _nothing() -> None:
    return None


def injectable(
    scope: TimeoutScope, landed: Callable[[], object] = _nothing
) -> type[ScopeTimeout]:
    """A class to hand to PyThreadState_SetAsyncExc, which raises classes, not instances.

    `landed` runs where it lands, first: the injector learns that nothing is pending.
    """
    namespace = {"scope": scope, "landed": staticmethod(landed), "__module__": __name__}
    return cast(type[ScopeTimeout], _Landing("ScopeTimeout", (ScopeTimeout,), namespace))


class _Relaying(type):
    """Metaclass of an injected foreign exception (see `raising_on_landing`)."""

    exception: BaseException
    landed: Callable[[], object]

    def __call__(cls, *args: object) -> BaseException:
        exit_call = _land(cls.landed)
        if exit_call is not None:
            # It reached a scope's __exit__ before that exit ran (3.13): the exit will
            # not run, so leave the scope here; the exception goes on past the `with`.
            exit_call[0]._leave()
        # Raised, not returned: 3.10 and 3.11 would otherwise keep the injected class as
        # the exception's type when matching `except` clauses.
        raise cls.exception


def raising_on_landing(
    exception: BaseException, landed: Callable[[], object] = _nothing
) -> type[BaseException]:
    """A class to hand to PyThreadState_SetAsyncExc that raises `exception` itself,
    the same object, where it lands (after running `landed`)."""
    namespace = {"exception": exception, "landed": staticmethod(landed), "__module__": __name__}
    return cast(type[BaseException], _Relaying("RelayedException", (BaseException,), namespace))


# __exit__ code -> offset of its first check, and the names of its `self` and `exc`
_EXIT_ENTRIES: dict[CodeType, tuple[int, str, str]] = {}


def exit_entry(func: _F) -> _F:
    """Register a scope's `__exit__(self, exc_type, exc, traceback)`: a timeout landing at
    its entry is settled there. Its parameters are found by position, not by name."""
    code = func.__code__
    resumes = (i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")
    first_check = next(resumes, 0)  # Python 3.10 has no RESUME: its first instruction
    _EXIT_ENTRIES[code] = (first_check, code.co_varnames[0], code.co_varnames[2])
    return func


def _land(landed: Callable[[], object]) -> tuple[TimeoutScope, BaseException | None] | None:
    """Called by an injected class's metaclass where it lands (two frames up): tell the
    injector, then see whether that is a scope's `__exit__` that has not run yet."""
    landed()
    return _exit_not_run(sys._getframe(2))


def _exit_not_run(frame: FrameType) -> tuple[TimeoutScope, BaseException | None] | None:
    """If `frame` is a registered `__exit__` that has not run yet: its scope and `exc`."""
    entry = _EXIT_ENTRIES.get(frame.f_code)
    if entry is None or frame.f_lasti > entry[0]:
        return None
    _, self_name, exc_name = entry
    local = frame.f_locals
    return local[self_name], local[exc_name]


def protected(func: _F) -> _F:
    """Mark `func` as library code that a timeout must not interrupt."""
    _PROTECTED_CODE.add(func.__code__)
    return func


@functools.lru_cache(maxsize=512)
def _handler_holes(code: CodeType) -> frozenset[int]:
    """Offsets of loop back-jumps that the exception table leaves out of their handlers.

    CPython 3.13 compiles `while <condition>:` so that the jump closing the loop is not
    covered by the try/with block around the loop (cpython#130279): an asynchronous
    exception raised there skips every handler in the frame, including `__exit__`.
    """
    bytecode = dis.Bytecode(code)
    table = getattr(bytecode, "exception_entries", None)  # None on 3.10: no table
    if not table:
        return frozenset()
    entries = [(entry.start, entry.end) for entry in table]

    def covered(offset: int) -> bool:
        return any(start <= offset < end for start, end in entries)

    return frozenset(
        instruction.offset
        for instruction in bytecode
        if instruction.opname.startswith("JUMP_BACKWARD")
        and not covered(instruction.offset)
        and isinstance(instruction.argval, int)
        and covered(instruction.argval)
    )


def handler_holes(code: CodeType) -> frozenset[int]:
    """The offsets of `code`'s loop back-jumps outside their handlers (see _handler_holes)."""
    return _handler_holes(code)


def at_handler_hole(frame: FrameType) -> bool:
    """Would an exception raised at this frame's current instruction skip its handlers?"""
    return frame.f_lasti in _handler_holes(frame.f_code)


def stack_has_handler_holes(frame: FrameType | None, until: FrameType | None) -> bool:
    """True if a frame from `frame` out to `until` has a loop back-jump that skips its
    handlers (the whole stack if `until` is not on it)."""
    while frame is not None:
        if _handler_holes(frame.f_code):
            return True
        if frame is until:
            return False
        frame = frame.f_back
    return False


def _stdlib_files_holding_locks() -> frozenset[str]:
    """The stdlib files whose code holds a lock, or has half-updated shared state, between
    two instructions where an asynchronous exception can land.

    `Condition.__enter__` returns after acquiring the lock: a timeout raised at that
    return leaves the lock held (the `with` was never entered), and every thread that
    uses the queue or condition deadlocks. `logging.Handler.handle` acquires before its
    `try`; `Queue.get` has taken the item before it returns it; importlib's module locks
    and contextlib's `__enter__` are alike. Their functions are short, or wait in C
    where nothing lands anyway, so a timeout waits until the thread is out of them.
    """
    stdlib = os.path.dirname(threading.Condition.__enter__.__code__.co_filename)
    relative = (
        "threading.py", "queue.py", "contextlib.py", "logging/__init__.py",
        "logging/handlers.py", "concurrent/futures/_base.py", "concurrent/futures/thread.py",
    )
    files = {os.path.join(stdlib, *name.split("/")) for name in relative}
    files.update(("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>"))
    lock_manager = getattr(sys.modules.get("_frozen_importlib"), "_ModuleLockManager", None)
    if lock_manager is not None:  # however this build names its frozen code
        files.add(lock_manager.__enter__.__code__.co_filename)
    return frozenset(files)


_HOLDS_LOCKS = _stdlib_files_holding_locks()


def must_not_land(frame: FrameType) -> bool:
    """True if a timeout raised at `frame`, the thread's innermost frame, could escape a
    `with` or break what others rely on: library enter/exit code is on the stack, or the
    stdlib is between acquiring a lock and guarding it (see _stdlib_files_holding_locks)."""
    return in_stdlib_locking(frame) or in_protected_code(frame)


def in_stdlib_locking(frame: FrameType) -> bool:
    """True if `frame` is the stdlib's lock-handling code (see _stdlib_files_holding_locks)."""
    return frame.f_code.co_filename in _HOLDS_LOCKS


def _interruptible_waits() -> dict[CodeType, frozenset[int]]:
    """The stdlib's long waits inside its locking code, as code object -> offsets of the
    calls that wait: `Condition.wait`'s `waiter.acquire()` (under `Queue.get`,
    `Event.wait`, `Semaphore.acquire`, ...) and `Thread.join`'s wait for the thread
    (`_wait_for_tstate_lock`'s `lock.acquire()`; on 3.13 `_handle.join()`).

    A signal handler that runs while the main thread is blocked in one of these calls may
    raise: the exception ends the call without taking anything, and the `try` around it
    puts the condition's lock back. Anywhere else in that code a signal handler cannot
    tell "blocked in an acquire" from "the acquire just returned, holding the lock"
    (both are the same instruction), so there it must wait.
    """
    waits = (
        (threading.Condition.wait, "acquire"),
        (getattr(threading.Thread, "_wait_for_tstate_lock", None), "acquire"),  # 3.10-3.12
        (threading.Thread.join, "join"),  # 3.13: self._handle.join(timeout)
    )
    found: dict[CodeType, frozenset[int]] = {}
    for function, callee in waits:
        code = getattr(function, "__code__", None)
        if code is None:
            continue
        name = None
        offsets = set()
        for instruction in dis.get_instructions(code):
            if instruction.opname in ("LOAD_METHOD", "LOAD_ATTR"):
                name = instruction.argval
            elif instruction.opname.startswith("CALL") and name == callee:
                offsets.add(instruction.offset)
        found[code] = frozenset(offsets)
    return found


_INTERRUPTIBLE_WAITS = _interruptible_waits()


def in_interruptible_wait(frame: FrameType) -> bool:
    """True if `frame` is blocked in, or at, one of the stdlib's long waits (see
    _interruptible_waits), where a signal handler's exception ends the wait cleanly."""
    offsets = _INTERRUPTIBLE_WAITS.get(frame.f_code)
    return offsets is not None and frame.f_lasti in offsets


def in_protected_code(frame: FrameType | None) -> bool:
    """True if any frame on this stack is running the library's enter/exit code."""
    protected_code = _PROTECTED_CODE
    while frame is not None:
        if frame.f_code in protected_code:
            return True
        frame = frame.f_back
    return False
