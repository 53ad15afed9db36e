"""`celery-timeouts demo`: real workers of every pool, stock Celery next to celery-timeouts.

- `workers`: start `celery worker` subprocesses, wait until they take tasks, always stop
  them (the test suite's harness builds on it too);
- `tasks`: the Celery app those workers run;
- `scenario`: what each worker is sent, driven without blocking;
- `runner`: one run, from the temporary broker to the last worker stopped;
- `report`: the table and the JSON; `cli`: the command line.

Nothing here imports Celery at module level, so `celery-timeouts demo` can say that it is
missing instead of failing with a traceback.
"""
