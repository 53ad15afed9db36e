"""`interrupt_blocking`: the `-P threads` pool turns `celery_timeouts.blocking` on.

A task on the threads pool spends its time blocked (a sleep, a socket read, a queue, a
child process) where the watchdog's injected exception cannot reach it. With the
stdlib's blocking calls patched, the soft limit is raised inside the call and the hard
limit ends it, so the thread comes back instead of being abandoned.
"""

from __future__ import annotations

from .. import blocking


def interrupt_blocking_calls() -> bool:
    """Patch the stdlib's blocking calls; True if this call did it (so it undoes it)."""
    if blocking.is_patched():
        return False
    blocking.patch()
    return True


def leave_blocking_calls() -> None:
    """Put the stdlib's own blocking calls back (the pool patched them, and stops)."""
    blocking.unpatch()


def blocking_calls_line(enabled: bool) -> str:
    """What the worker's start-up line says about blocking calls."""
    if enabled:
        return (
            "blocking calls (sleep, sockets, select, queues, events, subprocess) are "
            "interrupted at the limits"
        )
    return "blocking calls are not interrupted (interrupt_blocking=False)"
