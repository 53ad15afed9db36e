"""Public exceptions.

`TaskTimeout` is what callers catch. The private unwinding exception that travels
through a timed-out body lives in `_scope` and never reaches user code.
"""

from __future__ import annotations


class TaskTimeout(TimeoutError):
    """A `portable_timeout` scope's deadline passed before its body finished.

    A subclass of the built-in `TimeoutError`, so `except TimeoutError:` catches it.
    The message states facts only (limit and backend), never the call's arguments,
    which may hold secrets.
    """

    def __init__(self, seconds: float | None = None, backend: str | None = None) -> None:
        self.seconds = seconds
        self.backend = backend
        super().__init__(_describe(seconds, backend))

    def __reduce__(self) -> tuple[type[TaskTimeout], tuple[float | None, str | None]]:
        # The default pickling replays self.args (the message) into __init__.
        return (type(self), (self.seconds, self.backend))


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run in the current context."""


def _describe(seconds: float | None, backend: str | None) -> str:
    if seconds is None:
        return "timeout exceeded"
    return f"exceeded {seconds:g} s timeout (backend={backend})"
