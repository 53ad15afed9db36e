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

    def __init__(
        self, seconds: float | None = None, backend: str | None = None, cancelled: bool = False
    ) -> None:
        self.seconds = seconds
        self.backend = backend
        self.cancelled = cancelled  # `scope.cancel()` ended the body, not its deadline
        super().__init__(_describe(seconds, backend, cancelled))

    def __str__(self) -> str:
        if getattr(self, "cancelled", False):  # a subclass built with (seconds, backend)
            return _describe(self.seconds, self.backend, True)
        return super().__str__()

    def __reduce__(
        self,
    ) -> tuple[type[TaskTimeout], tuple[float | None, str | None], dict[str, bool]]:
        # The default pickling replays self.args (the message) into __init__; subclasses
        # take (seconds, backend), so `cancelled` travels as state.
        return (type(self), (self.seconds, self.backend), {"cancelled": self.cancelled})


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run in the current context."""


def _describe(seconds: float | None, backend: str | None, cancelled: bool = False) -> str:
    if cancelled:
        return f"cancelled (backend={backend})"
    if seconds is None:
        return "timeout exceeded"
    return f"exceeded {seconds:g} s timeout (backend={backend})"
