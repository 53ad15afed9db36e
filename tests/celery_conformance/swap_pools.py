"""pytest plugin: run Celery's own tests against celery-timeouts' pools.

Loaded with ``-p swap_pools`` before Celery's test tree is collected, it puts our pool
classes where Celery's tests (and `get_implementation`) look for the stock ones: the
``TaskPool`` attribute of ``celery.concurrency.{solo,thread,gevent,eventlet}`` and the
``ALIASES`` table. Each of our pools subclasses the stock one it replaces.
"""

from __future__ import annotations

import importlib
import json
import os

import pytest

from celery_timeouts.pools import REPLACEMENTS


def _swap() -> list[str]:
    from celery import concurrency

    swapped = []
    for stock_path, ours_path in REPLACEMENTS.items():
        stock_module, _, name = stock_path.partition(":")
        ours_module, _, ours_name = ours_path.partition(":")
        ours = getattr(importlib.import_module(ours_module), ours_name)
        setattr(importlib.import_module(stock_module), name, ours)
        for alias, target in list(concurrency.ALIASES.items()):
            if target == stock_path:
                concurrency.ALIASES[alias] = ours_path
        swapped.append(f"{stock_path} -> {ours_path}")
    return swapped


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SWAPPED] = _swap()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return ["celery-timeouts pools swapped in: " + ", ".join(config.stash[_SWAPPED])]


_SWAPPED = pytest.StashKey[list[str]]()
_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test's outcome: failed if any phase failed, else the outcome of its call."""
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.when == "call" or (report.when == "setup" and report.skipped):
        _outcomes.setdefault(report.nodeid, report.outcome)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("CELERY_CONFORMANCE_REPORT")
    if path:
        with open(path, "w") as report:
            json.dump(_outcomes, report)
