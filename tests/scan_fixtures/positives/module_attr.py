# ruff: noqa
"""`import signal`: the documented pattern and every spelling of SIGALRM and ITIMER_REAL."""

import signal


def handler(signum, frame):
    raise TimeoutError("took too long")


signal.signal(signal.SIGALRM, handler)  # flagged
signal.alarm(5)  # flagged
try:
    work()
finally:
    signal.alarm(0)  # flagged
signal.signal(signal.Signals.SIGALRM, handler)  # flagged
signal.signal(signalnum=signal.SIGALRM, handler=handler)  # flagged
signal.setitimer(signal.ITIMER_REAL, 0.5)  # flagged
signal.setitimer(signal.ITIMER_REAL, 0)  # flagged
signal.getitimer(signal.ITIMER_REAL)  # flagged
label = "délai"; signal.alarm(1)  # flagged: the column counts characters, not bytes
print(signal.alarm(2))  # flagged: the inner call
