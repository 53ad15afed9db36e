"""The examples run as their READMEs say, and show what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_legacy_alarm_example() -> None:
    completed = run("examples/legacy_alarm/run.py")
    assert completed.returncode == 0, completed.stderr
    # Three numbered sections: as it is, patched, fixed.
    broken, patched, fixed = re.split(r"^[23]\. ", completed.stdout, flags=re.MULTILINE)
    assert broken.count("ValueError: signal only works in main thread") == 4
    for section in (patched, fixed):
        assert section.count("report ready") == 2
        assert section.count("TimeoutError: report took too long after 1.0") == 2


def test_legacy_alarm_scan_finds_the_legacy_module_only() -> None:
    folder = "examples/legacy_alarm"
    legacy = run("-m", "celery_timeouts", "scan", f"{folder}/legacy_report.py")
    fixed = run("-m", "celery_timeouts", "scan", f"{folder}/fixed_report.py", f"{folder}/run.py")
    assert legacy.returncode == 1
    assert legacy.stdout.count("legacy_report.py:") == 3
    assert (fixed.returncode, fixed.stdout) == (0, "")


def test_thread_worker_example() -> None:
    completed = run("examples/thread_worker.py")
    assert completed.returncode == 0, completed.stderr
    assert "stopped after 0.5" in completed.stdout
