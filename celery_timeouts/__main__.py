"""Command line: `celery-timeouts` / `python -m celery_timeouts`."""

from __future__ import annotations

import argparse

from .demo.cli import add_arguments as add_demo_arguments
from .demo.cli import run as run_demo
from .scan import add_arguments as add_scan_arguments
from .scan import run as run_scan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="celery-timeouts",
        description="Task time limits that work the same on every Celery pool.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "selfcheck", help="show the backend each context gets and fire one real timeout in each"
    )
    add_scan_arguments(
        commands.add_parser(
            "scan", help="report signal.alarm-style timeouts that only work in the main thread"
        )
    )
    add_demo_arguments(
        commands.add_parser(
            "demo",
            help="real workers of every pool, stock Celery next to celery-timeouts: "
            "soft and hard limits, alarm-style code, threads autoscale",
        )
    )
    args = parser.parse_args(argv)
    if args.command == "scan":
        return run_scan(args)
    if args.command == "demo":
        return run_demo(args)
    if args.command in (None, "selfcheck"):
        from ._selfcheck import run

        return run()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
