"""The alarm clocks behind `celery_timeouts.compat`: one per worker thread or greenlet.

Each clock holds that context's SIGALRM handler and its one timer (what `alarm` and
`setitimer` set). A driver runs the timer where the context can be reached: the
watchdog thread for a worker thread (its handler's exception is delivered into the
thread), the hub for a greenlet (the green guard for one that never yields). Patched
blocking calls (`celery_timeouts.blocking`) ask `_thread_alarm_due` and
`_thread_alarm_take`, so an alarm ends their wait as a real SIGALRM ends a system call.
"""

from __future__ import annotations

import contextlib
import math
import signal as _stdlib
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._context import (
    NO_SIGNALS,
    eventlet_context,
    gevent_context,
    is_main_thread,
    native_thread_id,
)
from ._current import DeliveryState
from ._interpreter import MECHANISMS
from ._unwind import protected
from .exceptions import TaskTimeout

if TYPE_CHECKING:
    from .backends._watched import Delivery
    from .backends.green_guard import GreenGuard

_FIRED = DeliveryState.FIRED

SIGALRM: int = getattr(_stdlib, "SIGALRM", 14)  # 14 (Linux's) where the platform has none
SIG_DFL = _stdlib.SIG_DFL
SIG_IGN = _stdlib.SIG_IGN
_Handler = Callable[[int, FrameType | None], Any] | int | None


# -- one alarm clock per thread / greenlet -----------------------------------------------------


class _Timer:
    """One arming of a clock's ITIMER_REAL (in a greenlet, a `GuardedAlarm` too)."""

    __slots__ = (
        "_fired", "clock", "deadline", "entry_frame", "guard", "handle", "interval", "seconds",
    )

    def __init__(
        self,
        clock: _Clock,
        seconds: float,
        interval: float,
        entry_frame: FrameType | None,
        start: float,
    ) -> None:
        self.clock = clock
        self.seconds = seconds
        self.deadline = start + seconds
        self.interval = interval
        self.entry_frame = entry_frame  # where the alarm was set: deliveries stay inside it
        self.handle: Any = None  # the driver's timer
        self.guard: GreenGuard | None = None  # the green guard watching it, if any
        self._fired = False

    @property
    def _deadline(self) -> float:
        return self.deadline

    def overdue_here(self, now: float) -> bool:
        """For the green guard: overdue, and set by the greenlet that runs now."""
        return (
            not self._fired
            and self.deadline <= now
            and self.clock.timer is self
            and self.clock.owner is sys.modules["greenlet"].getcurrent()
        )

    def ring(self, frame: FrameType | None) -> None:
        """For the green guard: a greenlet that never yields starves the hub, so its
        timer cannot run the handler; this runs it in that greenlet, as SIGALRM would."""
        expired = self._take()
        if expired is not None:
            _run_handler(expired[0], frame, self, self.clock.driver)

    @protected
    def _take(self) -> tuple[_Handler, int] | None:
        self.clock.driver.stop(self)  # the hub's timer, which has not run
        return _expire(self.clock, self)

    def abandoned(self) -> bool:
        """For the green guard: the greenlet that set it has ended."""
        owner: Any = self.clock.owner
        return bool(owner.dead)


class _Clock:
    """A thread's or greenlet's own SIGALRM disposition and ITIMER_REAL."""

    __slots__ = ("delivery", "driver", "generation", "handler", "owner", "ringing", "timer")

    def __init__(self, driver: _Driver, owner: object) -> None:
        self.driver = driver
        self.owner = owner  # the thread id or the greenlet
        self.handler: _Handler = SIG_DFL
        self.timer: _Timer | None = None
        self.generation = 0  # counts the owner's alarm()/setitimer() calls
        self.delivery: Delivery | None = None  # a handler's exception on its way in (threads)
        self.ringing = False  # the watchdog is running the handler (threads)


_clocks: ContextVar[_Clock | None] = ContextVar("celery_timeouts_alarm_clock", default=None)


def _clock(driver: _Driver, *, create: bool) -> _Clock | None:
    owner = driver.owner()
    clock = _clocks.get()
    if clock is None or clock.owner != owner:
        # None yet, or one inherited with a copied context from another thread/greenlet.
        if not create:
            return None
        clock = _Clock(driver, owner)
        _clocks.set(clock)
    return clock


