"""A module written for SIGALRM, as many are: it works in the main thread only.

Under `celery worker -P threads` its `signal.signal` call raises
`ValueError: signal only works in main thread of the main interpreter`.
"""

import signal
import time


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
