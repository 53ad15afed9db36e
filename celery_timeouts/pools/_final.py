"""A hard limit is final: once it has fired, the job cannot end as a success.

The hard limit unwinds the task body with an exception that `except Exception:` cannot
catch, but a body may catch `BaseException` (or `return` from a `finally:`) and return
a value. Celery's tracer would store that value as SUCCESS, send link callbacks and
`task_success`; and a result backend never overwrites a SUCCESS, so the pool's own
report of the hard limit would be lost.

So when a job's hard limit fires, a profile function (`sys.setprofile`) is set on that
OS thread until the job's frame is left. It finds the frames that the unwinding
interrupted: one of them that *returns normally* has swallowed it, and the unwinding is
raised again at that return, before anything else of its caller runs. Python 3.10 and
3.11 see the return in the profile function and raise it right after, in the caller
(an asynchronous exception of this very thread, which lands at its next check); 3.12+
raise it from a `sys.monitoring` PY_RETURN callback on those frames' code (a profile
function that raises is removed, and 3.12+ would deliver that asynchronous exception
inside it). Functions that a handler calls to clean up are new frames, not watched:
they return as usual. Nothing is watched, and the job's own end (the scope's exit)
still reports the hard limit, if the thread already has a profiler (cProfile, yappi),
which is left alone.
"""

from __future__ import annotations

import dis
import os
import sys
import time
from types import CodeType, FrameType
from typing import Any, cast

from .._context import native_thread_id, os_lock
from .._current import DeliveryState, ScopeState
from .._scope import TimeoutScope
from .._unwind import ScopeTimeout, injectable, protected
from ..backends._landing import set_async_exc

_RETURNS = frozenset(
    dis.opmap[name] for name in ("RETURN_VALUE", "RETURN_CONST") if name in dis.opmap
)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class FinalScope(TimeoutScope):
    """The hard limit's scope: when it fires, swallowing its unwinding is watched for.

    `owner` is the frame that runs the `with` block (set before entering it).
    """

    __slots__ = ("owner",)

    owner: FrameType | None

    @classmethod
    def fresh(cls, seconds: float | None, exception: type[BaseException]) -> FinalScope:
        scope = cast(FinalScope, cls._trusted(seconds, "auto", exception, False))
        scope.owner = None  # no watching until the `with` block's frame is known
        return scope

    @protected
    def _unwinding(self) -> BaseException:
        # Called by every backend where the timeout is delivered, on the target's OS
        # thread (in the target itself, or in its hub for gevent and eventlet timers).
        _watch(self)
        return super()._unwinding()

    @protected
    def deliver_again(self) -> bool:
        """The unwinding was delivered and the body runs on: it swallowed it (a loop
        around `except BaseException:`), or a call in C holds it. Deliver it again, as
        its backend delivers a cancel, from any thread. False if there is nothing to do
        (the scope left, or the delivery is still on its way) or its backend cannot
        be reached from here."""
        if self._state is not ScopeState.ACTIVE or self._delivery is not DeliveryState.FIRED:
            return False
        self._delivery = DeliveryState.OVERDUE  # its exit raises, whatever
        try:
            self._move_deadline(time.monotonic())
        except RuntimeError:  # an eventlet hub without its wake-up pipe, say
            self._delivery = DeliveryState.FIRED
            return False
        return True


class _Watched:
    """One job's hard limit that has fired, and the frames its unwinding interrupted."""

    __slots__ = ("hooked", "interrupted", "owner", "scope")

    def __init__(self, scope: FinalScope, owner: FrameType) -> None:
        self.scope = scope
        self.owner = owner
        # Found at the first event of a frame below `owner` (under gevent the firing
        # runs in the hub, so the target's frames are only seen once it resumes).
        self.interrupted: set[FrameType] | None = None
        self.hooked = False  # 3.12+: its returns are watched by _RETURNS_HOOK


