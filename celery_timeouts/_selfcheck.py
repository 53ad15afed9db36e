"""`python -m celery_timeouts`: which backend each context gets, and one real timeout in each.

gevent and eventlet run in their own monkey-patched subprocesses, as they would in a
Celery worker, so the two never share a process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

LIMIT = 0.2


def _timed_here(body: Callable[[], object]) -> dict[str, Any]:
    """Run `body` (about 5 s) under a LIMIT scope here: which backend, and what happened."""
    from . import TaskTimeout, detect_backend, portable_timeout

    choice = detect_backend()
    started = time.monotonic()
    outcome = "ran to the end (NOT interrupted)"
    try:
        with portable_timeout(LIMIT):
            body()
    except TaskTimeout as error:
        outcome = f"TaskTimeout: {error}"
    return {
        "backend": choice.name,
        "reason": choice.reason,
        "outcome": outcome,
        "seconds": round(time.monotonic() - started, 3),
    }


def _spin() -> None:
    end = time.monotonic() + 5
    while time.monotonic() < end:
        pass


def _busy_until_timeout() -> dict[str, Any]:
    return _timed_here(_spin)


def _in_thread() -> dict[str, Any]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(_busy_until_timeout()))
    thread.start()
    thread.join()
    return result


def _in_asyncio() -> dict[str, Any]:
    from . import TaskTimeout, portable_timeout

    @portable_timeout(LIMIT)
    async def waits() -> None:
        await asyncio.sleep(5)

    started = time.monotonic()
    try:
        asyncio.run(waits())
        outcome = "ran to the end (NOT interrupted)"
    except TaskTimeout as error:
        outcome = f"TaskTimeout: {error}"
    return {
        "backend": "asyncio",
        "reason": "the timed code is a coroutine",
        "outcome": outcome,
        "seconds": round(time.monotonic() - started, 3),
    }


def _in_green(library: str) -> dict[str, Any]:
    """Run in a fresh interpreter: patch first, then time a greenlet that sleeps."""
    if library == "gevent":
        from gevent import monkey

        monkey.patch_all()
        import gevent

        spawn, join = gevent.spawn, (lambda g: g.get())
    else:
        import eventlet

        eventlet.monkey_patch()
        spawn, join = eventlet.spawn, (lambda g: g.wait())

    def work() -> dict[str, Any]:
        return _timed_here(lambda: time.sleep(5))  # patched: yields to the hub

    result: dict[str, Any] = join(spawn(work))  # type: ignore[no-untyped-call]
    return result


def _green_subprocess(library: str) -> dict[str, Any]:
    if importlib.util.find_spec(library) is None:
        hint = f"not installed: pip install celery-timeouts[{library}]"
        return {"backend": library, "outcome": hint}
    completed = subprocess.run(
        [sys.executable, "-m", "celery_timeouts._selfcheck", library],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if completed.returncode != 0:
        return {"backend": library, "outcome": f"FAILED: {completed.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def run() -> int:
    """Print one line per context; exit 1 if any timeout failed to fire."""
    print(f"celery-timeouts self-check: a CPU loop or a sleep under a {LIMIT} s limit\n")
    rows = [
        ("main thread", _busy_until_timeout()),
        ("worker thread", _in_thread()),
        ("asyncio task", _in_asyncio()),
        ("gevent greenlet", _green_subprocess("gevent")),
        ("eventlet green thread", _green_subprocess("eventlet")),
    ]
    failed = False
    for context, row in rows:
        seconds = f"after {row['seconds']:.3f} s" if "seconds" in row else ""
        print(f"{context:<22} backend={row['backend']:<9} {row['outcome']} {seconds}")
        if "reason" in row:
            print(f"{'':<22} why: {row['reason']}")
        failed = failed or not row["outcome"].startswith(("TaskTimeout", "not installed"))
    print("\nall timeouts fired" if not failed else "\nSOME TIMEOUTS DID NOT FIRE")
    return 1 if failed else 0


if __name__ == "__main__":
    print(json.dumps(_in_green(sys.argv[1])))
