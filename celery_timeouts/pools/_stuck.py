"""Where a task was when its hard limit ended it, or when its thread was abandoned.

An operator reading "Hard time limit exceeded" wants to know what the task was waiting
for. Both reports carry the task's stack at that moment, one frame a line
(`file:line in function`, innermost last), without the library's own frames.
"""

from __future__ import annotations

import os
import sys
from types import CodeType, FrameType, TracebackType

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The library's machinery, left out of reports; its demo tasks are user code and stay.
_MACHINERY = tuple(
    os.path.join(_PACKAGE, part) for part in ("_", "backends", "blocking", "pools", "compat")
)
MAX_FRAMES = 30  # innermost frames kept: a deep recursion would flood the log


def task_id_of(args: object) -> str:
    """The task id in a job's arguments: Celery's tracer takes (name, id, ...)."""
    return str(args[1]) if isinstance(args, (list, tuple)) and len(args) > 1 else "?"


def _is_machinery(filename: str) -> bool:
    return filename.startswith(_MACHINERY)


def format_stack(frames: list[tuple[str, int, str]]) -> str:
    """`file:line in function` lines, innermost last; '(no frames)' if none is left."""
    kept = [frame for frame in frames if not _is_machinery(frame[0])][-MAX_FRAMES:]
    if not kept:
        return "    (no frames outside celery-timeouts)"
    return "\n".join(f"    {filename}:{line} in {function}" for filename, line, function in kept)


def traceback_frames(
    tb: TracebackType | None, below: CodeType | None = None
) -> list[tuple[str, int, str]]:
    """The frames an exception went through down to where the timeout interrupted the
    body, outermost first; only those under the frame running `below`, if it is there."""
    frames: list[tuple[str, int, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code is below:
            frames.clear()
        else:
            frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return frames


def thread_frames(
    thread_id: int | None, below: CodeType | None = None
) -> list[tuple[str, int, str]]:
    """The stack of thread `thread_id` now, outermost first; only the frames under the
    first frame running `below` (the job's body) when that is on the stack."""
    if thread_id is None:
        return []
    frame: FrameType | None = sys._current_frames().get(thread_id)
    stack: list[tuple[str, int, str]] = []
    while frame is not None:
        if below is not None and frame.f_code is below:
            break
        code = frame.f_code
        stack.append((code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back
    stack.reverse()
    return stack


def job_frames_in_thread(
    thread_id: int, owner: FrameType | None
) -> list[tuple[str, int, str]] | None:
    """The stack of the job whose body runs in `owner`, if thread `thread_id` is
    running it now (a greenlet holding its thread): innermost last, the frames under
    `owner` only. None if that thread is elsewhere (the greenlet is suspended)."""
    frame: FrameType | None = sys._current_frames().get(thread_id)
    stack: list[tuple[str, int, str]] = []
    while frame is not None and frame is not owner:
        code = frame.f_code
        stack.append((code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back
    if frame is None or owner is None:
        return None
    stack.reverse()
    return stack
