# ruff: noqa
"""`from signal import *` binds bare `alarm`, `signal`, `SIGALRM`, `ITIMER_REAL`."""

from signal import *


def on_alarm(signum, frame):
    raise TimeoutError


signal(SIGALRM, on_alarm)  # flagged
alarm(5)  # flagged
setitimer(ITIMER_REAL, 0.25)  # flagged
getitimer(ITIMER_REAL)  # flagged
signal(SIGINT, on_alarm)  # not flagged: SIGINT
