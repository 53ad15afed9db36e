# ruff: noqa
"""`import signal as sg`: the alias carries the module."""

import signal as sg

sg.signal(sg.SIGALRM, lambda signum, frame: None)  # flagged
sg.alarm(3)  # flagged
sg.setitimer(sg.ITIMER_REAL, 1.5, 0.5)  # flagged
sg.getitimer(which=sg.ITIMER_REAL)  # flagged
sg.signal(sg.Signals.SIGALRM, sg.SIG_DFL)  # flagged
