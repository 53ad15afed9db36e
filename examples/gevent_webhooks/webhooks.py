"""A webhook sender for ``-P gevent``: each event goes to all its subscribers at once.

The worker reads its broker from the environment (`configure_from_env`): `run.py` starts
it on a throw-away filesystem broker. `enable_time_limits(app)` is the line from
celery-timeouts: stock Celery's gevent pool has no soft limit, so a subscriber that
never answers would hold the task until its hard limit failed it, and every delivery
already made would be lost with it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import gevent.pool
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from celery_timeouts import enable_time_limits
from celery_timeouts.demo.workers import configure_from_env

app = configure_from_env(Celery("webhooks"))
enable_time_limits(app)
logger = get_task_logger(__name__)

# Per call, in case a subscriber hangs with no task limit around it; the task's soft
# limit is what gives up first.
CALL_TIMEOUT = 30


def post(url: str, event: dict[str, Any]) -> int:
    """POST `event` as JSON; the HTTP status. `urllib` is gevent's once Celery has
    monkey-patched the worker for ``-P gevent``, so each call only blocks its greenlet."""
    request = urllib.request.Request(
        url, data=json.dumps(event).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=CALL_TIMEOUT) as response:
        status: int = response.status
        return status


@app.task(soft_time_limit=1.5, time_limit=4)
def notify(event: dict[str, Any], urls: list[str]) -> dict[str, Any]:
    """Deliver `event` to every URL in parallel and report what became of each.

    At the soft limit it stops waiting: the calls still open are killed (closing their
    connections), each is logged as given up, and the deliveries made so far are
    returned instead of being lost to a hard-limit failure.
    """
    started = time.monotonic()
    calls = gevent.pool.Group()
    pending = {url: calls.spawn(post, url, event) for url in urls}
    try:
        calls.join()
    except SoftTimeLimitExceeded:
        calls.kill(block=True, timeout=1)
    report: dict[str, Any] = {"event": event["id"], "delivered": [], "failed": {}, "gave_up": []}
    for url, call in pending.items():
        if call.successful() and not isinstance(call.value, BaseException):
            report["delivered"].append(url)
        elif call.exception is not None:
            report["failed"][url] = f"{type(call.exception).__name__}: {call.exception}"
        else:
            report["gave_up"].append(url)
            logger.warning(
                "gave up on webhook %s for event %s after %.1f s",
                url, event["id"], time.monotonic() - started,
            )
    return report
