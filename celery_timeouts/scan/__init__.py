"""`celery-timeouts scan`: find SIGALRM-based timeouts that only work in the main thread.

Python runs signal handlers in the main thread only, and `signal.signal` raises
ValueError anywhere else, so `signal.alarm`-style timeouts break under Celery's
threads, gevent and eventlet pools. The scanner reads source with `ast` (it never
imports it) and resolves each name through the imports of its own module, so
`sg.alarm(5)`, `from signal import alarm as a` and `from signal import *` are found
while `self.signal(...)`, `celery.signals` and a local `def alarm()` are not.

Time and memory grow linearly with the source: a module is parsed a chunk of
top-level statements at a time, and only names bound to `signal` are tracked.
`benchmarks/bench_scan.py` measures it.

Modules: `_names` (what names mean), `_walker` (statements and expressions),
`_rules` (what is reported), `_source` (one module), `_files` (paths), `cli`.
"""

from __future__ import annotations

from ._files import scan_paths
from ._rules import Finding
from ._source import IGNORE_MARKER, scan_source
from .cli import add_arguments, main, run

__all__ = ["IGNORE_MARKER", "Finding", "add_arguments", "main", "run", "scan_paths", "scan_source"]
