"""pytest plugin: a time limit per test that fails the test, not the session.

pytest-timeout's thread method ends a stuck session by killing the process, and its
signal method works only in the main thread. Here each test's call runs inside a
`portable_timeout` scope, so the limit works wherever the test runs (main thread,
worker thread, gevent greenlet) and a timed-out test fails with the place it was
interrupted while the session goes on.

Where the limit comes from, first match wins:

1. `@pytest.mark.portable_timeout(seconds)` (`None`: no limit for this test);
2. `--portable-timeout=SECONDS` on the command line;
3. the `CELERY_TIMEOUTS_PYTEST_TIMEOUT` environment variable;
4. the `portable_timeout` ini option.

In 2-4, `0` means no limit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator
from types import TracebackType

import pytest

from . import portable_timeout
from ._scope import TimeoutScope
from ._validation import validate_seconds
from .exceptions import TaskTimeout

ENV_VAR = "CELERY_TIMEOUTS_PYTEST_TIMEOUT"
MARKER = "portable_timeout"
_SCOPE = pytest.StashKey[TimeoutScope | None]()


class TestTimeout(TaskTimeout):
    """A test ran past its portable_timeout limit."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, message: str, seconds: float | None, backend: str | None) -> None:
        super().__init__(seconds, backend)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[TestTimeout], tuple[str, float | None, str | None]]:  # type: ignore[override]
        return (type(self), (str(self.args[0]), self.seconds, self.backend))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("celery-timeouts")
    group.addoption(
        "--portable-timeout",
        metavar="SECONDS",
        default=None,
        help=f"fail a test that runs longer than SECONDS (0: no limit); overrides "
        f"${ENV_VAR} and the portable_timeout ini option",
    )
    parser.addini(
        "portable_timeout",
        help="default per-test limit in seconds for celery-timeouts' plugin (0: no limit)",
        default=None,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(seconds): fail this test if it runs longer than `seconds` "
        f"(None: no limit); wins over --portable-timeout, ${ENV_VAR} and the ini option",
    )
    # Bad defaults are reported once, before any test runs.
    _configured_default(config)


def pytest_runtest_setup(item: pytest.Item) -> None:
    seconds = _limit_for(item)
    item.stash[_SCOPE] = None if seconds is None else portable_timeout(seconds)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    scope = item.stash.get(_SCOPE, None)
    if scope is None:
        return (yield)
    try:
        with scope:
            return (yield)
    except TaskTimeout as timeout:
        if not scope.fired:
            raise  # the test's own TaskTimeout, not its limit
        raise TestTimeout(
            f"test exceeded its {scope.seconds:g} s timeout (backend={scope.backend}); "
            f"interrupted at {_where(timeout.__traceback__, str(item.path))}",
            scope.seconds,
            scope.backend,
        ).with_traceback(timeout.__traceback__) from None


@pytest.fixture
def portable_timeout_scope(request: pytest.FixtureRequest) -> TimeoutScope | None:
    """The scope that limits the running test (active while the test body runs), or
    None when it has no limit."""
    scope: TimeoutScope | None = request.node.stash.get(_SCOPE, None)
    return scope


def _limit_for(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        if len(marker.args) != 1 or marker.kwargs:
            raise pytest.UsageError(
                f"{item.nodeid}: use @pytest.mark.{MARKER}(seconds) with one number of "
                f"seconds (or None for no limit), got args={marker.args!r} "
                f"kwargs={marker.kwargs!r}"
            )
        return validate_seconds(marker.args[0], f"@pytest.mark.{MARKER}(seconds)")
    return _configured_default(item.config)


def _configured_default(config: pytest.Config) -> float | None:
    """The limit from --portable-timeout, else the environment, else the ini option."""
    sources = (
        ("--portable-timeout", config.getoption("portable_timeout")),
        (ENV_VAR, os.environ.get(ENV_VAR)),
        ("the portable_timeout ini option", config.getini("portable_timeout")),
    )
    for origin, raw in sources:
        if raw is None or raw == "":
            continue
        try:
            seconds = float(raw)
        except (TypeError, ValueError):
            raise pytest.UsageError(
                f"{origin} must be a number of seconds (0 for no limit), got {raw!r}"
            ) from None
        if seconds == 0:
            return None
        if not 0 < seconds < math.inf:  # negative, nan or inf: say what a command line takes
            raise pytest.UsageError(
                f"{origin} must be greater than 0 (a number of seconds), or 0 for no limit, "
                f"got {raw!r}"
            )
        try:
            return validate_seconds(seconds, origin)
        except (TypeError, ValueError) as error:
            raise pytest.UsageError(str(error)) from None
    return None


def _where(traceback: TracebackType | None, test_file: str) -> str:
    """file:line in function where the test was interrupted: its innermost frame in the
    test's file, else its innermost frame outside this library."""
    entries = []
    while traceback is not None:
        entries.append(traceback)
        traceback = traceback.tb_next
    in_test = [e for e in entries if e.tb_frame.f_code.co_filename == test_file]
    outside = [e for e in entries if not e.tb_frame.f_code.co_filename.startswith(_LIBRARY)]
    candidates = in_test or outside
    if not candidates:
        return "an unknown place"
    found = candidates[-1]
    code = found.tb_frame.f_code
    return f"{_shorten(code.co_filename)}:{found.tb_lineno} in {code.co_name}"


_LIBRARY = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _shorten(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative
