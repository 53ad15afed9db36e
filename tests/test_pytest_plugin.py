"""The pytest plugin, run in real pytest subprocesses (pytester)."""

from __future__ import annotations

import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

SLOW_TESTS = """
import time
import pytest

def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.005)

@pytest.mark.portable_timeout(0.3)
def test_slow():
    spin(10)

def test_after_it():
    pass
"""


def run(pytester: pytest.Pytester, *args: str, **env: str) -> pytest.RunResult:
    for name, value in env.items():
        pytester._monkeypatch.setenv(name, value)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def test_marker_fails_the_test_and_the_session_goes_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_slow=SLOW_TESTS)
    result = run(pytester, "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*test_slow FAILED*",
        "*test_after_it PASSED*",
        "*TestTimeout: test exceeded its 0.3 s timeout (backend=signal); "
        "interrupted at test_slow.py:* in spin*",
    ])
    assert result.duration < 30


def test_precedence_marker_then_command_line_then_env_then_ini(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nportable_timeout = 0.2\n")
    pytester.makepyfile(test_limits="""
import pytest

def test_limit(portable_timeout_scope):
    print("LIMIT", portable_timeout_scope and portable_timeout_scope.seconds)

@pytest.mark.portable_timeout(5)
def test_marked(portable_timeout_scope):
    print("LIMIT", portable_timeout_scope.seconds)

@pytest.mark.portable_timeout(None)
def test_unlimited(portable_timeout_scope):
    print("LIMIT", portable_timeout_scope)
""")

    def limits(*args: str, **env: str) -> list[str]:
        result = run(pytester, "-s", "-q", *args, **env)
        result.assert_outcomes(passed=3)
        # -q prints a progress dot before each later test's output.
        return [line[line.index("LIMIT"):] for line in result.outlines if "LIMIT" in line]

    assert limits() == ["LIMIT 0.2", "LIMIT 5.0", "LIMIT None"]
    assert limits(CELERY_TIMEOUTS_PYTEST_TIMEOUT="0.7") == ["LIMIT 0.7", "LIMIT 5.0", "LIMIT None"]
    assert limits("--portable-timeout=0.9", CELERY_TIMEOUTS_PYTEST_TIMEOUT="0.7") == [
        "LIMIT 0.9", "LIMIT 5.0", "LIMIT None",
    ]
    assert limits("--portable-timeout=0") == ["LIMIT None", "LIMIT 5.0", "LIMIT None"]


def test_the_scope_fixture_is_active_during_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_scope="""
import pytest

@pytest.mark.portable_timeout(30)
def test_scope(portable_timeout_scope):
    assert portable_timeout_scope.state.value == "active"
    assert 29 < portable_timeout_scope.remaining() <= 30
    assert portable_timeout_scope.backend == "signal"
""")
    run(pytester).assert_outcomes(passed=1)


def test_bad_settings_name_the_value(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = run(pytester, "--portable-timeout=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--portable-timeout must be a number of seconds*'soon'*"])
    result = run(pytester, CELERY_TIMEOUTS_PYTEST_TIMEOUT="-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*CELERY_TIMEOUTS_PYTEST_TIMEOUT must be greater than 0*-1*"])


def test_a_tests_own_task_timeout_is_not_mistaken_for_its_limit(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_own="""
import pytest
from celery_timeouts import TaskTimeout, portable_timeout

@pytest.mark.portable_timeout(30)
def test_own():
    with pytest.raises(TaskTimeout):
        with portable_timeout(0.05):
            while True:
                pass
""")
    run(pytester).assert_outcomes(passed=1)


def test_works_when_pytest_runs_in_a_worker_thread(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_slow=SLOW_TESTS)
    script = pytester.makepyfile(runner=textwrap.dedent("""
        import sys, threading
        import pytest
        codes = []
        worker = threading.Thread(
            target=lambda: codes.append(pytest.main(["-p", "no:cacheprovider", "test_slow.py"]))
        )
        worker.start()
        worker.join()
        sys.exit(int(codes[0]))
    """))
    result = pytester.run(sys.executable, str(script), timeout=120)
    assert result.ret == 1  # one test failed, and the session completed
    result.stdout.fnmatch_lines([
        "*TestTimeout: test exceeded its 0.3 s timeout (backend=thread)*",
        "*1 failed, 1 passed*",
    ])


def test_works_under_gevent(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from gevent import monkey\nmonkey.patch_all()\n")
    pytester.makepyfile(test_slow=SLOW_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test exceeded its 0.3 s timeout (backend=gevent)*"])


@pytest.mark.parametrize("raw", ["-1", "nan", "inf"])
def test_a_bad_command_line_limit_says_0_means_no_limit(
    pytester: pytest.Pytester, raw: str
) -> None:
    """On a command line, `None` cannot be typed: the message says 0 means no limit."""
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = run(pytester, f"--portable-timeout={raw}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--portable-timeout must be greater than 0*or 0 for no limit, got '{raw}'*"]
    )
    assert "None" not in result.stderr.str()


def test_a_huge_command_line_limit_is_no_practical_limit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_many="""
import threading

def test_main_thread():
    pass

def test_worker_thread():
    done = []
    thread = threading.Thread(target=lambda: done.append(1))
    thread.start()
    thread.join()
    assert done == [1]
""",
    )
    result = run(pytester, "--portable-timeout=1e10")
    result.assert_outcomes(passed=2)
    result = run(pytester, CELERY_TIMEOUTS_PYTEST_TIMEOUT="1e300")
    result.assert_outcomes(passed=2)


def test_a_test_that_swallows_its_timeout_still_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_swallow="""
import time
import pytest

@pytest.mark.portable_timeout(0.3)
def test_swallows():
    try:
        while True:
            time.sleep(0.005)
    except BaseException:
        pass  # as a broad `except` in code under test would
""")
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TestTimeout: test exceeded its 0.3 s timeout*"])


