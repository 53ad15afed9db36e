"""One conformance suite, run against every synchronous backend in its real context."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from celery_timeouts._context import NO_SIGNALS

from cases import CASES
from conftest import run_in_thread

# The main thread's backend: SIGALRM, or in no-signal mode (CELERY_TIMEOUTS_SIGNALS=off,
# a platform without signals) the watchdog, which auto picks there then.
MAIN_THREAD_BACKEND = "signal" if NO_SIGNALS is None else "thread"

CONTEXTS = ["signal", "thread", "thread-in-main", "gevent", "eventlet"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("context", CONTEXTS)
def test_conformance(
    context: str, case: str, green_results: Callable[[str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    func = CASES[case]
    if context == "signal":
        func(MAIN_THREAD_BACKEND)
    elif context == "thread":
        run_in_thread(lambda: func("thread"))
    elif context == "thread-in-main":
        # The watchdog also serves the main thread when asked to (the Windows path).
        monkeypatch.setenv("CELERY_TIMEOUTS_BACKEND", "thread")
        func("thread")
    else:
        outcome = green_results(context)[case]
        assert outcome == "ok", outcome
