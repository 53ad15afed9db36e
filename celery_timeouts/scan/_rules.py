"""What the scanner reports: which `signal` calls need SIGALRM, and the fix for each."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from ._names import Meanings


@dataclass(frozen=True)
class Finding:
    """One SIGALRM-based call: where it is, which `signal` function, and the fix."""

    path: str
    line: int
    column: int  # 1-based, counted in characters like other linters
    call: str  # the canonical function: "signal.alarm", "signal.signal", ...
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


Finding.__module__ = "celery_timeouts.scan"  # where users import it from

SIGALRM = frozenset({"signal.SIGALRM", "signal.Signals.SIGALRM"})
ITIMER_REAL = frozenset({"signal.ITIMER_REAL"})
# `from signal import *` binds every public name; only these can lead to a finding.
STAR_NAMES = ("signal", "alarm", "setitimer", "getitimer", "SIGALRM", "ITIMER_REAL", "Signals")

_FIX_IMPORT = "`from celery_timeouts import compat as signal` (per-thread alarm)"
_SIGNALS_ONLY_IN_MAIN = "SIGALRM handlers run only in the main thread"

# Whether an argument may evaluate to one of the wanted names (resolved by the walker).
Means = Callable[[ast.expr | None, Meanings], bool]


def message(function: str, call: ast.Call, means: Means) -> str | None:
    """The finding's message if this call of `function` needs SIGALRM, else None."""
    if function == "signal.alarm":
        return _alarm_message(_number(_argument(call, 0, "seconds")))
    if function == "signal.signal":
        if not means(_argument(call, 0, "signalnum"), SIGALRM):
            return None
        return (
            "signal.signal(SIGALRM, ...) raises ValueError outside the main thread; "
            "use `compat.signal(compat.SIGALRM, handler)` (`from celery_timeouts import "
            "compat`) or `celery_timeouts.portable_timeout(seconds)`"
        )
    if function not in ("signal.setitimer", "signal.getitimer"):
        return None
    if not means(_argument(call, 0, "which"), ITIMER_REAL):
        return None  # ITIMER_VIRTUAL and ITIMER_PROF send other signals
    if function == "signal.getitimer":
        return (
            "signal.getitimer(ITIMER_REAL) reads the process-wide SIGALRM timer; "
            "use `compat.getitimer(compat.ITIMER_REAL)` (`from celery_timeouts import "
            "compat`) or `celery_timeouts.remaining()`"
        )
    seconds = _number(_argument(call, 1, "seconds"))
    return (
        f"signal.setitimer(ITIMER_REAL, ...): {_SIGNALS_ONLY_IN_MAIN}; "
        f"use `compat.setitimer(compat.ITIMER_REAL, {_seconds_text(seconds)})` "
        f"(`from celery_timeouts import compat`) {_portable_hint(seconds)}"
    )


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    """The argument at `position` or passed as `keyword`; None when `*args` hides it."""
    for index, argument in enumerate(call.args):
        if isinstance(argument, ast.Starred):
            return None
        if index == position:
            return argument
    for passed in call.keywords:
        if passed.arg == keyword:
            return passed.value
    return None


def _number(node: ast.expr | None) -> int | float | None:
    """A literal number of seconds, to quote in the suggested fix; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return None if isinstance(node.value, bool) else node.value
    return None


def _seconds_text(seconds: int | float | None) -> str:
    return "seconds" if seconds is None else repr(seconds)


def _portable_hint(seconds: int | float | None) -> str:
    if seconds == 0:  # disarming: the scope does that itself
        return "or drop it: `celery_timeouts.portable_timeout(...)` disarms itself on exit"
    return f"or `celery_timeouts.portable_timeout({_seconds_text(seconds)})`"


def _alarm_message(seconds: int | float | None) -> str:
    label = "signal.alarm(0)" if seconds == 0 else "signal.alarm()"
    return f"{label}: {_SIGNALS_ONLY_IN_MAIN}; use {_FIX_IMPORT} {_portable_hint(seconds)}"
