"""The one small protocol every backend implements."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .._scope import TimeoutScope


class Backend:
    """How a scope's deadline is enforced in one kind of execution context.

    A backend answers "can I run here, and if not why" and arms/disarms a scope.
    `disarm` is the hard part: when it returns, nothing the backend scheduled for that
    scope may still land in the thread, greenlet or task.
    """

    name: ClassVar[str]

    def unavailable_reason(self) -> str | None:
        """None if this backend can time code running here, else why not and the fix."""
        raise NotImplementedError

    def arm(self, scope: TimeoutScope) -> Any:
        """Start enforcing `scope._deadline` on the current thread, greenlet or task.

        Returns the backend's record of this arming (its timer, the task or thread it
        interrupts, ...), or None if it needs none. The scope keeps it for the backend,
        as `scope._backend_state`, and never reads it.
        """
        raise NotImplementedError

    def disarm(self, scope: TimeoutScope) -> None:
        """Stop enforcing `scope`; afterwards nothing of it may be delivered."""
        raise NotImplementedError

    def reschedule(self, scope: TimeoutScope) -> None:
        """`scope._deadline` has moved (earlier, later, or to math.inf: no limit):
        enforce the new one. Called from any thread; the scope may be leaving meanwhile,
        and once it fired nothing changes. While `arm` runs, `scope._backend_state` is
        still None: do nothing then (the scope calls again once `arm` returns)."""
        raise NotImplementedError

    def reschedule_refusal(self, scope: TimeoutScope) -> str | None:
        """None if `reschedule` can act from the calling thread, else why not and what
        to do instead (checked before the deadline moves)."""
        return None

    def claim(self, scope: TimeoutScope) -> None:
        """The body raises the timeout itself (`check()`): deliver nothing more for it.

        Backends whose timer runs in another OS thread override this to take their lock
        and withdraw a delivery already under way.
        """
        scope._mark_fired()

    def own_cancellation(self, scope: TimeoutScope, exc: BaseException | None) -> bool | None:
        """For `async with`, at the exit of a scope that fired or was due (asyncio: it
        marks the scope fired before cancelling the task): None if the backend cancelled
        nothing for `scope`, or `exc` is not that cancellation; True if it is the scope's
        own (now taken back); False if someone else cancelled the task as well."""
        return None

    def sleep(self, seconds: float) -> None:
        """Block for `seconds`; the armed timer interrupts it at the deadline."""
        time.sleep(seconds)
