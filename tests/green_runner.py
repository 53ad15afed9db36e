"""Run the conformance cases in a monkey-patched gevent or eventlet process.

Usage: python tests/green_runner.py gevent|eventlet [cases module, default: cases]
Prints one JSON object: case name -> "ok" or the failure's traceback.
"""

from __future__ import annotations

import json
import sys
import traceback

library = sys.argv[1]
if library == "gevent":
    from gevent import monkey

    monkey.patch_all()
    import gevent

    def run_in_greenlet(func):
        return gevent.spawn(func).get()
else:
    import eventlet

    eventlet.monkey_patch()

    def run_in_greenlet(func):
        return eventlet.spawn(func).wait()

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import importlib  # noqa: E402

cases = importlib.import_module(sys.argv[2] if len(sys.argv) > 2 else "cases")
results = {}
for name, case in cases.CASES.items():
    def attempt(case=case):
        try:
            case(library)
        except BaseException:
            return traceback.format_exc()
        return "ok"

    results[name] = run_in_greenlet(attempt)
print(json.dumps(results))
