"""`subprocess.Popen.wait`/`communicate`, and the child processes a timed-out body leaves.

`run`, `call`, `check_call` and `check_output` wait through these two methods.

A process started (while patched) in a worker thread inside a thread-backend scope is
remembered by the innermost scope. When a scope exits, the processes still running
are killed if that scope's own non-catchable timeout fired (a hard limit unwinds the
body, as `subprocess.run(timeout=...)` kills its child); otherwise they pass to the
enclosing scope, so an outer hard limit still reaches them. A catchable scope (a soft
limit) leaves them to the task. While a hard limit unwinds the body, waiting for such a
process (`with Popen(...)`'s exit does) kills it first instead of waiting for it.
"""

from __future__ import annotations

import contextlib
import subprocess
from typing import TYPE_CHECKING, Any

from .._current import DeliveryState, enclosing
from .._current import innermost as _innermost
from .._unwind import protected
from ..backends.watchdog import shared_watchdog
from ._deadline import TIMED_OUT, in_worker_thread, limiting_scope, until_deadline
from ._waits import original_sleep

if TYPE_CHECKING:
    from .._scope import TimeoutScope

original_init = subprocess.Popen.__init__
original_wait = subprocess.Popen.wait
original_communicate = subprocess.Popen.communicate

_REAP_SECONDS = 1.0  # how long a scope's exit waits for the children it killed
_PRUNE_AT = 16  # forget reaped children once a scope remembers this many


def popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    """`subprocess.Popen.__init__`; the innermost scope remembers the child."""
    original_init(self, *args, **kwargs)
    if _innermost.get() is not None:
        _adopt(self)


def popen_wait(self: subprocess.Popen[Any], timeout: float | None = None) -> int:
    """`subprocess.Popen.wait`, ended by the deadline of the thread's scope."""
    if _innermost.get() is None:
        return original_wait(self, timeout)
    if _doomed(self):
        _kill(self)
    scope = limiting_scope()
    if scope is None:
        return original_wait(self, timeout)

    def bounded(bound: float) -> Any:
        try:
            return original_wait(self, bound)
        except subprocess.TimeoutExpired:
            return TIMED_OUT

    return until_deadline(  # type: ignore[no-any-return]
        scope, timeout, bounded, lambda own: original_wait(self, own)
    )


def popen_communicate(
    self: subprocess.Popen[Any], input: Any = None, timeout: float | None = None
) -> tuple[Any, Any]:
    """`subprocess.Popen.communicate`, ended by the deadline of the thread's scope."""
    if _innermost.get() is None:
        return original_communicate(self, input, timeout)
    scope = limiting_scope()
    if scope is None:
        return original_communicate(self, input, timeout)
    unsent = [input]  # sent by the first round; a later round may not send it again

    def bounded(bound: float) -> Any:
        data, unsent[0] = unsent[0], None
        try:
            return original_communicate(self, data, bound)
        except subprocess.TimeoutExpired:
            return TIMED_OUT  # nothing is lost: the next round goes on reading

    return until_deadline(  # type: ignore[no-any-return]
        scope, timeout, bounded, lambda own: original_communicate(self, unsent[0], own)
    )


class Children:
    """The child processes a scope's body started (see the module's docstring)."""

    __slots__ = ("processes",)

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[Any]] = []

    def add(self, process: subprocess.Popen[Any]) -> None:
        if len(self.processes) >= _PRUNE_AT:
            self.processes = [p for p in self.processes if p.returncode is None]
        self.processes.append(process)

    @protected
    def release(self, scope: TimeoutScope) -> None:
        """Called by the scope's exit: kill the running ones or pass them on."""
        running = [p for p in self.processes if p.returncode is None]
        self.processes = []
        if not running:
            return
        if _is_hard_timeout(scope):
            for process in running:
                _kill(process)
            _reap(running)
        elif scope._parent is not None:
            for process in running:
                _children_of(scope._parent).add(process)


def _adopt(process: subprocess.Popen[Any]) -> None:
    scope = _innermost.get()
    if scope is None or not in_worker_thread():
        return
    thread_backend = shared_watchdog()
    if any(outer._backend is thread_backend for outer in enclosing(scope)):
        # a watchdog-enforced limit may unwind this body
        _children_of(scope).add(process)


def _children_of(scope: TimeoutScope) -> Children:
    children: Children = scope._children_made_by(Children)
    return children


def _is_hard_timeout(scope: TimeoutScope) -> bool:
    """True once `scope`'s own non-catchable, watchdog-enforced timeout fired (or is on
    its way again: a hard limit the body swallowed is delivered anew, see _final)."""
    return (
        scope._delivery is not DeliveryState.PENDING
        and not scope._catchable
        and scope._backend is shared_watchdog()
    )


def _doomed(process: subprocess.Popen[Any]) -> bool:
    """True if a hard timeout is unwinding a body that started `process`."""
    if process.returncode is not None:
        return False
    started_inside = False
    for scope in enclosing(_innermost.get()):
        children = scope._children
        if children is not None and process in children.processes:
            started_inside = True
        if started_inside and _is_hard_timeout(scope):
            return True
    return False


def _kill(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(OSError):  # gone already
        process.kill()  # checks that the child was not reaped meanwhile


def _reap(processes: list[subprocess.Popen[Any]]) -> None:
    """Wait a little for killed children, with the stdlib's own sleep: no deadline of
    an enclosing scope may be raised from a scope's exit."""
    for _ in range(int(_REAP_SECONDS / 0.005)):
        if all(process.poll() is not None for process in processes):
            return
        original_sleep(0.005)


popen_init.__name__, popen_init.__qualname__ = "__init__", "Popen.__init__"
popen_wait.__name__, popen_wait.__qualname__ = "wait", "Popen.wait"
popen_communicate.__name__, popen_communicate.__qualname__ = "communicate", "Popen.communicate"
TARGETS: list[tuple[object, str, object]] = [
    (subprocess.Popen, "__init__", popen_init),
    (subprocess.Popen, "wait", popen_wait),
    (subprocess.Popen, "communicate", popen_communicate),
]
