# ruff: noqa
"""Imports inside functions, names used before their module-level import, and aliases."""

import signal as module_level_signal


class Task:
    def run(self):
        import signal

        signal.alarm(10)  # flagged: function-local import
        try:
            self.work()
        finally:
            signal.alarm(0)  # flagged

    def run_later(self):
        from signal import setitimer as arm, ITIMER_REAL

        arm(ITIMER_REAL, 1.0)  # flagged

    def uses_module_level(self):
        module_level_signal.alarm(1)  # flagged: the import is at module level


def outer():
    def inner():
        imported_below.alarm(2)  # flagged: bound by the time `outer` is called

    return inner


def aliases():
    arm = module_level_signal.alarm
    arm(3)  # flagged: an alias made by assignment
    which = module_level_signal.SIGALRM
    module_level_signal.signal(which, None)  # flagged


try:
    from signal import alarm as maybe_alarm
except ImportError:  # Windows has no alarm
    maybe_alarm = None


def optional():
    if maybe_alarm is not None:
        maybe_alarm(4)  # flagged: the import may have succeeded


later = lambda: module_level_signal.alarm(5)  # flagged
calls = [module_level_signal.alarm(n) for n in range(3)]  # flagged

import signal as imported_below
