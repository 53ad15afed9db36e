"""A worker-thread job under a time limit: the `thread` backend at work.

Run: python examples/thread_worker.py
"""

from __future__ import annotations

import threading
import time

from celery_timeouts import TaskTimeout, detect_backend, portable_timeout


@portable_timeout(0.5)
def crunch() -> int:
    total = 0
    while True:  # a CPU loop that would never end on its own
        total += 1


def main() -> None:
    def job() -> None:
        print("backend:", detect_backend())
        started = time.monotonic()
        try:
            crunch()
        except TaskTimeout as error:
            print(f"stopped after {time.monotonic() - started:.2f} s: {error}")

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()


if __name__ == "__main__":
    main()
