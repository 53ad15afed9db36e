"""The harness's own app: two trivial tasks that prove a worker takes work and answers."""

from __future__ import annotations

import time

from celery import Celery

from celery_apps.common import configure_from_env

app = configure_from_env(Celery("harness_app"))


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
