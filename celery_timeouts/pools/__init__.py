"""Celery pools that enforce `soft_time_limit` and `time_limit`.

Each is a subclass of Celery's own pool for the same `-P` name. `enable_time_limits(app)`
swaps them in at worker start-up; to choose one explicitly:

    CELERY_CUSTOM_WORKER_POOL=celery_timeouts.pools.threads:TaskPool celery -A proj worker -P custom

(likewise `.solo`, `.gevent`, `.eventlet`; gevent and eventlet also need Celery's
monkey-patching, which only `-P gevent`/`-P eventlet` do: prefer `enable_time_limits`).
"""

from __future__ import annotations

# Celery's stock pool class -> ours ("module:Class" both).
REPLACEMENTS = {
    "celery.concurrency.solo:TaskPool": "celery_timeouts.pools.solo:TaskPool",
    "celery.concurrency.thread:TaskPool": "celery_timeouts.pools.threads:TaskPool",
    "celery.concurrency.gevent:TaskPool": "celery_timeouts.pools.gevent:TaskPool",
    "celery.concurrency.eventlet:TaskPool": "celery_timeouts.pools.eventlet:TaskPool",
}
