"""`celery-timeouts demo [--pools P,...] [--broker redis://...] [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .report import as_json, table
from .runner import POOLS, DemoError, run_demo

# Exit codes: a complete run, whatever the tasks did, is a success.
OK, WORKER_FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


def pool_list(text: str) -> list[str]:
    """``threads,gevent`` -> ["threads", "gevent"]; argparse reports the ArgumentTypeError."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in POOLS]
    if unknown or not names:
        problem = f"unknown pool {unknown[0]!r}" if unknown else "no pool"
        raise argparse.ArgumentTypeError(
            f"{text!r}: {problem}; use a comma-separated list of {','.join(POOLS)}"
        )
    return list(dict.fromkeys(names))


def main(argv: list[str]) -> int:
    """`celery-timeouts demo ARGS...`: parse the demo's options and run it."""
    parser = argparse.ArgumentParser(
        prog="celery-timeouts demo",
        description="Real workers of every pool, stock Celery next to celery-timeouts: "
        "soft and hard limits, alarm-style code, threads autoscale.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Give `parser` the demo's options."""
    parser.add_argument(
        "--pools",
        type=pool_list,
        default=list(POOLS),
        metavar="P,...",
        help=f"the pools to show, comma-separated (default: {','.join(POOLS)})",
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="a Redis broker to run on, redis://HOST:PORT[/DB] (results on DB+1); "
        "default: kombu's filesystem transport in a temporary folder",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        metavar="DIR",
        help="keep each worker's log in DIR (default: deleted with the temporary folder)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as JSON on stdout (progress still goes to stderr)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo, print the table (or JSON); 0 done, 1 a worker failed to start,
    2 the demo could not run, 130 interrupted."""
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {message}", file=sys.stderr, flush=True)

    try:
        report = run_demo(args.pools, args.broker, progress, log_dir=args.logs)
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE
    if args.json:
        print(json.dumps(as_json(report), indent=2))
    else:
        print(table(report))
    if report.interrupted:
        return INTERRUPTED
    if report.failed_to_start:
        print(f"error: workers did not start: {', '.join(report.failed_to_start)}",
              file=sys.stderr)
        return WORKER_FAILED
    return OK
