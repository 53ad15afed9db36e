"""What kind of execution context the caller is in: main thread, other thread, greenlet.

Kept free of gevent/eventlet imports: they are consulted only when the process has
already imported them.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

_original_get_ident: Callable[[], int] | None = None


def native_thread_id() -> int:
    """The OS thread's id as CPython knows it, even under gevent/eventlet monkey-patching."""
    get_ident = _original_get_ident or _find_original_get_ident()
    return get_ident()


def _find_original_get_ident() -> Callable[[], int]:
    global _original_get_ident
    get_ident: Callable[[], int] = _os_thread_function("get_ident")
    unpatchable = "gevent" not in sys.modules and "eventlet" not in sys.modules
    if get_ident is _thread.get_ident and unpatchable:
        _original_get_ident = get_ident  # final: nothing can have patched it
    return get_ident


def _os_thread_function(name: str) -> Any:
    """`_thread.<name>` as the OS provides it, even after gevent/eventlet monkey-patching."""
    function = getattr(_thread, name)
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None:
        function = _if_builtin(gevent_monkey.get_original("_thread", name), function)
    eventlet_patcher = sys.modules.get("eventlet.patcher")
    if eventlet_patcher is not None:
        function = _if_builtin(getattr(eventlet_patcher.original("_thread"), name), function)
    return function


def _if_builtin(original: Any, otherwise: Any) -> Any:
    """`original` if it is the C function the OS thread module has (never a stand-in,
    such as a test's mock of gevent), else `otherwise`."""
    return original if isinstance(original, types.BuiltinFunctionType) else otherwise


def os_thread_primitives() -> tuple[Callable[..., int], Callable[[], Any]]:
    """`start_new_thread` and `allocate_lock` as the OS provides them: the watchdog must
    stay a real thread, with real locks, so that it runs while a greenlet holds the CPU."""
    return _os_thread_function("start_new_thread"), _os_thread_function("allocate_lock")


def is_green_patched() -> bool:
    """True once gevent or eventlet has monkey-patched the thread module."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("threading"):
        return True
    eventlet_patcher = sys.modules.get("eventlet.patcher")
    return eventlet_patcher is not None and bool(eventlet_patcher.is_monkey_patched("thread"))


def os_lock() -> Any:
    """A lock of the OS, never a green one (see `os_thread_primitives`)."""
    return os_thread_primitives()[1]()


def is_main_thread() -> bool:
    """True in the interpreter's main OS thread, where SIGALRM handlers run: the one
    definition of "main thread" in the package."""
    # Native (kernel) ids: gevent's monkey-patching gives the main thread a greenlet's
    # `ident`, but leaves it its OS thread's `native_id`. Kept, not looked up:
    # `threading.main_thread()` costs 0.3 us, and patched blocking calls ask every time.
    return _get_native_id() == _main_native_id


_get_native_id = _thread.get_native_id
_main_native_id = threading.main_thread().native_id


def _after_fork_in_child() -> None:
    global _main_native_id
    # threading's own after-fork hook, registered before ours, made the forking thread
    # the main one.
    _main_native_id = threading.main_thread().native_id


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def gevent_context() -> str | None:
    """Why gevent's timer can interrupt the current greenlet, or None if it cannot."""
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return None
    current = _getcurrent()
    if isinstance(current, gevent.Greenlet):  # the hub is never one: the common case first
        return "running in a gevent Greenlet"
    hub = gevent._hub_local.get_hub_if_exists()
    if hub is not None and current is hub:
        return None
    monkey = sys.modules.get("gevent.monkey")
    patched = monkey is not None and monkey.is_module_patched("threading")
    if patched and (hub is not None or is_main_thread()):
        return "running in a greenlet of a gevent-monkey-patched process"
    return None


_eventlet_modules: tuple[Any, Any, Any] | None = None


def eventlet_context() -> str | None:
    """Why eventlet's timer can interrupt the current green thread, or None."""
    global _eventlet_modules
    if "eventlet" not in sys.modules:
        return None
    if _eventlet_modules is None:
        from eventlet import greenthread, hubs, patcher

        _eventlet_modules = (greenthread.GreenThread, hubs._threadlocal, patcher)
    green_thread, hub_local, patcher = _eventlet_modules
    current = _getcurrent()
    if isinstance(current, green_thread):  # the hub's greenlet is never one
        return "running in an eventlet GreenThread"
    hub = hub_local.__dict__.get("hub")
    if hub is not None and current is hub.greenlet:
        return None
    if patcher.is_monkey_patched("thread"):
        return "running in a green thread of an eventlet-monkey-patched process"
    return None


def _getcurrent() -> object:
    # greenlet is imported whenever gevent or eventlet is.
    global _getcurrent
    getcurrent: Callable[[], object] = sys.modules["greenlet"].getcurrent
    _getcurrent = getcurrent  # later calls go straight to greenlet
    return getcurrent()


SIGNALS_ENV_VAR = "CELERY_TIMEOUTS_SIGNALS"


def _signals_refusal() -> str | None:
    """Why this process uses no signal (SIGALRM, setitimer, SIGURG), or None if it may.
    Read once, at import: `CELERY_TIMEOUTS_SIGNALS=off`, or a platform without them
    (Windows). A value other than on/off is reported by `signals_setting_error`."""
    setting = os.environ.get(SIGNALS_ENV_VAR, "").strip().lower()
    if setting == "off":
        return f"signals are turned off ({SIGNALS_ENV_VAR}=off)"
    for name in ("SIGALRM", "setitimer", "pthread_kill"):
        if not hasattr(signal, name):
            return f"this platform has no signal.{name}"
    return None


def signals_setting_error() -> str | None:
    """A message naming a bad `CELERY_TIMEOUTS_SIGNALS` value and the fix, or None."""
    raw = os.environ.get(SIGNALS_ENV_VAR, "")
    if raw.strip().lower() in ("", "on", "off"):
        return None
    return (
        f"environment variable {SIGNALS_ENV_VAR}={raw!r} is not a setting: use 'off' (no "
        f"SIGALRM, setitimer nor SIGURG: every limit through the watchdog thread) or "
        f"'on' (the default), or unset it"
    )


NO_SIGNALS: str | None = _signals_refusal()  # why signals are not used here, or None


def signal_unavailable_reason() -> str | None:
    if NO_SIGNALS is not None:
        return f"{NO_SIGNALS}; use backend='thread' or 'auto'"
    if not is_main_thread():
        name = threading.current_thread().name
        return (
            f"SIGALRM is delivered only to the main thread, and this is thread {name!r}; "
            f"use backend='thread' or 'auto'"
        )
    return None
