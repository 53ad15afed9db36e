"""Per-app settings given to `enable_time_limits(app, ...)`, read by the pools."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

from .._validation import real_number


@dataclass(frozen=True)
class PoolOptions:
    """How the pools enforce limits; `enable_time_limits` documents each field."""

    abandon_after: float = 0.5
    max_abandoned_threads: int | None = None
    eager: bool = False
    interrupt_blocking: bool = True

    def __post_init__(self) -> None:
        grace = self.abandon_after
        takes = "a number of seconds >= 0"
        fix = "pass e.g. abandon_after=0.5 (0: abandon at once)"
        if not 0 <= real_number(grace, "abandon_after", takes, fix) < math.inf:
            raise ValueError(f"abandon_after must be {takes}, got {grace!r}; {fix}")
        cap = self.max_abandoned_threads
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ValueError(
                f"max_abandoned_threads must be an int >= 0 or None (no restart), got {cap!r}"
            )
        for name in ("eager", "interrupt_blocking"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")


_by_app: weakref.WeakKeyDictionary[Any, PoolOptions] = weakref.WeakKeyDictionary()


def set_options(app: Any, options: PoolOptions) -> None:
    _by_app[app] = options


def options_for(app: Any) -> PoolOptions:
    """The app's options; the defaults for a pool chosen with `-P custom` alone."""
    if app is None:
        return PoolOptions()
    return _by_app.get(app) or PoolOptions()
