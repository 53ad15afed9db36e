# ruff: noqa
"""`from signal import ...`, with and without `as`."""

from signal import ITIMER_REAL, SIGALRM, Signals, alarm, getitimer, setitimer, signal
from signal import ITIMER_REAL as REAL
from signal import SIGALRM as A
from signal import alarm as a
from signal import signal as install


def on_alarm(signum, frame):
    raise TimeoutError


signal(SIGALRM, on_alarm)  # flagged
install(A, on_alarm)  # flagged
install(Signals.SIGALRM, on_alarm)  # flagged
alarm(5)  # flagged
a(5)  # flagged
setitimer(ITIMER_REAL, 2)  # flagged
setitimer(REAL, 2)  # flagged
getitimer(REAL)  # flagged
