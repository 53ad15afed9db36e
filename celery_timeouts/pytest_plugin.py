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

A test paused in pytest's debugger (`breakpoint()`, `pdb.set_trace()`, `--pdb`,
`--trace`) is not failed meanwhile: its limit is suspended while the debugger has it and
resumes, with what was left, when it continues. A test that reaches its limit while
another debugger traces it (PyCharm, VS Code's debugpy: detected as pytest-timeout
does) is not interrupted: it runs on without a limit.

What the limit covers: by default the test function only (`portable_timeout_func_only`
true, as pytest-timeout's `timeout_func_only`); with `portable_timeout_func_only =
false` (ini) or `@pytest.mark.portable_timeout(seconds, func_only=False)`, one budget
covers the test's fixtures too: setup, the call and teardown, each phase given what is
left. Once the limit has fired, later phases run unlimited, so fixtures still clean up.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Generator
from types import TracebackType

import pytest

from . import portable_timeout
from ._current import ScopeState
from ._scope import TimeoutScope
from ._validation import validate_seconds
from .exceptions import TaskTimeout

ENV_VAR = "CELERY_TIMEOUTS_PYTEST_TIMEOUT"
MARKER = "portable_timeout"
FUNC_ONLY_INI = "portable_timeout_func_only"
_SCOPE = pytest.StashKey[TimeoutScope | None]()


class _FixtureTimeout(TaskTimeout):
    """The limit, reached in setup or teardown. There it is raised as an `Exception`
    (a catchable scope): pytest records a fixture's failure, and runs the other
    finalizers, only for exceptions of that kind."""


def _fixture_scope(seconds: float) -> TimeoutScope:
    return portable_timeout(seconds, exception=_FixtureTimeout, catchable=True)


class _Budget:
    """The whole test's limit when it covers the fixtures too."""

    __slots__ = ("deadline", "fired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.fired = False  # in some phase: the later ones run unlimited

    def left(self) -> float:
        """Seconds left; a spent budget still makes a (tiny) limit, which fires at once."""
        return max(self.deadline - time.monotonic(), 1e-6)


_BUDGET = pytest.StashKey[_Budget | None]()


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
    parser.addini(
        FUNC_ONLY_INI,
        type="bool",
        default=True,
        help="the portable_timeout limit covers the test function only (default); false: "
        "setup, call and teardown share it",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(seconds, func_only=True): fail this test if it runs longer than "
        f"`seconds` (None: no limit; func_only=False: its fixtures count too); wins over "
        f"--portable-timeout, ${ENV_VAR} and the ini option",
    )
    # Bad defaults are reported once, before any test runs.
    _configured_default(config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    seconds = _limit_for(item)
    # The call's scope, made now so that the `portable_timeout_scope` fixture has it.
    item.stash[_SCOPE] = None if seconds is None else portable_timeout(seconds)
    budget = None if seconds is None or _func_only(item) else _Budget(seconds)
    item.stash[_BUDGET] = budget
    if budget is None:
        return (yield)
    return (yield from _limited(item, _fixture_scope(budget.seconds), "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    scope = item.stash.get(_SCOPE, None)
    if scope is None:
        return (yield)
    budget = item.stash.get(_BUDGET, None)
    if budget is not None:
        if budget.fired:  # in setup: pytest does not call the test then
            return (yield)
        scope.seconds = budget.left()
    return (yield from _limited(item, scope, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    budget = item.stash.get(_BUDGET, None)
    if budget is None or budget.fired:
        return (yield)  # the function only, or the limit fired: fixtures clean up freely
    return (yield from _limited(item, _fixture_scope(budget.left()), "teardown"))


def _limited(
    item: pytest.Item, scope: TimeoutScope, phase: str
) -> Generator[None, None, None]:
    """Run one phase of the test (the rest of the hook wrapper chain) inside `scope`; its
    timeout fails the test as `TestTimeout`, saying where it was interrupted."""
    budget = item.stash.get(_BUDGET, None)
    seconds = budget.seconds if budget is not None else scope.seconds
    try:
        with scope:
            scope.on_timeout(_spare_if_debugging, scope)
            _running.append((scope, budget))
            try:
                return (yield)
            finally:
                _running.remove((scope, budget))
    except TaskTimeout as timeout:
        if not scope.fired:
            raise  # the test's own TaskTimeout, not its limit
        if budget is not None:
            budget.fired = True
        during = "" if budget is None else f" (setup, call and teardown) in {phase}"
        raise TestTimeout(
            f"test exceeded its {seconds:g} s timeout{during} (backend={scope.backend}); "
            f"interrupted at {_where(timeout.__traceback__, str(item.path))}",
            seconds,
            scope.backend,
        ).with_traceback(timeout.__traceback__) from None


# The top-level modules of the debuggers whose trace function, set on the test's thread,
# means a person may be stepping through it (pytest-timeout's list): pydevd is PyCharm's
# and debugpy's (VS Code) engine, bdb is pdb's.
_DEBUGGERS = frozenset({"pydevd", "bdb", "pydevd_frame_evaluator", "debugpy"})


def _debugger_attached() -> bool:
    """True if a debugger traces this thread (or, on 3.12+, holds sys.monitoring's
    debugger tool id, as debugpy does there)."""
    for trace in (sys.gettrace(), threading.gettrace()):
        if trace is not None:
            module = getattr(trace, "__module__", None) or type(trace).__module__
            if str(module).partition(".")[0] in _DEBUGGERS:
                return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and monitoring.get_tool(monitoring.DEBUGGER_ID) is not None


def _spare_if_debugging(scope: TimeoutScope) -> None:
    """At the deadline, just before the test is interrupted: if a debugger holds it (an
    IDE's breakpoint, which pytest's enter_pdb hook never hears of), the phase goes on
    without a limit, as pytest-timeout does."""
    if _debugger_attached():
        scope.reschedule(None)


# The scopes of the phase that runs now (one test at a time per process), and what was
# left of each while pytest's debugger holds the test.
_running: list[tuple[TimeoutScope, _Budget | None]] = []
_paused: list[tuple[TimeoutScope, _Budget | None, float, float]] = []


def pytest_enter_pdb(config: pytest.Config, pdb: object) -> None:
    """pytest's debugger takes the test: suspend its limit (pytest-timeout does too)."""
    for scope, budget in _running:
        left = scope.remaining()
        if scope.state is not ScopeState.ACTIVE or scope.fired or left is None:
            continue
        try:
            scope.reschedule(None)
        except RuntimeError:
            continue  # it fired meanwhile
        _paused.append((scope, budget, left, time.monotonic()))


def pytest_leave_pdb(config: pytest.Config, pdb: object) -> None:
    """The test goes on: what was left of its limit counts again."""
    while _paused:
        scope, budget, left, since = _paused.pop()
        if budget is not None:
            budget.deadline += time.monotonic() - since
        if scope.state is ScopeState.ACTIVE and not scope.fired:
            scope.reschedule(time.monotonic() + left)


@pytest.fixture
def portable_timeout_scope(request: pytest.FixtureRequest) -> TimeoutScope | None:
    """The scope that limits the running test (active while the test body runs), or
    None when it has no limit."""
    scope: TimeoutScope | None = request.node.stash.get(_SCOPE, None)
    return scope


def _limit_for(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        if len(marker.args) != 1 or set(marker.kwargs) - {"func_only"}:
            raise pytest.UsageError(
                f"{item.nodeid}: use @pytest.mark.{MARKER}(seconds) with one number of "
                f"seconds (or None for no limit) and optionally func_only=True/False, got "
                f"args={marker.args!r} kwargs={marker.kwargs!r}"
            )
        return validate_seconds(marker.args[0], f"@pytest.mark.{MARKER}(seconds)")
    return _configured_default(item.config)


def _func_only(item: pytest.Item) -> bool:
    """Does the limit cover the test function only (not its fixtures)?"""
    marker = item.get_closest_marker(MARKER)
    if marker is not None and "func_only" in marker.kwargs:
        value = marker.kwargs["func_only"]
        if not isinstance(value, bool):
            raise pytest.UsageError(
                f"{item.nodeid}: func_only in @pytest.mark.{MARKER} takes True or False, "
                f"got {value!r}"
            )
        return value
    return bool(item.config.getini(FUNC_ONLY_INI))


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
