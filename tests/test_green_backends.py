"""gevent and eventlet in real monkey-patched processes: 100 greenlets, each its own limit."""

from __future__ import annotations

import json

import pytest

from conftest import run_python

CODE = """
import json, sys, time
library = sys.argv[-1] if False else {library!r}
if library == "gevent":
    from gevent import monkey; monkey.patch_all()
    import gevent
    spawn, wait_all = gevent.spawn, lambda gs: [g.get() for g in gs]
else:
    import eventlet; eventlet.monkey_patch()
    spawn, wait_all = eventlet.spawn, lambda gs: [g.wait() for g in gs]
from celery_timeouts import TaskTimeout, portable_timeout, detect_backend

def one(index):
    limit = 0.2 + (index % 4) * 0.1
    started = time.monotonic()
    try:
        with portable_timeout(limit) as scope:
            time.sleep(10)  # patched: yields to the hub
    except TaskTimeout:
        return [scope.backend, time.monotonic() - started - limit]
    return ["not fired", 0]

started = time.monotonic()
results = wait_all([spawn(one, i) for i in range(100)])
print(json.dumps({{"total": time.monotonic() - started, "results": results,
                   "backend": detect_backend().name}}))
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_hundred_greenlets_fire_in_parallel(library: str) -> None:
    completed = run_python(CODE.format(library=library))
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    backends = {backend for backend, _ in report["results"]}
    assert backends == {library}, backends
    assert max(late for _, late in report["results"]) < 0.5
    assert report["total"] < 2.0  # in parallel: about the longest limit, not the sum
