# ruff: noqa
"""Calls that look like signal-based timeouts but are not: none may be flagged."""

import signal
from signal import ITIMER_PROF, ITIMER_VIRTUAL, SIGTERM

import blinker
import celery
from celery import signals
from django.dispatch import Signal

from . import signal as local_signal
from .timers import alarm as project_alarm


class Worker:
    def signal(self, name):
        return name

    def start(self, obj):
        self.signal("ready")
        self.alarm(5)
        obj.alarm(5)
        obj.signal.alarm(5)
        obj.signal(signal.SIGALRM, None)


celery.signals.task_prerun.connect(print)
signals.worker_ready.connect(print)
done = Signal()
blinker.signal("x")
local_signal.alarm(5)
project_alarm(5)

signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(SIGTERM, signal.SIG_DFL)
signal.signal(signal.Signals.SIGTERM, signal.SIG_DFL)
signal.setitimer(signal.ITIMER_VIRTUAL, 1.0)
signal.setitimer(ITIMER_PROF, 1.0)
signal.getitimer(ITIMER_VIRTUAL)
signal.getsignal(signal.SIGALRM)
number = signal.SIGALRM


def alarm(seconds):
    return seconds


alarm(5)
