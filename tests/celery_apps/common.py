"""Configure a test app from the environment, so a worker subprocess joins the test's broker.

The harness (tests/celery_harness.py) describes a broker with these variables; every app
module under celery_apps/ calls `configure_from_env` right after creating its `Celery`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from celery import Celery

BROKER_URL = "CT_BROKER_URL"
RESULT_BACKEND = "CT_RESULT_BACKEND"
TRANSPORT_OPTIONS = "CT_TRANSPORT_OPTIONS"


def configure(
    app: Celery, broker_url: str, result_backend: str, transport_options: Mapping[str, Any]
) -> Celery:
    """Point `app` at a broker with the settings every harness test relies on; return it."""
    app.conf.update(
        broker_url=broker_url,
        result_backend=result_backend,
        broker_transport_options=dict(transport_options),
        # A task is acknowledged when it starts: a worker killed mid-task does not get it back.
        task_acks_late=False,
        # One message at a time, so a slow task never holds the next one hostage.
        worker_prefetch_multiplier=1,
        # Results carry the task's name, args and worker, which tests inspect.
        result_extended=True,
        broker_connection_retry_on_startup=True,
    )
    return app


def configure_from_env(app: Celery, environ: Mapping[str, str] | None = None) -> Celery:
    """Configure `app` from CT_BROKER_URL, CT_RESULT_BACKEND and CT_TRANSPORT_OPTIONS (JSON).

    Raises RuntimeError naming the missing variable: such an app only runs under the harness.
    """
    environ = os.environ if environ is None else environ
    missing = [name for name in (BROKER_URL, RESULT_BACKEND) if not environ.get(name)]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not set: start {app.main} with start_worker() "
            "from tests/celery_harness.py"
        )
    return configure(
        app,
        environ[BROKER_URL],
        environ[RESULT_BACKEND],
        json.loads(environ.get(TRANSPORT_OPTIONS) or "{}"),
    )
