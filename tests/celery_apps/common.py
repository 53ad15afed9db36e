"""Configure a test app from the environment, so a worker subprocess joins the test's broker.

The variables and settings are the demo's (`celery_timeouts.demo.workers`), which the
harness (tests/celery_harness.py) builds on: a `Broker` describes itself with them, and
every app module under celery_apps/ calls `configure_from_env` right after creating its
`Celery`.
"""

from __future__ import annotations

from celery_timeouts.demo.workers import (
    BROKER_URL,
    RESULT_BACKEND,
    TRANSPORT_OPTIONS,
    configure,
    configure_from_env,
)

__all__ = ["BROKER_URL", "RESULT_BACKEND", "TRANSPORT_OPTIONS", "configure", "configure_from_env"]
