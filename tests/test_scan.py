"""`celery_timeouts.scan`: the fixtures pin every spelling it must find and every look-alike
it must leave alone; the CLI is checked in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from celery_timeouts.scan import Finding, main, scan_paths, scan_source

FIXTURES = Path(__file__).parent / "scan_fixtures"
POSITIVES = FIXTURES / "positives"
NEGATIVES = FIXTURES / "negatives"
BROKEN = FIXTURES / "broken" / "broken_input.txt"
REPO = Path(__file__).parent.parent

ALARM, SIGNAL = "signal.alarm", "signal.signal"
SETITIMER, GETITIMER = "signal.setitimer", "signal.getitimer"

# (line, column, call) for every finding; columns are 1-based characters.
EXPECTED: dict[str, set[tuple[int, int, str]]] = {
    "module_attr.py": {
        (11, 1, SIGNAL),
        (12, 1, ALARM),
        (16, 5, ALARM),
        (17, 1, SIGNAL),  # signal.Signals.SIGALRM
        (18, 1, SIGNAL),  # keyword arguments
        (19, 1, SETITIMER),
        (20, 1, SETITIMER),
        (21, 1, GETITIMER),
        (22, 18, ALARM),  # 17 characters but 18 UTF-8 bytes precede the call
        (23, 7, ALARM),
    },
    "aliased_module.py": {
        (6, 1, SIGNAL),
        (7, 1, ALARM),
        (8, 1, SETITIMER),
        (9, 1, GETITIMER),
        (10, 1, SIGNAL),
    },
    "from_imports.py": {
        (15, 1, SIGNAL),
        (16, 1, SIGNAL),
        (17, 1, SIGNAL),
        (18, 1, ALARM),
        (19, 1, ALARM),
        (20, 1, SETITIMER),
        (21, 1, SETITIMER),
        (22, 1, GETITIMER),
    },
    "star_import.py": {
        (11, 1, SIGNAL),
        (12, 1, ALARM),
        (13, 1, SETITIMER),
        (14, 1, GETITIMER),
    },
    "scoped_imports.py": {
        (11, 9, ALARM),
        (15, 13, ALARM),
        (20, 9, SETITIMER),
        (23, 9, ALARM),
        (28, 9, ALARM),
        (35, 5, ALARM),
        (37, 5, SIGNAL),
        (48, 9, ALARM),
        (51, 17, ALARM),
        (52, 10, ALARM),
    },
}


def positions(findings: list[Finding]) -> set[tuple[int, int, str]]:
    return {(finding.line, finding.column, finding.call) for finding in findings}


def lines_of(source: str) -> list[int]:
    return [finding.line for finding in scan_source(source)]


# -- the fixture files -------------------------------------------------------------------


def test_every_positive_fixture_has_expectations() -> None:
    assert {path.name for path in POSITIVES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_positive_fixture_positions(name: str) -> None:
    findings, errors = scan_paths([POSITIVES / name])
    assert errors == []
    assert positions(findings) == EXPECTED[name]
    assert all(finding.path == str(POSITIVES / name) for finding in findings)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_flagged_comments_agree_with_findings(name: str) -> None:
    """The `# flagged` comments let a reader of the fixture see what the test expects."""
    text = (POSITIVES / name).read_text(encoding="utf-8")
    marked = {number for number, line in enumerate(text.splitlines(), 1) if "# flagged" in line}
    assert {line for line, _, _ in EXPECTED[name]} == marked


@pytest.mark.parametrize("path", sorted(NEGATIVES.glob("*.py")), ids=lambda path: path.name)
def test_look_alikes_are_not_flagged(path: Path) -> None:
    assert scan_paths([path]) == ([], [])


def test_directory_scan_covers_every_positive_in_order() -> None:
    findings, errors = scan_paths([POSITIVES])
    assert errors == []
    assert len(findings) == sum(len(expected) for expected in EXPECTED.values())
    order = [(finding.path, finding.line, finding.column) for finding in findings]
    assert order == sorted(order)


# -- how names are resolved --------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected_lines"),
    [
        pytest.param("import os, signal\nsignal.alarm(1)\n", [2], id="import-list"),
        pytest.param(
            "from signal import alarm\nalarm = print\nalarm(1)\n", [], id="reassigned-after-import"
        ),
        pytest.param(
            "if x:\n    import signal\nelse:\n    signal = None\nsignal.alarm(1)\n",
            [5],
            id="either-branch-counts",
        ),
        pytest.param(
            "from signal import alarm\nfor _ in range(2):\n    alarm(1)\n    alarm = print\n",
            [3],
            id="first-loop-pass",
        ),
        pytest.param(
            "alarm = print\nfor _ in range(2):\n    alarm(1)\n    from signal import alarm\n",
            [3],
            id="second-loop-pass",
        ),
        pytest.param(
            "class C:\n    import signal\n    signal.alarm(1)\n", [3], id="class-body-import"
        ),
        pytest.param(
            "class C:\n    import signal\n    def m(self):\n        signal.alarm(1)\n",
            [],
            id="methods-do-not-see-class-names",
        ),
        pytest.param(
            "def f():\n    global s\n    import signal as s\nf()\ns.alarm(1)\n"
            "def g():\n    global alarm\n    alarm = print\n    alarm(1)\n",
            [],
            id="global-declared-names",
        ),
        pytest.param(
            "import signal\nif (s := signal):\n    s.alarm(1)\n", [3], id="walrus-alias"
        ),
        pytest.param(
            "import signal\narm, sig = signal.alarm, signal.SIGALRM\narm(1)\n"
            "signal.signal(sig, None)\n",
            [3, 4],
            id="tuple-alias",
        ),
        pytest.param(
            "import signal\nsignal.signal(signal.Signals['SIGALRM'], None)\n", [2], id="subscript"
        ),
        pytest.param("import signal\nsignal.signal(*args)\n", [], id="unknown-signal-number"),
        pytest.param(
            "import signal\ntry:\n    pass\nexcept E as signal:\n    signal.alarm(1)\n",
            [],
            id="except-as",
        ),
        pytest.param(
            "import signal\nwith open(p) as signal:\n    signal.alarm(1)\n", [], id="with-as"
        ),
        pytest.param(
            "import signal\nmatch x:\n    case [signal]:\n        signal.alarm(1)\n"
            "    case _:\n        signal.alarm(2)\n",
            [6],
            id="match-capture",
        ),
        pytest.param("from .signal import alarm\nalarm(1)\n", [], id="relative-import"),
        pytest.param(
            "import signal\nfrom signal import *\nsignal.alarm(1)\n",
            [],
            id="star-import-rebinds-signal-to-the-function",
        ),
        pytest.param(
            "import signal\ndef f(x=signal.alarm(1)):\n    pass\n", [2], id="default-argument"
        ),
        pytest.param(
            "import signal\ndef f():\n    def g():\n        return lambda: signal.alarm(1)\n",
            [4],
            id="nested-closures",
        ),
    ],
)
def test_name_resolution(source: str, expected_lines: list[int]) -> None:
    assert lines_of(source) == expected_lines


def test_messages_suggest_the_replacement() -> None:
    source = (
        "import signal\n"
        "signal.alarm(5)\n"
        "signal.alarm(0)\n"
        "signal.signal(signal.SIGALRM, h)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.5)\n"
        "signal.getitimer(signal.ITIMER_REAL)\n"
    )
    alarm, cancel, install, arm, read = (finding.message for finding in scan_source(source))
    assert "`from celery_timeouts import compat as signal`" in alarm
    assert "`celery_timeouts.portable_timeout(5)`" in alarm
    assert "portable_timeout(0)" not in cancel
    assert "disarms itself" in cancel
    assert "`compat.signal(compat.SIGALRM, handler)`" in install
    assert "`compat.setitimer(compat.ITIMER_REAL, 0.5)`" in arm
    assert "`celery_timeouts.portable_timeout(0.5)`" in arm
    assert "`compat.getitimer(compat.ITIMER_REAL)`" in read


def test_finding_is_frozen_and_prints_as_path_line_column() -> None:
    (finding,) = scan_source("import signal\nx = 1; signal.alarm(1)\n", path="task.py")
    assert str(finding) == f"task.py:2:8: {finding.message}"
    with pytest.raises(AttributeError):
        finding.line = 3  # type: ignore[misc]


def test_scan_source_raises_syntax_error() -> None:
    with pytest.raises(SyntaxError):
        scan_source(BROKEN.read_text(encoding="utf-8"), path="broken.py")


# -- scan_paths: files, directories and bad input ----------------------------------------


def test_directory_walk_skips_tool_directories(tmp_path: Path) -> None:
    flagged = "import signal\nsignal.alarm(1)\n"
    for hidden in (".git", ".venv-3.13", "__pycache__", "node_modules", "pkg/.tox"):
        (tmp_path / hidden).mkdir(parents=True, exist_ok=True)
        (tmp_path / hidden / "mod.py").write_text(flagged)
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "task.py").write_text(flagged)
    (tmp_path / "pkg" / "notes.txt").write_text(flagged)
    findings, errors = scan_paths([tmp_path])
    assert errors == []
    assert [finding.path for finding in findings] == [str(tmp_path / "pkg" / "sub" / "task.py")]


def test_named_file_is_scanned_whatever_its_suffix_and_only_once(tmp_path: Path) -> None:
    script = tmp_path / "run_task"
    script.write_text("import signal\nsignal.alarm(1)\n")
    findings, errors = scan_paths([script, os.fspath(script), tmp_path])
    assert errors == []
    assert len(findings) == 1


def test_bad_inputs_become_errors_naming_file_and_problem(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    shutil.copy(BROKEN, broken)
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"import signal\nname = '\xe9'\n")
    missing = tmp_path / "missing.py"
    findings, errors = scan_paths([broken, latin, missing])
    assert findings == []
    assert len(errors) == 3
    assert errors[0].startswith(f"{broken}:3:") and "cannot parse" in errors[0]
    assert errors[1].startswith(f"{latin}:2: cannot decode as utf-8")
    assert errors[2] == f"{missing}: no such file or directory"


def test_coding_cookie_is_honoured(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.py"
    legacy.write_bytes(b"# -*- coding: latin-1 -*-\nimport signal\nx = '\xe9'; signal.alarm(1)\n")
    findings, errors = scan_paths([legacy])
    assert errors == []
    assert positions(findings) == {(3, 10, ALARM)}


# -- the command line --------------------------------------------------------------------


def test_main_clean_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(NEGATIVES)]) == 0
    assert capsys.readouterr() == ("", "")


def test_main_findings_exit_1_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(POSITIVES / "star_import.py")]) == 1
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{POSITIVES / 'star_import.py'}:11:1: signal.signal(SIGALRM")


def test_main_json_matches_scan_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(POSITIVES), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    findings, _ = scan_paths([POSITIVES])
    assert report == {
        "findings": [
            {
                "path": finding.path,
                "line": finding.line,
                "column": finding.column,
                "call": finding.call,
                "message": finding.message,
            }
            for finding in findings
        ],
        "errors": [],
    }


def test_main_unparsable_exits_2_and_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.py"
    shutil.copy(BROKEN, broken)
    assert main([str(broken)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {broken}:3:") and "cannot parse" in err


def test_main_errors_win_over_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    assert main([str(POSITIVES), str(missing), "--format", "json"]) == 2
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["findings"]
    assert report["errors"] == [f"{missing}: no such file or directory"]
    assert f"{missing}: no such file or directory" in err


def test_main_usage_names_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "usage: celery-timeouts scan" in capsys.readouterr().err


def test_subprocess_exit_code_and_output() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from celery_timeouts.scan import main; sys.exit(main(sys.argv[1:]))",
            str(POSITIVES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert completed.returncode == 1, completed.stderr
    assert completed.stderr == ""
    expected_count = sum(len(expected) for expected in EXPECTED.values())
    assert len(completed.stdout.splitlines()) == expected_count


def test_a_marker_comment_keeps_a_line_out_of_the_report() -> None:
    source = (
        "import signal\n"
        "signal.alarm(1)  # celery-timeouts: ignore (main thread only, on purpose)\n"
        "signal.alarm(2)\n"
        "x = '# celery-timeouts: ignore'; signal.alarm(3)\n"  # in a string: not a marker
    )
    assert [finding.line for finding in scan_source(source)] == [3, 4]


def test_this_repository_scans_clean_but_for_the_legacy_example() -> None:
    folders = ["celery_timeouts", "benchmarks", "examples", "tests/celery_apps"]
    findings, errors = scan_paths([REPO / folder for folder in folders])
    assert errors == []
    assert {Path(finding.path).name for finding in findings} == {"legacy_report.py"}
