"""Backend registry and selection: `auto` picks by context and says why.

An explicitly requested backend that cannot run here raises `BackendUnavailable`
naming the backend, the reason and the fix; it never silently switches.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, NamedTuple

from .._context import (
    NO_SIGNALS,
    eventlet_context,
    gevent_context,
    is_main_thread,
    signals_setting_error,
)
from .._interpreter import MECHANISMS
from .._validation import AUTO, validate_backend
from ..exceptions import BackendUnavailable
from .base import Backend

ENV_VAR = "CELERY_TIMEOUTS_BACKEND"
_SIGNALS = NO_SIGNALS is None  # SIGALRM may time the main thread
# A bad CELERY_TIMEOUTS_SIGNALS: raised by the first scope (and by a worker at start-up).
_SIGNALS_SETTING_ERROR = signals_setting_error()

_instances: dict[str, Backend] = {}
_creating = threading.RLock()


class BackendChoice(NamedTuple):
    """What `auto` picks in the current context, and why."""

    name: str
    reason: str


def get_backend(name: str) -> Backend:
    """The shared instance of backend `name` (imported lazily, created once)."""
    backend = _instances.get(name)
    if backend is None:
        with _creating:
            backend = _instances.get(name)
            if backend is None:
                backend = _instances[name] = _create(name)
    return backend


def _create(name: str) -> Backend:
    if name == "signal":
        from .sigalrm import SignalBackend

        return SignalBackend()
    if name == "thread":
        from .watchdog import shared_watchdog

        return shared_watchdog()
    if name == "gevent":
        try:
            from .gevent_timer import GeventBackend
        except ImportError as error:
            raise BackendUnavailable(
                f"backend='gevent' needs gevent ({error}); "
                f"pip install 'celery-timeouts[gevent]'"
            ) from None
        return GeventBackend()
    if name == "eventlet":
        try:
            from .eventlet_timer import EventletBackend
        except ImportError as error:
            raise BackendUnavailable(
                f"backend='eventlet' needs eventlet ({error}); "
                f"pip install 'celery-timeouts[eventlet]'"
            ) from None
        return EventletBackend()
    if name == "asyncio":
        from .asyncio_cancel import AsyncioBackend

        return AsyncioBackend()
    raise ValueError(validate_backend(name))  # unreachable for validated names


def detect_backend(*, coroutine: bool = False) -> BackendChoice:
    """What `backend='auto'` would use here, and why.

    Order: a coroutine -> asyncio; the `CELERY_TIMEOUTS_BACKEND` override; a gevent
    greenlet -> gevent; an eventlet green thread -> eventlet; the main thread with
    SIGALRM -> signal; otherwise -> thread. Raises ValueError for a bad override.
    """
    if coroutine:
        return BackendChoice("asyncio", "the timed code is a coroutine")
    override = _env_backend()
    choice = _auto_choice()
    if override is None:
        return choice
    reason = (
        f"set by the environment variable {ENV_VAR}={os.environ.get(ENV_VAR)!r} "
        f"(without it, auto would pick {choice.name!r}: {choice.reason})"
    )
    try:
        unavailable = _override_refusal(override)
    except BackendUnavailable as error:
        unavailable = str(error)
    if unavailable is not None:
        reason += f"; scopes entered here raise BackendUnavailable: {unavailable}"
    return BackendChoice(override, reason)


def _auto_choice() -> BackendChoice:
    name = _auto_name()
    if name == "gevent":
        reason = gevent_context() or ""
    elif name == "eventlet":
        reason = eventlet_context() or ""
    elif name == "signal":
        reason = "main thread of the main interpreter: SIGALRM with setitimer"
    elif is_main_thread():
        reason = f"main thread, but {NO_SIGNALS}: the watchdog thread"
    else:
        reason = "not the main thread: SIGALRM cannot reach it, so the watchdog thread"
        if MECHANISMS.injection_refused is not None:
            reason += f"; scopes entered here raise BackendUnavailable: " \
                f"{MECHANISMS.injection_refused}"
        elif MECHANISMS.unverified is not None:
            reason += f"; {MECHANISMS.unverified}"
    return BackendChoice(name, reason)


def validate_environment() -> str | None:
    """The backend `CELERY_TIMEOUTS_BACKEND` asks for, or None; ValueError if it names
    none, or if `CELERY_TIMEOUTS_SIGNALS` is neither on nor off (a worker checks this at
    start-up, a script at its first scope)."""
    if _SIGNALS_SETTING_ERROR is not None:
        raise ValueError(_SIGNALS_SETTING_ERROR)
    return _env_backend()


_env_cache: tuple[str, str | None] = ("", None)
# os.environ.get re-encodes the key on every call; the mapping underneath is the same
# data, already encoded (what it saves: benchmarks/bench_hot_path.py).
_environ_data: dict[Any, Any] | None = getattr(os.environ, "_data", None)
_environ_key: Any = ENV_VAR
if _environ_data is not None:
    _environ_key = os.environ.encodekey(ENV_VAR)


def _env_backend() -> str | None:
    global _env_cache
    raw: str | None
    if _environ_data is not None:
        encoded = _environ_data.get(_environ_key)
        if not encoded:
            return None
        raw = os.environ.decodevalue(encoded)
    else:
        raw = os.environ.get(ENV_VAR)
    if not raw:
        return None
    if _env_cache[0] != raw:
        name = validate_backend(raw, origin=f"environment variable {ENV_VAR}")
        _env_cache = (raw, None if name == AUTO else name)
    return _env_cache[1]


def _auto_name() -> str:
    """The hot path of `detect_backend()`: the name only, no reason strings."""
    modules = sys.modules
    if "gevent" in modules and gevent_context() is not None:
        return "gevent"
    if "eventlet" in modules and eventlet_context() is not None:
        return "eventlet"
    if _SIGNALS and is_main_thread():
        return "signal"
    return "thread"


def resolve_if_possible(requested: str, coroutine: bool) -> Backend | None:
    """The backend for a scope without a limit, or None where none can run: such a
    scope times nothing, so it enters anyway (it just cannot be given a deadline)."""
    try:
        return resolve(requested, coroutine)
    except (BackendUnavailable, ValueError):
        return None


def resolve(requested: str, coroutine: bool = False) -> Backend:
    """The backend to use for a scope entered now; raises BackendUnavailable (and
    ValueError for a bad `CELERY_TIMEOUTS_BACKEND`)."""
    if requested == AUTO:
        if coroutine:
            requested = "asyncio"
        else:
            if _SIGNALS_SETTING_ERROR is not None:
                raise ValueError(_SIGNALS_SETTING_ERROR)
            override = _env_backend()
            if override is not None:
                return _overriding(override)
            requested = _auto_name()
        # auto only picks backends that can run here (asyncio checks for a task on arm)
        backend = _instances.get(requested)
        if backend is not None:
            return backend
    if coroutine != (requested == "asyncio"):
        raise BackendUnavailable(_mismatch(requested, coroutine))
    backend = get_backend(requested)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(f"backend={requested!r} cannot run here: {reason}")
    return backend


def _overriding(name: str) -> Backend:
    """The backend the environment override names, checked like an explicit choice."""
    refusal = _override_refusal(name)
    if refusal is not None:
        raise BackendUnavailable(refusal)
    return _instances[name]


def _override_refusal(name: str) -> str | None:
    """Why the overriding backend cannot run here (None if it can); creates it."""
    source = f"(from the environment variable {ENV_VAR})"
    fix = f"; or unset {ENV_VAR} to let auto choose"
    if name == "asyncio":
        return f"{_mismatch(name, coroutine=False)} {source}{fix}"
    reason = get_backend(name).unavailable_reason()
    if reason is None:
        return None
    return f"backend={name!r} {source} cannot run here: {reason}{fix}"


def _mismatch(requested: str, coroutine: bool) -> str:
    if coroutine:
        return (
            f"backend={requested!r} cannot time a coroutine: it would interrupt whatever "
            f"task the event loop runs at the deadline; use backend='asyncio' or 'auto'"
        )
    return (
        "backend='asyncio' times coroutines only; use 'async with portable_timeout(...)' "
        "or decorate an 'async def' function, or pick backend='auto'"
    )


__all__ = [
    "ENV_VAR", "Backend", "BackendChoice", "detect_backend", "get_backend", "resolve",
    "validate_environment",
]
