"""Celery's own unit tests for pools and workers, run against celery-timeouts' pools.

Usage: python tests/celery_conformance/run.py [--celery-version X.Y.Z] [pytest args...]

Takes Celery's test tree (``t/``) from the sdist of the installed Celery version (or the
one given), caches it under ``.cache/celery-conformance/``, and runs
``t/unit/concurrency`` and ``t/unit/worker`` with `swap_pools` loaded, so every test that
builds a solo, threads, gevent or eventlet pool builds ours. Each failure must be listed
in ``expected_failures.txt`` with one line on why it is legitimate; an unlisted failure
fails the run, and a listed test that now passes is reported so the list stays honest.

Exit codes: 0 conforms, 1 unexpected failures, 2 the run itself could not be made.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import version as installed_version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".cache" / "celery-conformance"
EXPECTED = HERE / "expected_failures.txt"
SUITES = ("t/unit/concurrency", "t/unit/worker")


def expected_failures(celery_version: str) -> dict[str, str]:
    """`nodeid -> reason` for this Celery version.

    A line is ``nodeid  # reason``, or ``[<5.5] nodeid  # reason`` for a line that applies
    only to some versions (``<``, ``<=``, ``>=``, ``>`` and ``==`` against X.Y or X.Y.Z).
    """
    listed: dict[str, str] = {}
    for number, raw in enumerate(EXPECTED.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, hash_, reason = line.partition("#")
        if not hash_ or not reason.strip():
            raise SystemExit(f"{EXPECTED.name}:{number}: give the reason after '#': {raw!r}")
        entry = entry.strip()
        if entry.startswith("["):
            condition, _, entry = entry[1:].partition("]")
            if not _version_matches(celery_version, condition.strip()):
                continue
        listed[entry.strip()] = reason.strip()
    return listed


def _version_matches(celery_version: str, condition: str) -> bool:
    for operator in ("<=", ">=", "==", "<", ">"):
        if condition.startswith(operator):
            wanted = _as_tuple(condition[len(operator):])
            have = _as_tuple(celery_version)[: len(wanted)]
            return {
                "<=": have <= wanted, ">=": have >= wanted, "==": have == wanted,
                "<": have < wanted, ">": have > wanted,
            }[operator]
    raise SystemExit(f"{EXPECTED.name}: unknown version condition [{condition}]")


def _as_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().split(".") if part.isdigit())


def test_tree(celery_version: str) -> Path:
    """Celery's ``t/`` (and its pytest settings) for `celery_version`, downloaded once."""
    tree = CACHE / celery_version
    if (tree / "t" / "unit" / "concurrency").is_dir():
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
             "--no-deps", f"celery=={celery_version}", "-d", download],
            check=True,
        )
        sdist = next(Path(download).glob("celery-*.tar.gz"))
        staging = Path(download) / "tree"
        with tarfile.open(sdist) as archive:
            top = f"celery-{celery_version}/"
            wanted = [
                member for member in archive.getmembers()
                if member.name.startswith(top + "t/") or member.name == top + "pyproject.toml"
            ]
            for member in wanted:
                if not (member.isfile() or member.isdir()):
                    continue
                member.name = member.name[len(top):]
                archive.extract(member, staging)
        # Celery's own source is deliberately left out: the tests import the installed
        # Celery, the one our pools subclass.
        staging.rename(tree)
    return tree


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--celery-version", default=None)
    options, pytest_args = parser.parse_known_args(argv)
    celery_version = options.celery_version or installed_version("celery")
    started = time.monotonic()
    try:
        tree = test_tree(celery_version)
        listed = expected_failures(celery_version)
    except (OSError, subprocess.CalledProcessError, StopIteration) as error:
        print(f"conformance: cannot prepare Celery {celery_version}'s tests: {error}",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "outcomes.json"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            "CELERY_CONFORMANCE_REPORT": str(report),
        }
        completed = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "swap_pools", "-p", "no:cacheprovider",
             "-p", "no:celery_timeouts", "-o", "timeout=120", *SUITES, *pytest_args],
            cwd=tree, env=env,
        )
        if not report.exists():
            print(f"conformance: pytest ended (exit {completed.returncode}) before reporting",
                  file=sys.stderr)
            return 2
        outcomes: dict[str, str] = json.loads(report.read_text())
    failed = sorted(node for node, outcome in outcomes.items() if outcome == "failed")
    unexpected = [node for node in failed if node not in listed]
    now_passing = sorted(
        node for node in listed if outcomes.get(node) == "passed"
    )
    passed = sum(outcome == "passed" for outcome in outcomes.values())
    print(f"conformance: Celery {celery_version}, our pools: {passed} passed, "
          f"{len(failed)} failed ({len(failed) - len(unexpected)} expected), "
          f"{time.monotonic() - started:.0f} s")
    for node in now_passing:
        print(f"conformance: listed as expected to fail but passed now; remove it from "
              f"{EXPECTED.name}: {node}")
    for node in unexpected:
        print(f"conformance: UNEXPECTED FAILURE: {node}", file=sys.stderr)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
