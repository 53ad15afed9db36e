"""`enable_time_limits(app)`: the stock `celery worker` command, with limits on every pool."""

from __future__ import annotations

import importlib
import logging
import threading
import weakref
from typing import Any

from .pools import REPLACEMENTS
from .pools.options import PoolOptions, set_options

logger = logging.getLogger("celery_timeouts.pools")

_enabled: weakref.WeakSet[Any] = weakref.WeakSet()
_connect_lock = threading.Lock()
_connected = False


def enable_time_limits(
    app: Any,
    *,
    abandon_after: float = 0.5,
    max_abandoned_threads: int | None = None,
    eager: bool = False,
    interrupt_blocking: bool = True,
) -> None:
    """Make `soft_time_limit` and `time_limit` work on every pool of `app`'s workers.

    At worker start-up (Celery's `worker_init` signal, sent before the worker loads its
    pool) the stock solo, threads, gevent and eventlet pools are replaced by
    `celery_timeouts.pools` subclasses; prefork is left alone (billiard already enforces
    both limits, by killing the child). Call it once where the app is defined; calling
    it again only updates the options. Other apps in the process are not affected.

    `abandon_after`: seconds after its hard limit that a `-P threads` task stuck in C
    is reported as `TimeLimitExceeded` and its thread replaced.
    `max_abandoned_threads`: how many such threads may still be running before the
    worker asks for a warm restart (SIGHUP, Celery's restart: it re-executes the
    `celery` command); on gevent and eventlet, how many tasks that still run 3 s after
    their hard limit was delivered again and again. None (the default) never asks.
    `eager`: also enforce the limits on eager tasks (`task_always_eager`, `.apply()`),
    in the calling thread, so a test suite can exercise a task's soft-limit clean-up.
    `interrupt_blocking`: on `-P threads`, patch the stdlib's blocking calls
    (`celery_timeouts.blocking`: `time.sleep`, sockets, `select`, queue and event waits,
    `subprocess`) so that both limits reach a task blocked in one, and the hard limit
    gives its thread back (and kills the child processes it started). False keeps the
    stdlib as it is: such a task then sees no soft limit, and its thread is abandoned.

    Raises TypeError when `app` is not a `celery.Celery` instance.
    """
    global _connected
    _require_app(app)
    options = PoolOptions(
        abandon_after=abandon_after, max_abandoned_threads=max_abandoned_threads, eager=eager,
        interrupt_blocking=interrupt_blocking,
    )
    set_options(app, options)
    if eager:
        from .pools import eager as eager_tasks

        eager_tasks.install()
    _enabled.add(app)
    with _connect_lock:
        if not _connected:
            from celery import signals

            signals.worker_init.connect(_use_our_pool, weak=False)
            signals.worker_ready.connect(_start_control_relay, weak=False)
            _connected = True


def _require_app(app: object) -> None:
    """Reject anything but a Celery app before it reaches the weak set (which would
    fail on a string with a TypeError about weak references)."""
    from celery import Celery

    if not isinstance(app, Celery):
        raise TypeError(
            f"enable_time_limits() needs the Celery app object, got {app!r} of type "
            f"{type(app).__name__}; pass the app itself, e.g. app = Celery('proj'); "
            f"enable_time_limits(app)"
        )


def _use_our_pool(sender: Any = None, **_: Any) -> None:
    """worker_init handler: swap the worker's stock pool class for ours."""
    worker = sender
    if worker is None or getattr(worker, "app", None) not in _enabled:
        return
    from .backends import validate_environment

    try:
        validate_environment()
    except ValueError as error:
        # Celery logs and swallows an Exception raised by a signal handler, and the
        # worker would then take tasks that fail at their first scope: stop it here.
        raise SystemExit(f"celery-timeouts: the worker cannot start: {error}") from None
    from celery.concurrency import get_implementation

    stock = get_implementation(worker.pool_cls)
    name = f"{stock.__module__}:{stock.__qualname__}"
    if name in REPLACEMENTS.values():
        return  # already ours (-P custom with CELERY_CUSTOM_WORKER_POOL)
    replacement = REPLACEMENTS.get(name)
    if replacement is None:
        # Logging is not set up yet at worker_init: say it once the worker is ready.
        from celery import signals

        def report(sender: Any = None, **_: Any) -> None:
            if name == "celery.concurrency.prefork:TaskPool":
                logger.info(
                    "celery-timeouts: prefork pool — soft and hard limits enforced by "
                    "Celery itself (left unchanged)"
                )
            else:
                logger.warning(
                    "celery-timeouts: pool %s is not one celery-timeouts knows; its time "
                    "limits are left as they are",
                    name,
                )

        signals.worker_ready.connect(report, weak=False, dispatch_uid="celery-timeouts-report")
        return
    module_name, class_name = replacement.split(":")
    worker.pool_cls = getattr(importlib.import_module(module_name), class_name)
    _name_auto_concurrency_after(worker, stock)


def _start_control_relay(sender: Any = None, **_: Any) -> None:
    """worker_ready handler: solo, gevent and eventlet hear `revoke --terminate` while
    a task holds the worker (see pools._control_relay)."""
    if sender is None or getattr(sender, "app", None) not in _enabled:
        return
    from .pools._control_relay import start_relay_for

    try:
        start_relay_for(sender)
    except Exception:  # the worker runs on; only a revoke waits for the task, as stock
        logger.exception("celery-timeouts: the control relay could not start")


def _name_auto_concurrency_after(worker: Any, stock: type) -> None:
    """With `--concurrency=auto`, Celery logs the pool by its `-P` alias, looked up from
    the pool class it resolves next; let that lookup see the stock class it replaces,
    so the line says `pool=threads`, not our class path. (Celery >= 5.7; a no-op before.)
    """
    resolve = getattr(worker, "_resolve_auto_concurrency", None)
    if resolve is None:
        return

    def resolve_as_stock() -> None:
        ours = worker.pool_cls
        worker.pool_cls = stock
        try:
            resolve()
        finally:
            worker.pool_cls = ours

    worker._resolve_auto_concurrency = resolve_as_stock
