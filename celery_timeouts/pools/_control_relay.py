"""Hear `revoke(terminate=True)` while the worker itself cannot.

The gevent and eventlet pools read control commands in a greenlet, and solo reads them
in the main thread between tasks: a task that never yields (on solo, any task) keeps
them unread until it ends, so a stock `revoke --terminate` waits for the very task it
should stop. The relay listens to the worker's broadcast (pidbox) exchange on a
connection of its own, in an OS thread, and stops the running tasks a `revoke` with
`terminate` names at once, through the pool's `terminate_job` (thread-safe: it cancels
the job's scopes). Celery's own handling of the same message follows in the worker as
soon as the worker is free again: REVOKED stored, the message acknowledged,
`task_revoked` sent, the reply.

While a solo worker runs a task, the relay also answers `ping` and `inspect active`
with Celery's own handlers, and the worker's late answer to the same request is
dropped. Only then: a `ping` answered by a side thread while the worker's loop is stuck
elsewhere would fool the liveness checks people build on it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import sys
import time
from typing import Any

from .._context import is_green_patched, os_thread_primitives

logger = logging.getLogger("celery_timeouts.pools")

_DRAIN_TIMEOUT = 1.0  # seconds between looks at the stop flag
_RETRY_AFTER = 2.0  # after a connection error
_ANSWERED_WHILE_BUSY = frozenset({"ping", "active"})
_REMEMBERED_TICKETS = 1024


class ControlRelay:
    """One worker's relay: started when the worker is ready, stopped with its pool."""

    def __init__(self, app: Any, hostname: str, pool: Any, node: Any = None) -> None:
        self._app = app
        self._hostname = hostname
        self._pool = pool
        self._node = node  # the worker's pidbox node: its handlers, state and replies
        self._channel: Any = None
        # A plain flag, read by the relay's OS thread: in a monkey-patched process a
        # threading.Event belongs to the main thread's hub.
        self._stopping = False
        # Tickets of requests the relay answered: the worker's own answer is dropped.
        self._answered: collections.deque[str] = collections.deque(maxlen=_REMEMBERED_TICKETS)
        if node is not None:
            self._keep_the_worker_from_answering_twice(node)

    def _keep_the_worker_from_answering_twice(self, node: Any) -> None:
        reply = node.reply
        answered = self._answered

        def reply_unless_answered(
            data: Any, exchange: Any, routing_key: Any, ticket: Any, **kwargs: Any
        ) -> Any:
            if ticket is not None and ticket in answered:
                return None
            return reply(data, exchange, routing_key, ticket, **kwargs)

        node.reply = reply_unless_answered

    def start(self) -> None:
        # An OS thread even where threading is monkey-patched: a greenlet would wait for
        # the very task it must stop.
        start_new_thread, _ = os_thread_primitives()
        start_new_thread(self._run, ())

    def stop(self) -> None:
        self._stopping = True

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._listen()
            except Exception as error:
                if self._stopping:
                    return
                _say(
                    logging.WARNING,
                    "celery-timeouts: the control relay lost its connection (%r); retrying "
                    "in %g s (revoke --terminate waits for the worker meanwhile)",
                    error, _RETRY_AFTER,
                )
                time.sleep(_RETRY_AFTER)  # this thread's own (hub's) sleep where patched

    def _listen(self) -> None:
        from kombu.entity import Queue
        from kombu.messaging import Consumer

        mailbox = self._app.control.mailbox
        # A queue of its own on the broadcast exchange: the worker's pidbox queue keeps
        # getting every message too (fanout), and handles it as usual. Named after the
        # node, as Celery names its pidbox queue, so that restarts of a worker do not
        # leave one binding each behind (the filesystem transport copies every
        # broadcast into every bound queue).
        queue = Queue(  # type: ignore[no-untyped-call]
            f"{self._hostname}.celery-timeouts.relay",
            exchange=mailbox.exchange, durable=False, auto_delete=True,
        )
        with self._app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=3)
            channel = self._channel = connection.channel()
            consumer = Consumer(  # type: ignore[no-untyped-call]
                channel, [queue], callbacks=[self._on_message], accept=["json"],
                no_ack=True,
            )
            with consumer:
                while not self._stopping:
                    with contextlib.suppress(TimeoutError):  # socket.timeout is one
                        connection.drain_events(timeout=_DRAIN_TIMEOUT)

    def _on_message(self, body: Any, message: Any) -> None:
        try:
            self._handle(body)
        except Exception as error:  # never take the relay down
            _say(
                logging.ERROR, "celery-timeouts: the control relay could not handle %r: %r",
                body, error,
            )

    def _handle(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        method = body.get("method")
        if method in _ANSWERED_WHILE_BUSY:
            self._answer_while_busy(method, body)
            return
        if method != "revoke":
            return
        arguments = body.get("arguments") or {}
        if not arguments.get("terminate") or not self._addressed_to_us(body):
            return
        from celery.platforms import signals
        from celery.worker import state

        wanted = arguments.get("task_id")
        ids = set(wanted) if isinstance(wanted, (list, tuple, set)) else {wanted}
        signum = signals.signum(arguments.get("signal") or "TERM")
        began = time.monotonic()
        for request in list(state.active_requests):
            if (
                request.id in ids and request.time_start and request.worker_pid is not None
                # Only the job's scopes, which any thread may cancel: never the stock
                # fallbacks of terminate_job (killing a greenlet), which only the hub's
                # thread may run. A job that has just ended is left to Celery.
                and self._pool.running_jobs.terminate(request.worker_pid, signum)
            ):
                _say(
                    logging.INFO,
                    "celery-timeouts: terminating task %s (signal %d) for a revoke heard "
                    "while the worker is busy (%.3f s)",
                    request.id, signum, time.monotonic() - began,
                )

    def _answer_while_busy(self, method: str, body: dict[str, Any]) -> None:
        """Answer for a solo worker busy with a task, as the worker itself would."""
        node = self._node
        reply_to, ticket = body.get("reply_to"), body.get("ticket")
        if (
            node is None or not reply_to or not ticket
            or not getattr(self._pool, "busy_with_a_task", False)
            or not self._addressed_to_us(body)
        ):
            return
        try:
            reply = node.handle(method, body.get("arguments") or {})
        except Exception as error:
            reply = {"error": repr(error)}
        self._answered.append(ticket)
        node.mailbox._publish_reply(
            {self._hostname: reply}, reply_to["exchange"], reply_to["routing_key"], ticket,
            channel=self._channel, serializer=node.mailbox.serializer,
        )

    def _addressed_to_us(self, body: dict[str, Any]) -> bool:
        destination = body.get("destination")
        if destination:
            return self._hostname in destination
        pattern = body.get("pattern")
        if pattern:
            from kombu.matcher import match

            return bool(match(self._hostname, pattern, body.get("matcher")))  # type: ignore[arg-type]
        return True


def _say(level: int, message: str, *args: object) -> None:
    """Log from the relay's thread. In a gevent or eventlet process, logging's locks
    are the main hub's green locks, which another OS thread must never take (eventlet:
    "Cannot switch to a different thread", and the hub stalls): the record goes to the
    main hub's thread (gevent), or straight to stderr (eventlet)."""
    if not is_green_patched():
        logger.log(level, message, *args)
        return
    hub = _main_hub
    if hub is not None:
        hub.loop.run_callback_threadsafe(logger.log, level, message, *args)
        return
    line = f"[{logging.getLevelName(level)}] {message % args}\n".encode(errors="replace")
    with contextlib.suppress(OSError):
        _original_os_write(2, line)


_main_hub: Any = None  # the main thread's gevent hub, noted when the relay starts


def say_from_any_thread(message: str) -> None:
    """A line on stderr now, from any OS thread of any process, green or not: no
    logging lock is taken, and no hub has to run first."""
    with contextlib.suppress(OSError):
        _original_os_write(2, f"[WARNING] {message}\n".encode(errors="replace"))


def _original_os_write(fd: int, data: bytes) -> int:
    patcher = sys.modules.get("eventlet.patcher")
    write = patcher.original("os").write if patcher is not None else os.write
    return int(write(fd, data))


_relays: dict[int, ControlRelay] = {}


def start_relay_for(consumer: Any) -> ControlRelay | None:
    """`worker_ready` handler: a relay for the worker's pool, if it needs one."""
    pool = getattr(consumer, "pool", None)
    if not getattr(pool, "needs_control_relay", False):
        return None
    if not consumer.app.conf.worker_enable_remote_control:
        return None
    if not consumer.conninfo.supports_exchange_type("fanout"):
        return None  # no broadcast here: no remote control either
    global _main_hub
    gevent_hub = sys.modules.get("gevent.hub")
    if gevent_hub is not None and is_green_patched():
        _main_hub = gevent_hub.get_hub()  # here, in the main thread
    relay = ControlRelay(consumer.app, consumer.hostname, pool, _worker_node(consumer))
    previous = _relays.pop(id(pool), None)
    if previous is not None:
        previous.stop()
    _relays[id(pool)] = relay
    relay.start()
    return relay


def _worker_node(consumer: Any) -> Any:
    """The worker's own pidbox node (Celery's Control step), or None."""
    steps = getattr(getattr(consumer, "blueprint", None), "steps", None) or {}
    for step in steps.values():
        node = getattr(getattr(step, "box", None), "node", None)
        if node is not None:
            return node
    return None


def stop_relay_of(pool: Any) -> None:
    relay = _relays.pop(id(pool), None)
    if relay is not None:
        relay.stop()
