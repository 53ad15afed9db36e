# ruff: noqa
"""The fixed forms: `celery_timeouts.compat` instead of the standard `signal` module."""

from celery_timeouts import compat as signal
from celery_timeouts import portable_timeout
from celery_timeouts.compat import ITIMER_REAL, alarm, setitimer
import celery_timeouts.compat


def handler(signum, frame):
    raise TimeoutError("took too long")


signal.signal(signal.SIGALRM, handler)
signal.alarm(5)
try:
    with portable_timeout(5):
        pass
finally:
    signal.alarm(0)
alarm(5)
setitimer(ITIMER_REAL, 0.5)
celery_timeouts.compat.alarm(5)
celery_timeouts.compat.getitimer(celery_timeouts.compat.ITIMER_REAL)