FIXTURES = """
import time
import pytest

def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.005)

@pytest.fixture
def slow_setup():
    spin(0.6)

@pytest.fixture
def stuck_teardown():
    yield
    spin(10)

@pytest.fixture
def cleaned(request):
    yield
    print("CLEANED UP", request.node.name)

@pytest.mark.portable_timeout(0.4)
def test_fixtures_do_not_count_by_default(slow_setup, stuck_teardown):
    pass

@pytest.mark.portable_timeout(0.4, func_only=False)
def test_setup_counts(cleaned, slow_setup):
    pass

@pytest.mark.portable_timeout(1.0, func_only=False)
def test_one_budget_for_setup_and_call(slow_setup, cleaned):
    spin(10)

@pytest.mark.portable_timeout(0.5, func_only=False)
def test_teardown_counts(stuck_teardown):
    pass
"""


def test_func_only_false_makes_fixtures_share_the_limit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixtures=FIXTURES)
    # The default test's stuck teardown would run 10 s: give it its own limit here.
    result = run(pytester, "-v", "-s", "-k", "not fixtures_do_not_count")
    result.assert_outcomes(passed=1, failed=1, errors=2)  # teardown_counts: passed, then error
    result.stdout.fnmatch_lines_random([
        "*ERROR at setup of test_setup_counts*",
        "*TestTimeout: test exceeded its 0.4 s timeout (setup, call and teardown) in setup*",
        "*CLEANED UP test_setup_counts*",  # a fixture set up before still tears down
        "*TestTimeout: test exceeded its 1 s timeout (setup, call and teardown) in call*",
        "*CLEANED UP test_one_budget_for_setup_and_call*",
        "*ERROR at teardown of test_teardown_counts*",
        "*TestTimeout: test exceeded its 0.5 s timeout (setup, call and teardown) in teardown*",
    ])
    assert result.duration < 30


def test_fixtures_do_not_count_by_default_and_the_ini_option_turns_that(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_fixtures=FIXTURES.replace("spin(10)", "spin(1)"))
    result = run(pytester, "-k", "fixtures_do_not_count")
    result.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nportable_timeout_func_only = false\n")
    result = run(pytester, "-k", "fixtures_do_not_count")
    result.assert_outcomes(errors=1)  # its 0.6 s setup is past the 0.4 s limit now
    result.stdout.fnmatch_lines(["*exceeded its 0.4 s timeout (setup, call and teardown)*"])


def test_a_bad_func_only_names_the_value(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="""
import pytest

@pytest.mark.portable_timeout(1, func_only="no")
def test_one():
    pass
""")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*func_only in @pytest.mark.portable_timeout takes True or False, got 'no'*"]
    )


def test_works_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_slow=SLOW_TESTS, test_more=SLOW_TESTS)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*TestTimeout: test exceeded its 0.3 s timeout*"])
    assert result.duration < 60


PAUSED_TESTS = """
import time
import pytest

@pytest.mark.portable_timeout(0.5)
def test_paused_then_quick():
    started = time.monotonic()
    breakpoint()  # the debugger holds the test 1.5 s: not counted
    time.sleep(0.2)
    assert time.monotonic() - started >= 1.5

@pytest.mark.portable_timeout(0.5, func_only=False)
def test_paused_then_slow():
    breakpoint()
    time.sleep(5)  # what was left of the limit still ends it
"""


def test_a_test_paused_in_the_debugger_is_not_failed_meanwhile(
    pytester: pytest.Pytester,
) -> None:
    path = pytester.makepyfile(test_paused=PAUSED_TESTS)
    # Each breakpoint: 1.5 s "in the debugger", then continue.
    commands = b"import time; time.sleep(1.5)\ncontinue\n" * 2
    result = pytester.run(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "-rA", str(path),
        stdin=commands, timeout=120,
    )
    result.stdout.fnmatch_lines([
        "PASSED test_paused.py::test_paused_then_quick",
        "FAILED test_paused.py::test_paused_then_slow*",
    ])
    result.stdout.fnmatch_lines(["*TestTimeout: test exceeded its 0.5 s timeout*"])


IDE_DEBUGGED_TESTS = """
import sys
import time

import pydevd


def test_stopped_at_an_ide_breakpoint():
    sys.settrace(pydevd.trace)  # as PyCharm's and VS Code's engine, attached to the test
    try:
        time.sleep(1.0)  # "at a breakpoint", past the 0.3 s limit
    finally:
        sys.settrace(None)


def test_debugger_held_through_sys_monitoring():
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:  # before 3.12 debuggers trace: the test above covers them
        sys.settrace(pydevd.trace)
    else:
        monitoring.use_tool_id(monitoring.DEBUGGER_ID, "debugpy")
    try:
        time.sleep(1.0)
    finally:
        if monitoring is None:
            sys.settrace(None)
        else:
            monitoring.free_tool_id(monitoring.DEBUGGER_ID)


def test_not_debugged():
    time.sleep(1.0)
"""


def test_a_test_held_by_an_ide_debugger_is_not_failed(pytester: pytest.Pytester) -> None:
    # A module named like the debugger's engine: its trace function is what the plugin
    # looks at, as pytest-timeout does.
    pytester.makepyfile(pydevd="def trace(frame, event, arg):\n    return None\n")
    pytester.makepyfile(test_ide=IDE_DEBUGGED_TESTS)
    result = run(pytester, "-rA", "--portable-timeout=0.3")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "PASSED test_ide.py::test_stopped_at_an_ide_breakpoint",
        "PASSED test_ide.py::test_debugger_held_through_sys_monitoring",
        "FAILED test_ide.py::test_not_debugged*",
    ])
