"""`.pre-commit-hooks.yaml`: a project adds `celery-timeouts scan` to its pre-commit config.

Runs pre-commit for real (`pre-commit try-repo`): it builds a virtualenv, installs this
package into it from a git repository and runs the hook on a sample project. Offline: pip
takes setuptools and wrapt from the wheelhouse that `scripts/_venv.sh` downloads next to
the venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
}

LEGACY_TASKS = """\
import signal


def handler(signum, frame):
    raise TimeoutError


signal.signal(signal.SIGALRM, handler)
signal.alarm(5)
"""


def git_repository(path: Path, files: dict[str, str]) -> Path:
    """A git repository at `path` with `files` (and whatever is there) committed."""
    path.mkdir(exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    env = {**os.environ, **GIT_IDENTITY}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "sample"]):
        subprocess.run(["git", *command], cwd=path, env=env, check=True)
    return path


def hook_repository(path: Path) -> Path:
    """This package as a hook repository: what pre-commit clones at a tag."""
    shutil.copytree(
        ROOT / "celery_timeouts", path / "celery_timeouts",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    files = {
        name: (ROOT / name).read_text()
        for name in (".pre-commit-hooks.yaml", "pyproject.toml", "README.md")
    }
    return git_repository(path, files)


TryHook = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="module")
def try_hook(tmp_path_factory: pytest.TempPathFactory) -> TryHook:
    if not WHEELHOUSE.is_dir():
        message = f"no wheelhouse at {WHEELHOUSE}: create the venv with scripts/_venv.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("pre-commit")
    hooks = hook_repository(base / "celery-timeouts")
    project = git_repository(base / "project", {
        "tasks.py": LEGACY_TASKS,
        "clean.py": "import time\n\ntime.sleep(0)\n",
        "notes.txt": "signal.alarm(5) in a text file is not Python\n",
    })
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(base / "cache"),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(WHEELHOUSE),
    }

    def run(*files: str) -> subprocess.CompletedProcess[str]:
        selection = ["--files", *files] if files else ["--all-files"]
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "try-repo", str(hooks),
             "celery-timeouts-scan", *selection],
            cwd=project, env=env, capture_output=True, text=True, timeout=600,
        )

    return run


def test_the_hook_reports_sigalrm_code_with_the_fix(try_hook: TryHook) -> None:
    completed = try_hook()
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "celery-timeouts scan" in output and "Failed" in output, output
    assert "tasks.py:8:1: signal.signal(SIGALRM, ...)" in output, output
    assert "tasks.py:9:1: signal.alarm()" in output, output
    assert "compat" in output, output
    assert "clean.py" not in output and "notes.txt" not in output, output


def test_the_hook_passes_clean_files(try_hook: TryHook) -> None:
    completed = try_hook("clean.py", "notes.txt")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Passed" in output, output
