"""legacy_report in four worker threads: broken, patched, and fixed.

Run: python examples/legacy_alarm/run.py
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import fixed_report
import legacy_report

from celery_timeouts import compat


def in_threads(build: Callable[[float], str]) -> list[str]:
    """Four threads at once: two finish in time, two run past their 1 s alarm."""
    outcomes: list[str] = [""] * 4

    def job(index: int) -> None:
        work = 0.3 if index % 2 == 0 else 5.0
        started = time.monotonic()
        try:
            outcome = build(work)
        except Exception as error:
            outcome = f"{type(error).__name__}: {error}"
        outcomes[index] = f"thread {index} ({work:g} s of work): {outcome} " \
            f"after {time.monotonic() - started:.2f} s"

    threads = [threading.Thread(target=job, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def main() -> None:
    print("1. legacy_report as it is:")
    for line in in_threads(legacy_report.build_report):
        print("  ", line)
    print("2. the same module, with celery_timeouts.compat.patch():")
    with compat.patched():
        for line in in_threads(legacy_report.build_report):
            print("  ", line)
    print("3. fixed_report (one import line changed, as `celery-timeouts scan` suggests):")
    for line in in_threads(fixed_report.build_report):
        print("  ", line)


if __name__ == "__main__":
    main()
