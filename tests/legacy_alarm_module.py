"""A third-party-style module written for SIGALRM: `import signal` and the stdlib calls."""

import signal


def handler(signum, frame):  # type: ignore[no-untyped-def]
    raise TimeoutError("took too long")


def run_with_alarm(seconds, work):  # type: ignore[no-untyped-def]
    signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        return work()
    finally:
        signal.alarm(0)
