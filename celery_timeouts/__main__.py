"""Command line: `celery-timeouts` / `python -m celery_timeouts`.

`scan` and `selfcheck` import nothing of the demo: its options are parsed by the demo's
own parser (`demo.cli.main`), imported only when the command is `demo`.
"""

from __future__ import annotations

import argparse

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
    commands.add_parser(
        "demo",
        add_help=False,  # `celery-timeouts demo --help` is the demo's own
        help="real workers of every pool, stock Celery next to celery-timeouts: "
        "soft and hard limits, alarm-style code, threads autoscale "
        "(celery-timeouts demo --help for its options)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from .demo.cli import main as demo_main

        return demo_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "scan":
        return run_scan(args)
    if args.command in (None, "selfcheck"):
        from ._selfcheck import run

        return run()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
