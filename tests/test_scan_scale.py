"""`celery_timeouts.scan` on large and hostile input: linear cost, chunked parsing that
keeps every result, only regular files read, and internal errors reported as errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from celery_timeouts import scan
from celery_timeouts.scan import main, scan_paths, scan_source

REPO = Path(__file__).parent.parent

FUNCTION = """
def task_{i}(items, limit={i}):
    signal.signal(signal.SIGALRM, handler)
    signal.alarm(limit % 60 + 1)
    try:
        for item in items:
            if item > {i}:
                limit += item
        return [value * 2 for value in items if value]
    finally:
        signal.alarm(0)
"""


def generated_module(functions: int) -> str:
    return "import signal\n" + "".join(FUNCTION.format(i=i) for i in range(functions))


def test_a_megabyte_module_scans_in_bounded_time() -> None:
    # 1 MB, 3.5k functions: about 1 s here; the quadratic scanner took minutes on
    # this (4k functions: 13 s; 8k: over 120 s). 60 s allows for a loaded CI machine.
    source = generated_module(1_000_000 // len(FUNCTION) + 100)
    assert len(source) >= 1_000_000
    started = time.monotonic()
    findings = scan_source(source, "generated.py")
    elapsed = time.monotonic() - started
    assert len(findings) == 3 * source.count("\ndef task_")
    assert elapsed < 60, f"scanning 1 MB took {elapsed:.1f} s"


def test_pieces_see_names_bound_later_in_the_module() -> None:
    # Far apart, so the function and the import land in different parsed pieces.
    filler = "".join(f"value_{i} = [\n{i},\n]\n" for i in range(20_000))
    source = f"def early():\n    alarm(1)\n{filler}from signal import alarm\n"
    assert [(finding.line, finding.call) for finding in scan_source(source)] == [
        (2, "signal.alarm")
    ]


def test_pieces_never_split_a_string_or_a_compound_statement() -> None:
    text_block = "".join(f"signal = {i}\n" for i in range(10_000))  # column 0, in a string
    body = "".join(f"    value_{i} = {i}\n" for i in range(10_000))
    branches = "".join(f"elif x == {i}:\n{body}" for i in range(3))
    source = (
        "import signal\n"
        f'TEXT = """\n{text_block}"""\n'
        f"if x:\n{body}{branches}else:\n    signal.alarm(1)\n"
    )
    (finding,) = scan_source(source)
    assert finding.line == source.count("\n") and finding.call == "signal.alarm"


def test_a_syntax_error_far_down_names_its_line(tmp_path: Path) -> None:
    lines = ["import signal\n"] + [f"value_{i} = {i}\n" for i in range(50_000)]
    lines.append("def broken(:\n")
    path = tmp_path / "big.py"
    path.write_text("".join(lines))
    findings, errors = scan_paths([path])
    assert findings == []
    assert errors and errors[0].startswith(f"{path}:{len(lines)}:"), errors
    assert "cannot parse" in errors[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_py_is_skipped_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "task.py").write_text("import signal\nsignal.alarm(1)\n")
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    notes: list[str] = []
    findings, errors = scan_paths([tmp_path, fifo], notes)
    assert errors == []
    assert [Path(finding.path).name for finding in findings] == ["task.py"]
    assert notes == [f"{fifo}: skipped: not a regular file"]
    assert main([str(fifo)]) == 0
    assert capsys.readouterr().err == f"note: {fifo}: skipped: not a regular file\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_the_command_line_does_not_hang_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    completed = subprocess.run(
        [sys.executable, "-m", "celery_timeouts", "scan", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert completed.returncode == 0, completed.stderr
    assert "skipped: not a regular file" in completed.stderr


def test_a_device_is_skipped() -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    notes: list[str] = []
    assert scan_paths(["/dev/zero"], notes) == ([], [])
    assert notes == ["/dev/zero: skipped: not a regular file"]


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("scanner bug")])
def test_an_internal_error_exits_2_not_1(
    error: BaseException,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a.py").write_text("import signal\nsignal.alarm(1)\n")

    def fail(source: str, path: str = "<string>") -> list[scan.Finding]:
        raise error

    # Stands in for a scanner bug or an out-of-memory on a huge file.
    monkeypatch.setattr(scan._files, "scan_source", fail)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'a.py'}: internal error"), err


@pytest.mark.parametrize(
    ("source", "expected_lines"),
    [
        pytest.param(
            "import signal\ndef f():\n    class C:\n        signal = 1\n    signal.alarm(1)\n",
            [5],
            id="a-class-body-binds-nothing-in-the-function",
        ),
        pytest.param(
            "import signal\ndef f():\n    def signal():\n        pass\n    signal.alarm(1)\n",
            [],
            id="a-nested-def-binds-its-name",
        ),
        pytest.param(
            "import signal\ndef f():\n    signal.alarm(1)\n    if (signal := None):\n"
            "        pass\n",
            [],
            id="a-walrus-makes-a-local",
        ),
        pytest.param(
            "import signal\ndef f():\n    signal.alarm(1)\n    [signal for signal in ()]\n",
            [3],
            id="a-comprehension-target-is-not-a-local",
        ),
        pytest.param(
            "import signal\ndef f():\n    signal.alarm(1)\n    for a, (b, *signal) in x:\n"
            "        pass\n",
            [],
            id="a-nested-loop-target-makes-a-local",
        ),
        pytest.param(
            "import signal\ndef f():\n    signal.alarm(1)\n    try:\n        pass\n"
            "    except E:\n        with x as (y, signal):\n            pass\n",
            [],
            id="a-target-deep-in-blocks-makes-a-local",
        ),
    ],
)
def test_what_a_function_binds_is_local_throughout(source: str, expected_lines: list[int]) -> None:
    assert [finding.line for finding in scan_source(source)] == expected_lines