@protected  # the green guard must not run a handler halfway through
def _set_timer(
    driver: _Driver, delay: float, interval: float, caller: FrameType
) -> tuple[float, float]:
    """Replace this context's ITIMER_REAL; return the old one's (remaining, interval)."""
    clock = _clock(driver, create=True)
    assert clock is not None
    with driver.lock:
        clock.generation += 1
        old = clock.timer
        previous = (0.0, 0.0)
        if old is not None:
            previous = (max(old.deadline - time.monotonic(), 0.0), old.interval)
            driver.stop(old)
            clock.timer = None
        if clock.delivery is not None:
            # The handler already ran, but its exception has not landed yet: the owner
            # moved on (typically `alarm(0)` at the end of the block), so it never will.
            driver.withdraw(clock.delivery)
            clock.delivery = None
        if delay > 0:
            entry_frame = caller if driver.needs_entry_frame else None
            clock.timer = _Timer(clock, delay, interval, entry_frame, time.monotonic())
            driver.start(clock, clock.timer)
    return previous


def _on_deadline(clock: _Clock, timer: _Timer) -> None:
    """The clock's timer expired: what the kernel and the interpreter do for SIGALRM."""
    driver = clock.driver
    clock.ringing = True  # from before the timer is taken until the delivery is set
    try:
        expired = _expire(clock, timer)
        if expired is None:
            return
        handler, generation = expired
        frame = driver.frame_of(clock.owner)
        if frame is None:
            return  # the thread or greenlet has ended
        try:
            _run_handler(handler, frame, timer, driver)
        except BaseException as raised:
            driver.deliver(clock, generation, raised, timer)
    finally:
        clock.ringing = False


def _thread_alarm_due() -> float | None:
    """For `celery_timeouts.blocking`: when (time.monotonic) this worker thread's alarm
    needs the thread out of a patched wait: now while its handler runs or its exception
    waits to land, else its timer's deadline; None without either."""
    clock = _clocks.get()
    if clock is None or not isinstance(clock.driver, _ThreadDriver):
        return None
    if clock.owner != native_thread_id():
        return None  # a clock inherited with a copied context: not this thread's
    delivery = clock.delivery
    if clock.ringing or (
        delivery is not None and delivery._armed and delivery._delivery is not _FIRED
    ):
        return -math.inf
    timer = clock.timer
    return None if timer is None else timer.deadline


def _thread_alarm_take() -> BaseException | None:
    """For `celery_timeouts.blocking`: the exception this worker thread's handler raised,
    taken from the watchdog to be raised by the patched wait itself (as SIGALRM ends a
    system call with the handler's exception); None if there is none to take."""
    clock = _clocks.get()
    if clock is None or not isinstance(clock.driver, _ThreadDriver):
        return None
    driver = clock.driver
    with driver.lock:
        delivery = clock.delivery
        if delivery is None or clock.owner != native_thread_id():
            return None
        if not driver.take(delivery):
            return None
        clock.delivery = None
        exception: BaseException = delivery._exception
        return exception


def _expire(clock: _Clock, timer: _Timer) -> tuple[_Handler, int] | None:
    """Take the expired `timer` off its clock (re-arming an interval timer): the handler
    to run and the clock's generation, or None if it was re-armed or cancelled."""
    driver = clock.driver
    with driver.lock:
        if clock.timer is not timer or timer._fired:
            return None  # re-armed or cancelled meanwhile, or already rung by the guard
        timer._fired = True
        if timer.guard is not None:
            timer.guard.discard_alarm(timer)
        clock.timer = None
        if timer.interval > 0 and not driver.has_ended(clock.owner):
            following = _Timer(
                clock, timer.interval, timer.interval, timer.entry_frame, timer.deadline
            )
            clock.timer = following
            driver.start(clock, following)
        return clock.handler, clock.generation


def _run_handler(
    handler: _Handler, frame: FrameType | None, timer: _Timer, driver: _Driver
) -> None:
    if handler == SIG_IGN:
        return
    if callable(handler):
        handler(int(SIGALRM), frame)
    else:  # SIG_DFL would end the process; here it ends this thread's/greenlet's work
        raise TaskTimeout(timer.seconds, driver.name)


# -- drivers: how a clock's timer runs in each kind of context ---------------------------------


class _Driver:
    name: str
    needs_entry_frame = False
    # Greenlets of one hub never run at the same time as the hub: no lock needed.
    lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()

    def owner(self) -> object:
        raise NotImplementedError

    def start(self, clock: _Clock, timer: _Timer) -> None:
        raise NotImplementedError

    def stop(self, timer: _Timer) -> None:
        raise NotImplementedError

    def frame_of(self, owner: Any) -> FrameType | None:
        raise NotImplementedError

    def has_ended(self, owner: Any) -> bool:
        """True once the owner thread or greenlet has ended: its timers stop repeating."""
        return self.frame_of(owner) is None

    def deliver(
        self, clock: _Clock, generation: int, exception: BaseException, timer: _Timer
    ) -> None:
        """Raise the handler's `exception` in the owner, unless the owner has called
        alarm()/setitimer() since `generation`: then it comes too late."""
        raise NotImplementedError

    def withdraw(self, delivery: Any) -> None:
        """Greenlets receive the exception at once: there is never anything to withdraw."""


