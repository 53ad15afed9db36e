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


# The two Celery examples run a real worker on a loaded 2-core CI machine: their timing
# bounds allow seconds of slack. The lower bounds are the limits themselves (a limit
# never fires early); the upper ones are the limit plus the filesystem broker's and the
# result backend's polling, plus scheduling delays.
SLACK = 3.0


def number_in(pattern: str, text: str) -> float:
    """The number that `pattern`'s one group matches in `text`; fails naming the pattern."""
    match = re.search(pattern, text, flags=re.MULTILINE)
    assert match, f"no line matches {pattern!r} in:\n{text}"
    return float(match.group(1))


def assert_worker_cleaned_up(stdout: str) -> None:
    assert re.search(r"^worker pid \d+ stopped: True; temporary folder removed: True$",
                     stdout, flags=re.MULTILINE), stdout


def test_threads_autoscale_example() -> None:
    completed = run("examples/threads_autoscale/run.py")
    out = completed.stdout
    assert completed.returncode == 0, f"{out}\n{completed.stderr}"
    # The burst: all 12 fetches succeed, faster than the minimum of 2 threads could do
    # them (6 s), because the pool grew past its minimum and back.
    burst = number_in(r"12 of 12 SUCCESS; last stored ([\d.]+) s after sending", out)
    assert burst < 6, out
    peak = int(number_in(r"pool grew: 2 -> (\d+) threads", out))
    assert 2 < peak <= 6, out
    assert "2. idle: pool shrank back to 2 threads" in out
    # Soft limit at 1.5 s: the download cleaned up its partial file and succeeded.
    soft = number_in(
        r"download /stream .*: SUCCESS after ([\d.]+) s: \{'status': 'cleaned up', "
        r"'bytes': \d+, 'partial_file_left': False\}$", out,
    )
    assert 1.5 <= soft < 1.5 + SLACK, out
    assert "files left in the download folder: none" in out
    # Soft limit at 2 s for the fetch blocked in a socket read with no timeout: raised
    # inside the read (celery_timeouts.blocking), so no thread is stuck or abandoned.
    soft = number_in(
        r"fetch /hang .*: FAILURE after ([\d.]+) s: SoftTimeLimitExceeded\('exceeded 2 s", out
    )
    assert 2 <= soft < 2 + SLACK, out
    assert "stuck past its hard time limit" not in out
    # The worker served on after both, with every thread in its slot.
    assert "4 fetches of /ok: 4 of 4 SUCCESS" in out
    assert "abandoned threads so far: 0; worker alive: True" in out
    assert_worker_cleaned_up(out)


def test_gevent_webhooks_example() -> None:
    completed = run("examples/gevent_webhooks/run.py")
    out = completed.stdout
    assert completed.returncode == 0, f"{out}\n{completed.stderr}"
    events = re.findall(
        r"^   event (\d+): (\w+) after ([\d.]+) s: "
        r"delivered (\d+) of (\d+)(?:; gave up on (\S+))?$",
        out, flags=re.MULTILINE,
    )
    assert len(events) == 10, out
    for event, state, seconds, delivered, total, gave_up in events:
        assert state == "SUCCESS", out
        if int(event) % 3 == 2:  # also sent to /hook/stuck: given up at the 1.5 s soft limit
            assert (delivered, total) == ("8", "9"), out
            assert gave_up.endswith("/hook/stuck"), out
            assert 1.5 <= float(seconds) < 1.5 + SLACK, out
        else:  # every subscriber answers within 0.5 s
            assert (delivered, total, gave_up) == ("8", "8", ""), out
            assert float(seconds) < 1.5, out
    # Side by side: one event at a time would take at least 8 s.
    assert number_in(r"all 10 stored within ([\d.]+) s of sending", out) < 8, out
    assert out.count("worker log: webhooks.notify[") == 3
    assert len(re.findall(r"gave up on webhook \S+/hook/stuck for event [258] after 1\.\d s",
                          out)) == 3, out
    # The clean-up closed the silent calls: the subscriber saw each connection end.
    assert "subscriber /hook/stuck: 3 calls, 3 closed by the worker" in out
    assert "5 more events: 5 of 5 SUCCESS, delivered 35 of 35" in out
    assert "worker alive: True" in out
    assert_worker_cleaned_up(out)
