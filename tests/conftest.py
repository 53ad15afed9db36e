from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent


def run_in_thread(func: Callable[[], Any]) -> Any:
    """Run `func` in a fresh worker thread; return its result or re-raise its error."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = func()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def run_python(
    code: str, *, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter with the checkout on the path."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS)])
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=full_env
    )


_green_results: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="session")
def green_results() -> Callable[..., dict[str, str]]:
    def results(library: str, module: str = "cases") -> dict[str, str]:
        key = library if module == "cases" else f"{library}:{module}"
        if key not in _green_results:
            completed = subprocess.run(
                [sys.executable, str(TESTS / "green_runner.py"), library, module],
                capture_output=True, text=True, timeout=300,
                env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
            )
            assert completed.returncode == 0, completed.stderr
            _green_results[key] = json.loads(completed.stdout.strip().splitlines()[-1])
        return _green_results[key]

    return results
