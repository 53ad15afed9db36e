"""An I/O-bound Celery app for ``-P threads --autoscale``: fetches with time limits.

The worker reads its broker from the environment (`configure_from_env`): `run.py` starts
it on a throw-away filesystem broker. `enable_time_limits(app)` is the only line that
celery-timeouts adds; without it ``-P threads`` ignores both limits and `--autoscale`
crashes the worker.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from celery_timeouts import enable_time_limits
from celery_timeouts.demo.workers import configure_from_env

app = configure_from_env(Celery("fetcher"))
enable_time_limits(app)


@app.task(soft_time_limit=2, time_limit=3)
def fetch(url: str) -> dict[str, Any]:
    """GET `url` and return its size. No socket timeout, as much real code forgets: a
    server that never answers would hold the thread for ever. The soft limit ends the
    read where it waits (`enable_time_limits` turns on `celery_timeouts.blocking` on
    ``-P threads``), so the task fails with `SoftTimeLimitExceeded` at 2 s."""
    started = time.monotonic()
    with urllib.request.urlopen(url) as response:
        body = response.read()
    return {"bytes": len(body), "seconds": round(time.monotonic() - started, 2)}


@app.task(soft_time_limit=1.5, time_limit=4)
def download(url: str, folder: str) -> dict[str, Any]:
    """Stream `url` into a ``.part`` file in `folder`, chunk by chunk.

    Each read returns to Python within a moment, so the soft limit lands here: the task
    removes its partial file and reports how far it got, instead of leaving junk behind.
    """
    handle, part_path = tempfile.mkstemp(dir=folder, prefix="download-", suffix=".part")
    part = Path(part_path)
    received = 0
    try:
        with os.fdopen(handle, "wb") as file, urllib.request.urlopen(url, timeout=10) as response:
            while chunk := response.read(1024):
                file.write(chunk)
                received += len(chunk)
    except SoftTimeLimitExceeded:
        part.unlink()
        return {"status": "cleaned up", "bytes": received, "partial_file_left": part.exists()}
    part.rename(part.with_suffix(""))
    return {"status": "complete", "bytes": received}
