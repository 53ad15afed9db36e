"""The `celery-timeouts scan` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from ._files import scan_paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Give `parser` the scan options, so `celery-timeouts scan` can be a subcommand."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="file or directory to scan (directories: every *.py below, recursively)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: one `path:line:col: message` per finding; json: one JSON object",
    )


def run(args: argparse.Namespace) -> int:
    """Scan `args.paths`, print in `args.format`; 0 clean, 1 findings, 2 unscannable input.

    An internal error (out of memory included) exits 2 with a message, never 1, which
    means "findings".
    """
    try:
        return _report(args)
    except (Exception, MemoryError) as error:
        print(f"error: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


def _report(args: argparse.Namespace) -> int:
    notes: list[str] = []
    findings, errors = scan_paths(args.paths, notes)
    if args.format == "json":
        report = {"findings": [asdict(finding) for finding in findings], "errors": errors}
        print(json.dumps(report, indent=2))
    else:
        for finding in findings:
            print(finding)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 2
    return 1 if findings else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`celery-timeouts scan PATH... [--format text|json]`; returns the exit code.

    Exit codes: 0 nothing found, 1 findings, 2 any path could not be scanned (even
    with findings) or the scanner failed. Bad options exit through argparse's
    SystemExit(2).
    """
    parser = argparse.ArgumentParser(
        prog="celery-timeouts scan",
        description=(
            "Report signal.alarm-style timeouts (SIGALRM, ITIMER_REAL), which work only "
            "in the main thread and so break under Celery's threads, gevent and "
            "eventlet pools."
        ),
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
