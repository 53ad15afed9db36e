"""`python -m celery_timeouts.scan PATH...`, the same as `celery-timeouts scan PATH...`."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
