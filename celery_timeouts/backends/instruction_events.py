"""Raise a timeout at the target thread's next safe instruction, through sys.monitoring.

Python 3.13 compiles `while <condition>:` so that the jump closing the loop lies outside
the try/with around it (cpython#130279), and delivers an asynchronous exception at the
thread's next check rather than where it was interrupted (cpython#139622): injected
into a thread looping inside a `try`, it can land on that jump and skip the `except`,
`finally` or `__exit__`. So when such a loop is on the target's stack, the watchdog does
not inject: it turns on INSTRUCTION events for the code objects on that stack, and the
callback, which runs in the target thread before an instruction, raises there, except
at those back-jumps and at a `with` block's call of `__exit__`. Only those code objects
are instrumented, and only until it lands or the scope exits.

The tool id is held only while a delivery is pending: taken for the first, given back
when the last one lands or is withdrawn, so the program's own `use_tool_id(3, ...)`
works at any other time. If the program holds both free ids, timeouts that meet such
a loop are raised as their scope exits instead.
"""

from __future__ import annotations

import dis
import functools
import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from .._context import native_thread_id
from .._interpreter import MECHANISMS
from .._unwind import handler_holes, must_not_land

# Python 3.12+; used only where this delivery was verified (see _interpreter).
_MONITORING: Any = getattr(sys, "monitoring", None) if MECHANISMS.instruction_delivery else None
# A `with` block's normal exit calls __exit__(None, None, None): CALL 2 (self comes from
# the stack) up to 3.13, CALL 3 from 3.14.
_EXIT_CALL_ARG = 3 if sys.version_info >= (3, 14) else 2
_TOOL_IDS = (3, 4)  # the ids sys.monitoring leaves free (0-2 and 5 are named)
_NAME = "celery-timeouts"


class InstructionDelivery:
    """Pending deliveries, one per thread, and the code objects they watch.

    Every method but `_on_instruction` is called with the watchdog's lock held; that
    callback runs in the target thread and takes the lock itself.
    """

    def __init__(self, lock: Any) -> None:
        self.lock = lock  # the watchdog's
        self._tool: int | None = None
        self._by_thread: dict[int, _Watch] = {}
        self._watchers: dict[CodeType, int] = {}  # code -> number of watches on it
        self._broken = False

    def available(self) -> bool:
        """True if a sys.monitoring tool id is ours, claiming one if none is: the caller
        then `watch`es (the id is given back when nothing is pending any more)."""
        if self._tool is None:
            monitoring = _MONITORING
            if monitoring is None or self._broken:
                return False
            for tool in _TOOL_IDS:
                if monitoring.get_tool(tool) is None:
                    monitoring.use_tool_id(tool, _NAME)
                    monitoring.register_callback(
                        tool, monitoring.events.INSTRUCTION, self._on_instruction
                    )
                    self._tool = tool
                    break
            else:
                return False
        return True

    def watch(
        self,
        thread_id: int,
        item: Any,
        frame: FrameType | None,
        until: FrameType | None,
        unwinding: Callable[[], BaseException],
        accept: Callable[[], bool] | None = None,
    ) -> None:
        """Raise `unwinding()` at the next safe instruction the thread runs in a frame from
        `frame` out to `until` (called again on each retry: frames entered since are
        added). `accept`, if given, must also say yes where it would land (the green
        guard: "this is the greenlet whose scope it is")."""
        watch = self._by_thread.get(thread_id)
        if watch is None:
            watch = self._by_thread[thread_id] = _Watch(item, unwinding, accept)
        while frame is not None:
            code = frame.f_code
            if code not in watch.codes:
                watch.codes.add(code)
                self._add_watcher(code)
            if frame is until:
                break
            frame = frame.f_back

    def pending_in(self, thread_id: int) -> bool:
        """True if a delivery waits in that thread."""
        return thread_id in self._by_thread

    def disable(self) -> None:
        """Stop using sys.monitoring (after it failed): timeouts are raised at exit."""
        self.reset()
        self._tool = None
        self._broken = True

    def busy_with_another(self, thread_id: int, item: Any) -> bool:
        """True if the thread has a pending delivery of something else (it goes first)."""
        watch = self._by_thread.get(thread_id)
        return watch is not None and watch.item is not item

    def withdraw(self, thread_id: int, item: Any) -> None:
        """Forget the thread's pending delivery of `item`, if it has one."""
        watch = self._by_thread.get(thread_id)
        if watch is not None and watch.item is item:
            self._drop(thread_id)

    def reset(self) -> None:
        """In a forked child: nothing is pending, nothing is watched."""
        for thread_id in list(self._by_thread):
            self._drop(thread_id)

    def _drop(self, thread_id: int) -> None:
        watch = self._by_thread.pop(thread_id)
        for code in watch.codes:
            self._remove_watcher(code)
        if not self._by_thread:
            self._release()

    def _release(self) -> None:
        """Give the tool id back: nothing is pending, and the program may want it."""
        tool, self._tool = self._tool, None
        if tool is None:
            return
        monitoring = _MONITORING
        try:
            monitoring.register_callback(tool, monitoring.events.INSTRUCTION, None)
            if monitoring.get_tool(tool) == _NAME:
                monitoring.free_tool_id(tool)
        except Exception:  # never take the watchdog down; an id is claimed afresh next time
            pass

    def _add_watcher(self, code: CodeType) -> None:
        count = self._watchers.get(code, 0)
        self._watchers[code] = count + 1
        if count == 0:
            _MONITORING.set_local_events(self._tool, code, _MONITORING.events.INSTRUCTION)

    def _remove_watcher(self, code: CodeType) -> None:
        count = self._watchers.pop(code) - 1
        if count:
            self._watchers[code] = count
        else:
            _MONITORING.set_local_events(self._tool, code, 0)

    def _on_instruction(self, code: CodeType, offset: int) -> None:
        """INSTRUCTION callback: in the target thread, before an instruction of a watched
        code object."""
        thread_id = native_thread_id()
        if thread_id not in self._by_thread:
            return  # another thread running the same code
        if offset in _unsafe_offsets(code) or must_not_land(sys._getframe(1)):
            return  # it would skip handlers here, or this is library or lock-taking code
        with self.lock:
            watch = self._by_thread.get(thread_id)
            if watch is None or (watch.accept is not None and not watch.accept()):
                return
            self._drop(thread_id)
            exception = watch.unwinding()
        raise exception


@functools.lru_cache(maxsize=512)
def _unsafe_offsets(code: CodeType) -> frozenset[int]:
    """Where raising would skip handlers of the frame: the loop back-jumps outside them,
    and a `with` block's normal exit, `__exit__(None, None, None)` about to be called
    outside the block's handler (its three LOAD_CONST None and the CALL)."""
    instructions = list(dis.get_instructions(code))
    unsafe = set(handler_holes(code))
    for index in range(len(instructions) - 3):
        window = instructions[index:index + 4]
        if all(i.opname == "LOAD_CONST" and i.argval is None for i in window[:3]) and (
            window[3].opname == "CALL" and window[3].arg == _EXIT_CALL_ARG
        ):
            unsafe.update(i.offset for i in window)
    return frozenset(unsafe)


class _Watch:
    __slots__ = ("accept", "codes", "item", "unwinding")

    def __init__(
        self, item: Any, unwinding: Callable[[], BaseException],
        accept: Callable[[], bool] | None,
    ) -> None:
        self.item = item
        self.unwinding = unwinding
        self.accept = accept
        self.codes: set[CodeType] = set()
