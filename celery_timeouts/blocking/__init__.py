"""Deadline-aware blocking calls for worker threads.

    from celery_timeouts import blocking
    blocking.patch()

The watchdog thread raises a timeout in a thread that runs Python code, but a thread
blocked in a C call (a sleep, a socket read, a lock) sees it only once that call
returns. `patch()` makes the stdlib's blocking calls end at the deadline of the
thread's innermost scopes instead, and raise that scope's timeout right there, as if
it had been injected: for a catchable scope (a Celery soft limit) the public exception
the task can catch, otherwise the private one its scope converts on exit.

Only OS threads other than the main thread, inside scopes that the watchdog thread
enforces (backend 'thread'), are affected. The main thread has SIGALRM and greenlets
have their hub: there, and outside any scope, every call is the stdlib's own (outside a
scope at the cost of one context-variable lookup).

Covered: `time.sleep`; sockets, `ssl` included (`connect`, `accept`, `recv`,
`recv_into`, `recvfrom`, `recvfrom_into`, `send`, `sendall`, `sendto`); `select.select`,
`select.poll`, `select.epoll` and the `selectors` classes; `threading.Condition.wait`
(and so `Event`, `Semaphore`, `Barrier`, `queue.Queue`, `concurrent.futures`) and
`Thread.join`; `subprocess.Popen.wait`/`communicate` (and so `run`, `call`,
`check_call`, `check_output`). A child process the body started and did not reap is
killed when a non-catchable scope's timeout unwinds the body.

Not covered: C calls that no Python-level patch reaches (`threading.Lock().acquire()`,
`RLock`, `queue.SimpleQueue.get`, C extensions' own I/O). Code that did
`from time import sleep` before `patch()` keeps the original: patch early.
"""

from __future__ import annotations

import contextlib
import threading

from .._patching import patched_for_a_block
from . import _select, _sockets, _subprocess, _waits

__all__ = ["is_patched", "patch", "patched", "unpatch"]

_INHERITED = object()  # a class attribute that came from a base class, not the class itself


def _original(owner: object, name: str) -> object:
    if isinstance(owner, type):
        return owner.__dict__.get(name, _INHERITED)
    return getattr(owner, name)


def _current(owner: object, name: str) -> object:
    if isinstance(owner, type):
        return owner.__dict__.get(name, _INHERITED)
    return getattr(owner, name, None)


# (owner, name, replacement, original) for every patch point, originals taken at import.
_PATCHES = [
    (owner, name, replacement, _original(owner, name))
    for owner, name, replacement in (
        *_waits.TARGETS, *_sockets.TARGETS, *_select.TARGETS, *_subprocess.TARGETS,
    )
]
for _owner, _name, _replacement, _ in _PATCHES:
    if not isinstance(_replacement, type):  # `inspect.signature` & co. see the original
        _replacement.__wrapped__ = getattr(_owner, _name)  # type: ignore[attr-defined]
_patch_lock = threading.Lock()


def patch() -> None:
    """Make the stdlib's blocking calls end at the deadline of the thread's scope.

    Process-wide; affects only worker threads inside thread-backend scopes. Calling it
    again does nothing.
    """
    with _patch_lock:
        for owner, name, replacement, _ in _PATCHES:
            setattr(owner, name, replacement)


def unpatch() -> None:
    """Put the stdlib's own objects back (the very same ones). Safe to repeat.

    An attribute someone else replaced after `patch()` is left as they set it.
    """
    with _patch_lock:
        for owner, name, replacement, original in _PATCHES:
            if _current(owner, name) is not replacement:
                continue
            if original is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def is_patched() -> bool:
    """True while any of the stdlib's blocking calls is ours."""
    return any(_current(owner, name) is replacement for owner, name, replacement, _ in _PATCHES)


def patched() -> contextlib.AbstractContextManager[None]:
    """`patch()` for the duration of a `with` block; unpatches only if it patched."""
    return patched_for_a_block(is_patched, patch, unpatch)