class _SwallowWatch:
    """The profile function of one OS thread: all its jobs whose hard limit fired."""

    def __init__(self) -> None:
        self.jobs: list[_Watched] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        for job in tuple(self.jobs):
            if frame is job.owner:
                # The job is over. Once its limit fired it always ends by an exception
                # (the scope's exit raises), which 3.12+ report for every frame too.
                if event == "return":
                    self._forget(job)
                continue
            if job.interrupted is None:
                job.interrupted = _frames_below(
                    frame.f_back if event == "call" else frame, job.owner
                )
                if job.interrupted is None:
                    continue  # a frame of another greenlet, or of the hub
                if _RETURNS_HOOK is not None:
                    job.hooked = _RETURNS_HOOK.watch(job.interrupted, job.scope)
            if job.hooked:
                continue
            if event == "return" and frame in job.interrupted and _returns(frame):
                job.interrupted.discard(frame)
                set_async_exc(native_thread_id(), injectable(job.scope))


    def _forget(self, job: _Watched) -> None:
        self.jobs.remove(job)
        if job.hooked and _RETURNS_HOOK is not None and job.interrupted:
            _RETURNS_HOOK.unwatch(job.interrupted)
        if not self.jobs and sys.getprofile() is self:
            sys.setprofile(None)


class _ReturnsHook:
    """Python 3.12+: a `sys.monitoring` tool whose PY_RETURN callback raises the
    unwinding again from a watched frame that returns normally. A callback may raise
    and stays in place; setting local events instruments code that is running already.
    One tool id for the process, taken while some job is watched and freed after."""

    def __init__(self, monitoring: Any) -> None:
        self._monitoring = monitoring
        self._frames: dict[FrameType, FinalScope] = {}
        self._codes: set[CodeType] = set()
        self._tool: int | None = None
        self._lock = os_lock()

    def watch(self, frames: set[FrameType], scope: FinalScope) -> bool:
        """Watch `frames`; False if no tool id is free (the caller watches instead)."""
        monitoring = self._monitoring
        with self._lock:
            if self._tool is None:
                tool = next((i for i in _TOOL_IDS if monitoring.get_tool(i) is None), None)
                if tool is None:
                    return False
                monitoring.use_tool_id(tool, "celery-timeouts hard limit")
                monitoring.register_callback(tool, monitoring.events.PY_RETURN, self._returned)
                self._tool = tool
            for frame in frames:
                self._frames[frame] = scope
            for code in {frame.f_code for frame in frames} - self._codes:
                monitoring.set_local_events(self._tool, code, monitoring.events.PY_RETURN)
                self._codes.add(code)
        return True

    def unwatch(self, frames: set[FrameType]) -> None:
        monitoring = self._monitoring
        with self._lock:
            for frame in frames:
                self._frames.pop(frame, None)
            tool = self._tool
            if self._frames or tool is None:
                return
            for code in self._codes:
                monitoring.set_local_events(tool, code, 0)
            self._codes.clear()
            monitoring.register_callback(tool, monitoring.events.PY_RETURN, None)
            monitoring.free_tool_id(tool)
            self._tool = None

    def _returned(self, code: CodeType, offset: int, value: object) -> None:
        # PY_RETURN is a normal return (an exception leaving a frame is PY_UNWIND).
        scope = self._frames.pop(sys._getframe(1), None)
        if scope is not None:
            raise ScopeTimeout(scope)


# The ids sys.monitoring leaves free: 0-2 and 5 are the debugger's, coverage's, the
# profiler's and the optimizer's, which must find theirs free when they start.
_TOOL_IDS = (3, 4)
_monitoring = getattr(sys, "monitoring", None)
_RETURNS_HOOK = _ReturnsHook(_monitoring) if _monitoring is not None else None


@protected
def _watch(scope: FinalScope) -> None:
    owner = scope.owner
    if owner is None:
        return
    watch = sys.getprofile()
    if watch is None:
        watch = _SwallowWatch()
        sys.setprofile(watch)
    elif not isinstance(watch, _SwallowWatch):
        return  # someone's profiler: leave it (the scope's exit still reports the limit)
    if all(job.scope is not scope for job in watch.jobs):
        watch.jobs.append(_Watched(scope, owner))


def _frames_below(frame: FrameType | None, owner: FrameType) -> set[FrameType] | None:
    """The frames from `frame` out to `owner`, if `owner` is on that stack (else None):
    those of the task, without the library's own and without the frame `owner` called
    (Celery's tracer returning to it is the job's end, which the scope's exit handles)."""
    found: list[FrameType] = []
    while frame is not None and frame is not owner:
        if not frame.f_code.co_filename.startswith(_PACKAGE):
            found.append(frame)
        frame = frame.f_back
    if frame is None:
        return None
    if found and found[-1].f_back is owner:
        found.pop()
    return set(found)


def _returns(frame: FrameType) -> bool:
    """Is `frame` returning a value (not unwinding with an exception)?"""
    lasti = frame.f_lasti
    return lasti >= 0 and frame.f_code.co_code[lasti] in _RETURNS
