"""Where a timeout injected into another thread would land, judged from that thread's
frame: at once (the thread is at an instruction where CPython checks for it, in user
code), later (somewhere else), or only at its next safe instruction through
sys.monitoring (a loop whose closing jump lies outside its handlers, 3.12+); and the
injection itself, PyThreadState_SetAsyncExc.
"""

from __future__ import annotations

import ctypes
import dis
import functools
import sys
from collections.abc import Callable
from types import CodeType, FrameType

from .._interpreter import MECHANISMS
from .._unwind import at_handler_hole, handler_holes, must_not_land, stack_has_handler_holes

# Instructions after which (or at which) CPython checks for pending asynchronous
# exceptions before running any other instruction of the thread.
_SAFE_LANDING_OPS = frozenset(
    dis.opmap[name]
    for name in (
        "CALL", "CALL_KW", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX",
        "CALL_METHOD", "PRECALL", "JUMP_BACKWARD", "JUMP_ABSOLUTE", "RESUME",
    )
    if name in dis.opmap
)
# Before 3.12 a loop may close with a conditional jump back, which checks when taken: a
# thread paused there (a loop with no call in it pauses nowhere else) has just checked.
_CONDITIONAL_JUMPS = frozenset(
    name for name in (
        "POP_JUMP_IF_TRUE", "POP_JUMP_IF_FALSE",  # 3.10, backwards when closing a loop
        "POP_JUMP_BACKWARD_IF_TRUE", "POP_JUMP_BACKWARD_IF_FALSE",  # 3.11
        "POP_JUMP_BACKWARD_IF_NONE", "POP_JUMP_BACKWARD_IF_NOT_NONE",
    )
    if sys.version_info < (3, 12) and name in dis.opmap
)


@functools.lru_cache(maxsize=512)
def _loop_closing_jumps(code: CodeType) -> frozenset[int]:
    """Offsets of the conditional jumps back in `code` (Python 3.10 and 3.11)."""
    return frozenset(
        instruction.offset
        for instruction in dis.get_instructions(code)
        if instruction.opname in _CONDITIONAL_JUMPS
        and isinstance(instruction.argval, int)
        and instruction.argval <= instruction.offset
    )


# Python 3.13 delivers an asynchronous exception at the thread's next check, not where
# the thread was interrupted (cpython#139622).
_DELIVERED_AT_NEXT_CHECK = sys.version_info >= (3, 13)
_INSTRUCTION_DELIVERY = MECHANISMS.instruction_delivery  # 3.12, 3.13 (see _interpreter)


# Our own prototypes: setting argtypes on ctypes.pythonapi's shared function object would
# change it for every other library in the process. The clearing variant passes NULL.
# Where the interpreter has no such function, or injecting is unsafe (PyPy, free-threaded
# builds: see _interpreter), scopes refuse to arm and these are never reached with a
# target; they report "no thread found", as CPython's does for an unknown thread id.
def _no_async_exc(thread_id: int, exception: object) -> int:
    return 0


set_async_exc: Callable[[int, object], int] = _no_async_exc
clear_async_exc: Callable[[int, object], int] = _no_async_exc
if MECHANISMS.injection_refused is None:
    set_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
        ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
    )
    clear_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
        ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
    )


NOW, LATER, AT_NEXT_INSTRUCTION = "now", "later", "at the next safe instruction"


def landing(frame: FrameType, entry_frame: FrameType | None) -> str:
    """How a timeout can reach user code from where the thread is now: injected `NOW`,
    `LATER` (from somewhere else), or only `AT_NEXT_INSTRUCTION` that is safe, through
    sys.monitoring (instruction_events, 3.12+)."""
    if must_not_land(frame):
        return LATER
    if _DELIVERED_AT_NEXT_CHECK and stack_has_handler_holes(frame, until=entry_frame):
        # Injected, it would land at the thread's next check, somewhere between here and
        # the scope's exit, maybe on a loop back-jump outside its handlers (cpython#130279).
        return AT_NEXT_INSTRUCTION
    lasti = frame.f_lasti
    code = frame.f_code
    safe = lasti >= 0 and (
        code.co_code[lasti] in _SAFE_LANDING_OPS
        or (_CONDITIONAL_JUMPS and lasti in _loop_closing_jumps(code))
    )
    if not _DELIVERED_AT_NEXT_CHECK and (not safe or at_handler_hole(frame)) and (
        handler_holes(code)
    ):
        # 3.12: a loop whose closing jump lies outside its try/with, as on 3.13: with no
        # call in it, that jump is its only safe-looking instruction, and raising there
        # skips the handlers. Raise at its next safe instruction instead.
        return AT_NEXT_INSTRUCTION if _INSTRUCTION_DELIVERY else LATER
    return NOW if safe else LATER
