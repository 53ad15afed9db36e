"""One shared watchdog thread that raises the timeout inside the timed-out thread.

A heap of deadlines and a single daemon thread per process, whatever the number of
scopes: no thread and no timer per call. At a deadline the watchdog raises the scope's
`ScopeTimeout` in the owning thread with `PyThreadState_SetAsyncExc`. Uses no signals,
so it works in any thread and on any platform.

An asynchronous exception lands at the target's next "eval breaker" check, which is not
always where the target was when it was scheduled. It must never land in the library's
own `__enter__`/`__exit__` (it would escape the `with` statement), so the watchdog only
injects when the target is at an instruction that checks right away (a call, a backward
jump, a function entry) and no library enter/exit code is on its stack; otherwise it
retries a moment later. `disarm` withdraws an injection that has not landed yet.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from .._context import is_green_patched, native_thread_id, os_lock, os_thread_primitives
from .._current import DeliveryState, entered_in_generator, on_stack
from .._interpreter import MECHANISMS, warn_once_if_unverified
from .._on_timeout import take as take_deadline_calls
from .._unwind import (
    injectable,
    protected,
    raising_on_landing,
)
from ..exceptions import BackendUnavailable
from ._landing import _DELIVERED_AT_NEXT_CHECK, clear_async_exc, set_async_exc
from ._landing import AT_NEXT_INSTRUCTION as _AT_NEXT_INSTRUCTION
from ._landing import LATER as _LATER
from ._landing import NOW as _NOW
from ._landing import landing as _landing
from ._watched import Callback, Delivery, Wakeup, WatchedScope, body_runs_in
from .base import Backend
from .instruction_events import InstructionDelivery

if TYPE_CHECKING:
    from typing import TypeAlias

    from .._scope import TimeoutScope

    # What the heap holds: its records of scopes, and the callbacks and deliveries of
    # `call_at`/`deliver`.
    _Timed: TypeAlias = "WatchedScope | Callback | Delivery"
    # What is delivered into a thread: a scope's timeout, or a `deliver` exception.
    _Delivered: TypeAlias = "TimeoutScope | Delivery"

_INJECTION_REFUSED = MECHANISMS.injection_refused
_OVERDUE, _FIRED = DeliveryState.OVERDUE, DeliveryState.FIRED

# Delivery at the next safe instruction through sys.monitoring (instruction_events, where
# _landing asks for it): 3.12 and 3.13, where verified (see _interpreter).
_RETRY_MIN, _RETRY_MAX = 0.0005, 0.05  # how soon the watchdog retries a delivery
_SPIN_LIMIT = 0.001  # a residual wait this short is spun out, holding on to the GIL
_COMPACT_MIN = 256  # rebuild the heap once this many entries are cancelled...

logger = logging.getLogger(__name__)


class WatchdogBackend(Backend):
    name = "thread"

    def __init__(self) -> None:
        self._init_state()
        warn_once_if_unverified()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _init_state(self) -> None:
        # OS locks, and below an OS thread, even in a gevent/eventlet-patched process:
        # the green guard relies on the watchdog running while a greenlet hogs the CPU.
        self._lock = os_lock()
        self._wakeup = Wakeup(self._lock)
        self._heap: list[tuple[float, int, _Timed]] = []
        self._sequence = itertools.count()
        self._cancelled = 0
        # thread id -> what was injected there and may not have landed yet
        self._pending: dict[int, TimeoutScope | Delivery] = {}
        self._thread: object = None
        # 3.13: deliveries at the target's next safe instruction (instruction_events)
        self._next_instruction = InstructionDelivery(self._lock)

    def unavailable_reason(self) -> str | None:
        return _INJECTION_REFUSED

    @protected
    def arm(self, scope: TimeoutScope) -> WatchedScope:
        if _INJECTION_REFUSED is not None:  # `auto` picked us from the cache: refuse here
            raise BackendUnavailable(f"backend='thread' cannot run here: {_INJECTION_REFUSED}")
        watched = WatchedScope()
        watched.scope = scope
        watched._thread_id = native_thread_id()
        watched._armed = True
        if scope._deadline == math.inf:
            # No limit (yet): nothing to wait for, and no thread to start until
            # reschedule() gives it a deadline.
            return watched
        entry = (scope._deadline, next(self._sequence), watched)
        with self._lock:
            heapq.heappush(self._heap, entry)
            try:
                if self._thread is None:
                    self._start_thread()
                elif self._heap[0] is entry:
                    self._wakeup.notify()
            except BaseException:  # entry failed: the entry left in the heap is dead
                watched._armed = False
                self._cancelled += 1
                raise
        return watched

    @protected
    def disarm(self, scope: TimeoutScope) -> None:
        watched: WatchedScope = scope._backend_state
        with self._lock:  # as _take_out, written out: every scope's exit runs it
            watched._armed = False
            del watched.scope  # no cycle left for the collector (see WatchedScope)
            thread_id = watched._thread_id
            if self._pending.get(thread_id) is scope:  # as _withdraw
                del self._pending[thread_id]
                clear_async_exc(thread_id, None)
            self._next_instruction.withdraw(thread_id, scope)
            self._cancelled += 1
            if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(self._heap):
                self._compact()

    def _take_out(self, item: Callback | Delivery, delivered: Delivery | None) -> None:
        """`item` is dead; what is on its way for it (`delivered`) is taken back (locked)."""
        item._armed = False
        self._withdraw(item._thread_id, delivered)
        self._cancelled += 1
        if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(self._heap):
            self._compact()

    @protected
    def claim(self, scope: TimeoutScope) -> None:
        with self._lock:
            self._claim(scope)

    @protected
    def reschedule(self, scope: TimeoutScope) -> None:
        # A new heap entry for the new deadline; the old one is skipped when it comes up
        # (`_run`: an entry earlier than its item's deadline is stale). A patched blocking
        # call of the thread sees the new deadline within `_deadline.RECHECK`.
        watched: WatchedScope | None = scope._backend_state
        if watched is None:
            return  # arm() has not returned yet (see Backend.reschedule)
        with self._lock:
            if not watched._armed or scope._delivery is _FIRED:
                return
            deadline = scope._deadline
            if scope._delivery is _OVERDUE and deadline > time.monotonic():
                # Moved past now while a delivery for the old deadline waited for a safe
                # place: that delivery is off, and so is "raise at exit".
                scope._not_overdue_any_more()
                self._next_instruction.withdraw(watched._thread_id, scope)
            entry = (deadline, next(self._sequence), watched)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._start_thread()
            elif self._heap[0] is entry:
                self._wakeup.notify()

    @protected
    def take(self, scope: TimeoutScope) -> bool:
        """A blocking call woke at `scope`'s deadline (`celery_timeouts.blocking`): True
        if the timeout is the caller's to raise, and then the watchdog delivers nothing
        more for it; False if the watchdog already did."""
        with self._lock:
            if scope._delivery is _FIRED:
                return False
            self._claim(scope)
            return True

    def _claim(self, scope: TimeoutScope) -> None:
        scope._mark_fired()
        self._withdraw(scope._backend_state._thread_id, scope)

    def _withdraw(self, thread_id: int, delivered: _Delivered | None) -> None:
        """Take back `delivered` if it is on its way into that thread and has not landed:
        an injection, or an instruction delivery. The lock is held."""
        if delivered is None:
            return  # a callback: nothing is delivered into a thread
        if self._pending.get(thread_id) is delivered:
            del self._pending[thread_id]
            clear_async_exc(thread_id, None)
        self._next_instruction.withdraw(thread_id, delivered)

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2]._armed]
        heapq.heapify(self._heap)
        self._cancelled = 0

    def _start_thread(self) -> None:
        """Start the watchdog thread (the lock held); if that fails, the next call tries again."""
        if is_green_patched():
            start_new_thread, _ = os_thread_primitives()  # threading.Thread is a greenlet now
            self._thread = start_new_thread(self._run, ())
            return
        thread = threading.Thread(target=self._run, name="celery-timeouts-watchdog", daemon=True)
        thread.start()
        self._thread = thread

    def _run(self) -> None:
        with self._lock:
            while True:
                heap = self._heap  # _compact replaces the list
                while heap and not heap[0][2]._armed:
                    heapq.heappop(heap)
                    if self._cancelled:
                        self._cancelled -= 1
                if not heap:
                    self._wakeup.wait()
                    continue
                delay = heap[0][0] - time.monotonic()
                if delay > 0:
                    # Waking up is not enough: the GIL comes back only when a busy target
                    # drops it, up to one switch interval later. So wake that much early,
                    # then wait (or, for the last instant, spin) up to the deadline itself.
                    lead = sys.getswitchinterval()
                    if delay > lead:
                        self._wakeup.wait(delay - lead)
                        continue
                    if delay > _SPIN_LIMIT:
                        self._wakeup.wait(delay)
                        continue
                    deadline = heap[0][0]
                    while time.monotonic() < deadline:
                        pass
                due, _, item = heapq.heappop(heap)
                if item._delivery is _FIRED or due < item._deadline:
                    continue  # fired, or moved later by reschedule() (a stale entry)
                if isinstance(item, Callback):
                    self._run_callback(item)
                    continue
                if (
                    isinstance(item, WatchedScope) and item._deadline_calls
                    and self._run_deadline_callbacks(item)
                ):
                    continue
                if not self._try_fire(item):
                    item._mark_overdue()  # and if the scope exits first, its exit raises
                    # Look again soon, then less often: after half as long as it is overdue.
                    now = time.monotonic()
                    retry = min(max((now - item._deadline) / 2, _RETRY_MIN), _RETRY_MAX)
                    heapq.heappush(heap, (now + retry, next(self._sequence), item))

    def _run_callback(self, callback: Callback) -> None:
        """Run a `call_at` callback on this thread, without holding the lock."""
        callback._delivery = _FIRED
        callback._armed = False
        self._lock.release()
        try:
            callback.function()
        except BaseException:  # a callback must not take the watchdog down with it
            logger.exception("celery-timeouts: watchdog callback %r failed", callback.function)
        finally:
            self._lock.acquire()

    def _run_deadline_callbacks(self, watched: WatchedScope) -> bool:
        """A scope's `on_timeout` callbacks go first, on this thread, without the lock
        (they may block a moment, or time out a scope themselves). True if they ran:
        then the scope is back in the heap, to fire once they are done."""
        calls = take_deadline_calls(watched.scope)
        if not calls:
            return False
        self._lock.release()
        try:
            for handle in calls:
                handle._run()
        finally:
            self._lock.acquire()
        if watched._armed:
            heapq.heappush(self._heap, (time.monotonic(), next(self._sequence), watched))
        return True

    # -- timers and deliveries for other parts of the library (celery_timeouts.compat) --

    def call_at(self, deadline: float, function: Callable[[], object]) -> Callback:
        """Run `function` on the watchdog thread at `deadline` (time.monotonic)."""
        callback = Callback(deadline, function)
        self._push(callback)
        return callback

    def deliver(
        self, thread_id: int, exception: BaseException, entry_frame: FrameType | None
    ) -> Delivery:
        """Raise `exception` in thread `thread_id` as soon as it can land in user code.

        It follows the timeouts' landing rules: never inside the library's own code, and
        on 3.13 never where a loop back-jump would skip the handlers of the frames from
        the thread's current one out to `entry_frame`. `cancel` withdraws it until it lands.
        """
        if _INJECTION_REFUSED is not None:
            raise BackendUnavailable(f"cannot raise in another thread: {_INJECTION_REFUSED}")
        delivery = Delivery(thread_id, exception, entry_frame)
        self._push(delivery)
        return delivery

    @protected
    def take_delivery(self, delivery: Delivery) -> bool:
        """The target thread raises `delivery` itself (it waits in a patched blocking call,
        where nothing is injected): True if it is the caller's to raise, and then it is
        never injected; False if it was injected or withdrawn already."""
        with self._lock:
            if not delivery._armed or delivery._delivery is _FIRED:
                return False
            delivery._mark_fired()
            self._take_out(delivery, delivery)
            delivery._entry_frame = None
        return True

    @protected
    def cancel(self, item: Callback | Delivery) -> None:
        """Cancel a callback or withdraw a delivery; a no-op once it ran or landed."""
        with self._lock:
            self._take_out(item, item if isinstance(item, Delivery) else None)
            item._entry_frame = None

    def watch_next_instruction(
        self,
        thread_id: int,
        scope: TimeoutScope,
        frame: FrameType,
        fire: Callable[[], BaseException],
        runs_here: Callable[[], bool],
        until: FrameType | None = None,
    ) -> bool:
        """Have `fire()` raised at thread `thread_id`'s next safe instruction, in
        `frame` or the frames out to `until` (3.12+, `instruction_events`), where
        `runs_here()` says yes: for the green guard, which has no injection of its own.
        False, asking nothing, when the lock is busy, another delivery is pending there
        or sys.monitoring has no tool id: try again later."""
        if not self._lock.acquire(False):
            return False
        try:
            deliveries = self._next_instruction
            if deliveries.busy_with_another(thread_id, scope) or not deliveries.available():
                return False
            deliveries.watch(thread_id, scope, frame, until or frame, fire, runs_here)
            return True
        finally:
            self._lock.release()

    @protected
    def withdraw_next_instruction(self, thread_id: int, scope: TimeoutScope) -> None:
        """Withdraw what `watch_next_instruction` or `inject_where_it_runs` asked for,
        unless it landed already."""
        with self._lock:
            self._withdraw(thread_id, scope)

    def _push(self, item: Callback | Delivery) -> None:
        entry: tuple[float, int, _Timed] = (item._deadline, next(self._sequence), item)
        with self._lock:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._start_thread()
            elif self._heap[0] is entry:
                self._wakeup.notify()

    def _try_fire(self, item: WatchedScope | Delivery) -> bool:
        """Inject the timeout into the item's thread if it can only land in the body."""
        thread_id = item._thread_id
        if thread_id in self._pending:
            return False
        scope = item.scope if isinstance(item, WatchedScope) else None
        delivered: _Delivered = item.scope if isinstance(item, WatchedScope) else item
        frame = sys._current_frames().get(thread_id)
        if frame is None:  # the thread is gone
            item._armed = False
            self._next_instruction.withdraw(thread_id, delivered)
            return True
        if isinstance(item, WatchedScope) and item.not_running(frame):
            return False  # a generator's body, say: delivered once it runs, or at its exit
        entry_frame = item._entry_frame
        landing = _landing(frame, entry_frame)
        if landing is _LATER:
            return False
        if self._next_instruction.pending_in(thread_id):
            # A delivery is pending there: inject nothing beside it (it would land
            # twice), but keep watching the frames the thread enters.
            landing = _AT_NEXT_INSTRUCTION
        body_runs: Callable[[], bool] | None = None
        if scope is not None and entered_in_generator(scope):
            body_runs = functools.partial(body_runs_in, scope)
            if _DELIVERED_AT_NEXT_CHECK:
                # 3.13+ raises an injection at the thread's next check, which may come
                # after the generator has yielded, in its consumer: raise it from an
                # instruction of the generator's body instead, when that body runs (or
                # at the scope's exit).
                landing = _AT_NEXT_INSTRUCTION
        if landing is _AT_NEXT_INSTRUCTION:
            deliveries = self._next_instruction
            if not deliveries.busy_with_another(thread_id, delivered) and deliveries.available():
                try:
                    deliveries.watch(
                        thread_id, delivered, frame, entry_frame,
                        delivered._fire, body_runs,
                    )
                except Exception:  # sys.monitoring refused: never take the watchdog down
                    logger.exception("celery-timeouts: sys.monitoring failed; timeouts that "
                                     "meet a 3.13 loop back-jump are raised at exit instead")
                    deliveries.disable()
            return False  # retried: frames the thread enters meanwhile get watched too
        return self._inject(thread_id, delivered, frame)

    def _inject(self, thread_id: int, delivered: _Delivered, frame: FrameType) -> bool:
        """Have the thread, paused at `frame`, raise the timeout there; False if it moved
        meanwhile (the injection taken back). The lock is held."""
        position = (frame, frame.f_lasti)
        landed = functools.partial(self._landed, thread_id, delivered)
        if isinstance(delivered, Delivery):
            set_async_exc(thread_id, raising_on_landing(delivered._exception, landed))
        else:
            set_async_exc(thread_id, injectable(delivered, landed))
        # If the target moved while we were deciding, take it back and try again.
        frame_now = sys._current_frames().get(thread_id)
        if frame_now is None or (frame_now, frame_now.f_lasti) != position:
            clear_async_exc(thread_id, None)
            return False
        self._pending[thread_id] = delivered
        delivered._mark_fired()
        return True

    def inject_where_it_runs(self, thread_id: int, scope: TimeoutScope) -> bool:
        """Raise `scope`'s timeout in thread `thread_id` right where it is paused, if that
        is inside the scope's `with` (its entry frame is on the stack) and the exception
        can land only there: Python 3.10 to 3.12 raise an injection where the thread was
        interrupted. For the green guard without signals, on 3.10 and 3.11 (3.12+ use
        `watch_next_instruction`). False, injecting nothing, if it cannot now: the lock
        is busy, something is pending there, or the place is not safe; try again later."""
        if _DELIVERED_AT_NEXT_CHECK or not self._lock.acquire(False):
            return False
        try:
            frame = sys._current_frames().get(thread_id)
            if (
                frame is None
                or thread_id in self._pending
                or self._next_instruction.pending_in(thread_id)
                or not on_stack(scope._entry_frame, frame)
                or _landing(frame, scope._entry_frame) is not _NOW
            ):
                return False
            return self._inject(thread_id, scope, frame)
        finally:
            self._lock.release()

    def _landed(self, thread_id: int, item: _Delivered) -> None:
        """Runs in the target thread where the injection lands: nothing is pending now,
        so the watchdog may deliver the next deadline of that thread (an outer scope's,
        say, while the body goes on after catching a catchable scope's exception)."""
        pending = self._pending  # only this thread and the lock holder touch its entry
        if pending.get(thread_id) is item:
            pending.pop(thread_id, None)

    def _after_fork_in_child(self) -> None:
        # Only the forking thread survives; keep its scopes, drop the rest.
        me = native_thread_id()
        survivors = [entry[2] for entry in self._heap if entry[2]._armed]
        deliveries = self._next_instruction
        self._init_state()
        deliveries.reset()
        deliveries.lock = self._lock
        self._next_instruction = deliveries  # it holds the sys.monitoring tool id
        for item in survivors:
            if item._thread_id == me:
                self._heap.append((item._deadline, next(self._sequence), item))
            else:
                item._armed = False
        heapq.heapify(self._heap)
        if self._heap:
            self._start_thread()


_shared: WatchdogBackend | None = None
_creating = threading.Lock()


def shared_watchdog() -> WatchdogBackend:
    """The process's one watchdog: the thread backend, and the timer and delivery service
    of the green guard, compat, `celery_timeouts.blocking` and the threads pool."""
    global _shared
    if _shared is None:
        with _creating:
            if _shared is None:
                _shared = WatchdogBackend()
    return _shared