class _ThreadDriver(_Driver):
    """A worker thread: the watchdog thread runs the handler and injects what it raised."""

    name = "thread"
    needs_entry_frame = MECHANISMS.instruction_delivery  # see watchdog._INSTRUCTION_DELIVERY

    def __init__(self) -> None:
        from .backends.watchdog import shared_watchdog

        self._watchdog = shared_watchdog()
        self.lock = threading.Lock()  # the owner thread and the watchdog share its clocks

    def owner(self) -> object:
        return native_thread_id()

    def start(self, clock: _Clock, timer: _Timer) -> None:
        timer.handle = self._watchdog.call_at(
            timer.deadline, lambda: _on_deadline(clock, timer)
        )

    def stop(self, timer: _Timer) -> None:
        self._watchdog.cancel(timer.handle)

    def frame_of(self, owner: Any) -> FrameType | None:
        return sys._current_frames().get(owner)

    def deliver(
        self, clock: _Clock, generation: int, exception: BaseException, timer: _Timer
    ) -> None:
        with self.lock:
            if clock.generation == generation:
                thread_id: int = clock.owner  # type: ignore[assignment]
                clock.delivery = self._watchdog.deliver(thread_id, exception, timer.entry_frame)

    def withdraw(self, delivery: Any) -> None:
        self._watchdog.cancel(delivery)

    def take(self, delivery: Any) -> bool:
        return self._watchdog.take_delivery(delivery)


class _GreenDriver(_Driver):
    """A greenlet: a hub timer runs the handler and throws what it raised into it.

    A greenlet that never yields starves the hub, so the green guard watches its alarms
    too (only on the main thread's hub, as for scopes): see `_Timer.ring`.
    """

    def _guard(self, timer: _Timer) -> None:
        if not is_main_thread():
            return  # a signal reaches no hub in another thread
        from .backends.green_guard import main_thread_guard

        guard = main_thread_guard()
        if guard is not None:
            timer.guard = guard
            guard.add_alarm(timer)
            if not guard.ticking:
                guard.start()

    def _unguard(self, timer: _Timer) -> None:
        if timer.guard is not None:
            timer.guard.discard_alarm(timer)

    def owner(self) -> object:
        return sys.modules["greenlet"].getcurrent()

    def frame_of(self, owner: Any) -> FrameType | None:
        return None if owner.dead else owner.gr_frame

    def has_ended(self, owner: Any) -> bool:
        return bool(owner.dead)  # (a running greenlet has no gr_frame either)

    def deliver(
        self, clock: _Clock, generation: int, exception: BaseException, timer: _Timer
    ) -> None:
        if clock.generation == generation:
            owner: Any = clock.owner
            owner.throw(exception)  # the greenlet runs now, from where it switched out


class _GeventDriver(_GreenDriver):
    name = "gevent"

    def start(self, clock: _Clock, timer: _Timer) -> None:
        from gevent import get_hub

        delay = max(timer.deadline - time.monotonic(), 0.0)
        timer.handle = get_hub().loop.timer(delay)
        timer.handle.start(_on_deadline, clock, timer, update=True)
        self._guard(timer)

    def stop(self, timer: _Timer) -> None:
        timer.handle.close()
        self._unguard(timer)


class _EventletDriver(_GreenDriver):
    name = "eventlet"

    def start(self, clock: _Clock, timer: _Timer) -> None:
        from eventlet.hubs import get_hub

        delay = max(timer.deadline - time.monotonic(), 0.0)
        timer.handle = get_hub().schedule_call_global(delay, _on_deadline, clock, timer)
        self._guard(timer)

    def stop(self, timer: _Timer) -> None:
        timer.handle.cancel()
        self._unguard(timer)


_drivers: dict[str, _Driver] = {}


def _driver() -> _Driver | None:
    """How SIGALRM is emulated for the caller; None where the stdlib's real one works
    (the main thread, unless signals are off or the platform has none: see _context)."""
    if gevent_context() is not None:
        kind: str = "gevent"
    elif eventlet_context() is not None:
        kind = "eventlet"
    elif is_main_thread() and NO_SIGNALS is None:
        return None
    else:
        kind = "thread"
    driver = _drivers.get(kind)
    if driver is None:
        driver = _drivers.setdefault(kind, _DRIVER_CLASSES[kind]())
    return driver


_DRIVER_CLASSES: dict[str, type[_Driver]] = {
    "thread": _ThreadDriver,
    "gevent": _GeventDriver,
    "eventlet": _EventletDriver,
}
