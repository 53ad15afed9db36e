"""The alarm snippet in 100 gevent greenlets or eventlet green threads at once.

Usage: python tests/compat_green_runner.py gevent|eventlet
Prints one JSON line: per green thread, what it raised, where, and when.
"""

import json
import sys
import time

library = sys.argv[1]
if library == "gevent":
    from gevent import monkey

    monkey.patch_all()
    import gevent

    spawn, wait_all, green_sleep = gevent.spawn, gevent.joinall, gevent.sleep
    from gevent import getcurrent
else:
    import eventlet

    eventlet.monkey_patch()
    from eventlet.greenthread import getcurrent

    spawn, green_sleep = eventlet.spawn, eventlet.sleep

    def wait_all(threads):
        for thread in threads:
            thread.wait()

from celery_timeouts import compat as signal  # noqa: E402

N = 100
results = [None] * N


def work(seconds):
    end = time.monotonic() + seconds + 5
    while time.monotonic() < end:
        green_sleep(0.01)


def one(index):
    seconds = 1 + index % 2
    me = getcurrent()
    started = time.monotonic()
    outcome = "finished"

    # -- the snippet, verbatim but for the alarm's length --------------------------------
    def handler(signum, frame):
        raise TimeoutError("took too long")
    signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        try:
            work(seconds)
        finally:
            signal.alarm(0)
    # --------------------------------------------------------------------------------------
    except TimeoutError as error:
        outcome = repr(error)
    results[index] = {
        "seconds": seconds,
        "elapsed": time.monotonic() - started,
        "outcome": outcome,
        "same_green_thread": getcurrent() is me,
        "alarm_left": signal.getitimer(signal.ITIMER_REAL)[0],
    }


started = time.monotonic()
wait_all([spawn(one, index) for index in range(N)])
print(json.dumps({"total": time.monotonic() - started, "results": results}))
