"""Which of the library's CPython-specific mechanisms this interpreter may use.

The thread backend raises timeouts in other threads with `PyThreadState_SetAsyncExc`,
reads their frames to pick where the exception may land, and on 3.12 and 3.13 delivers
at the next safe instruction through `sys.monitoring` where a loop's closing jump lies
outside its handlers. Each rests on CPython internals that
change between versions, so each runs only where it was verified; an untested
interpreter gets the conservative path, and says so once:

- another implementation (PyPy has no `PyThreadState_SetAsyncExc`) or a free-threaded
  build (the frames of a thread that keeps running cannot be read safely): no injection
  into other threads; the thread backend refuses with the reason;
- a CPython newer than the newest verified one (3.14 and up: `with` blocks call
  `__exit__` with `CALL 3`, and 3.15 raises asynchronous exceptions inside some C calls,
  cpython gh-144748): injection at the instructions known to be safe, but no
  instruction-event delivery; a timeout that meets a loop back-jump outside its handlers
  is raised when its scope exits instead.

Imports nothing else of the package.
"""

from __future__ import annotations

import sys
import sysconfig
import warnings
from typing import NamedTuple

NEWEST_VERIFIED = (3, 13)  # the newest Python CI runs the whole suite on


class Interpreter(NamedTuple):
    """The facts the choices below rest on."""

    implementation: str  # sys.implementation.name
    version: tuple[int, int]
    free_threaded: bool


class Mechanisms(NamedTuple):
    """What the thread backend may use here, and why not where it may not."""

    injection_refused: str | None  # why no PyThreadState_SetAsyncExc, or None
    instruction_delivery: bool  # sys.monitoring delivery at the next safe instruction
    unverified: str | None  # why this interpreter takes the conservative path, or None


def this_interpreter() -> Interpreter:
    return Interpreter(
        sys.implementation.name,
        (sys.version_info.major, sys.version_info.minor),
        bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    )


def mechanisms_for(interpreter: Interpreter) -> Mechanisms:
    """The thread backend's mechanisms on `interpreter` (pure: tested for every case)."""
    name, version, free_threaded = interpreter
    shown = f"{version[0]}.{version[1]}"
    if name != "cpython":
        refused = (
            f"{name} has no PyThreadState_SetAsyncExc, so a timeout cannot be raised in "
            f"another thread; time code in the main thread (backend='signal') or poll "
            f"check()/remaining()"
        )
        return Mechanisms(refused, False, refused)
    if free_threaded:
        refused = (
            f"free-threaded CPython {shown}: the watchdog would read the frames of threads "
            f"that keep running, which is unsafe without the GIL (not supported yet); time "
            f"code in the main thread (backend='signal') or poll check()/remaining()"
        )
        return Mechanisms(refused, False, refused)
    if version > NEWEST_VERIFIED:
        newest = f"{NEWEST_VERIFIED[0]}.{NEWEST_VERIFIED[1]}"
        unverified = (
            f"CPython {shown} is newer than the newest verified ({newest}): a thread-backend "
            f"timeout that meets a loop's back-jump outside its try/with is raised when "
            f"its scope exits, not inside the loop"
        )
        return Mechanisms(None, False, unverified)
    return Mechanisms(None, version >= (3, 12), None)


MECHANISMS = mechanisms_for(this_interpreter())
_warned = False


def warn_once_if_unverified() -> None:
    """One RuntimeWarning per process where the conservative path is taken."""
    global _warned
    if MECHANISMS.unverified is None or _warned:
        return
    _warned = True
    warnings.warn(f"celery-timeouts: {MECHANISMS.unverified}", RuntimeWarning, stacklevel=3)
