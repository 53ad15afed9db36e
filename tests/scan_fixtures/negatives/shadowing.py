# ruff: noqa
"""Names that once meant the signal module, or never did: none may be flagged."""

import signal
from signal import SIGALRM, alarm


def alarm(seconds):  # a local function replaces the import
    return seconds


alarm(5)


def takes_parameter(signal):
    signal.alarm(5)
    signal.signal(SIGALRM, None)


def local_variable():
    signal = make_dispatcher()
    signal.alarm(5)


def deleted():
    import signal

    del signal
    signal = object()
    signal.alarm(5)


def comprehension(dispatchers):
    return [signal.alarm(1) for signal in dispatchers]


signal = make_dispatcher()  # a module-level variable shadows the import from here on
signal.signal(SIGALRM, None)
signal.alarm(5)
