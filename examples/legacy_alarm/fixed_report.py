"""legacy_report.py after `celery-timeouts scan`'s suggestion: one import line changed.

Now each thread (or greenlet) that calls it gets its own alarm.
"""

import time

from celery_timeouts import compat as signal  # was: import signal


def _too_slow(signum, frame):
    raise TimeoutError("report took too long")


def build_report(seconds_of_work: float, limit: int = 1) -> str:
    signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(limit)
    try:
        end = time.monotonic() + seconds_of_work
        while time.monotonic() < end:  # the report's work, in small steps
            time.sleep(0.01)
        return "report ready"
    finally:
        signal.alarm(0)
