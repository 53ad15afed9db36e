"""Which files a scan reads, and reading them the way Python would."""

from __future__ import annotations

import io
import os
import stat
import tokenize
from collections.abc import Iterator, Sequence

from ._rules import Finding
from ._source import scan_source

_SKIPPED_DIRECTORIES = frozenset({"__pycache__", "node_modules"})
# Opening a FIFO for reading waits for a writer; non-blocking, it returns at once
# and `fstat` then says what it is.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class _Unscannable(Exception):
    """A file that cannot be read, decoded or parsed; the message names it and why."""


class _NotAFile(Exception):
    """A FIFO, socket or device: never read (a FIFO would wait, a device never end)."""


def scan_paths(
    paths: Sequence[str | os.PathLike[str]], notes: list[str] | None = None
) -> tuple[list[Finding], list[str]]:
    """Scan files and directory trees; return the findings and one message per bad input.

    A directory is searched recursively for `*.py`, skipping hidden directories,
    `__pycache__` and `node_modules`; a file named directly is scanned whatever its
    suffix. Only regular files are read: a FIFO, socket or device is skipped, with a
    message appended to `notes` when given. Never raises for bad input: a missing
    path, an unreadable or undecodable file, a syntax error, and a file the scanner
    itself fails on (out of memory included) each become an entry in the error list.
    """
    findings: list[Finding] = []
    errors: list[str] = []
    seen: set[str] = set()
    for path in _python_files(paths, errors):
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            findings.extend(_scan_file(path))
        except _Unscannable as error:
            errors.append(str(error))
        except _NotAFile as skipped:
            if notes is not None:
                notes.append(str(skipped))
        except MemoryError:
            errors.append(f"{path}: internal error: out of memory while scanning it")
        except Exception as error:  # a scanner bug must not read as "no findings"
            errors.append(f"{path}: internal error: {type(error).__name__}: {error}")
    return findings, errors


def _python_files(paths: Sequence[str | os.PathLike[str]], errors: list[str]) -> Iterator[str]:
    """Named files as given, and `*.py` under named directories, skipping tool folders."""
    for given in paths:
        path = os.fspath(given)
        if os.path.isdir(path):
            yield from _walk(path, errors)
        elif os.path.exists(path):
            yield path
        else:
            errors.append(f"{path}: no such file or directory")


def _walk(root: str, errors: list[str]) -> Iterator[str]:
    def unreadable(error: OSError) -> None:
        errors.append(f"{error.filename}: cannot list directory: {error.strerror}")

    for directory, subdirectories, files in os.walk(root, onerror=unreadable):
        # Hidden directories include .git, .venv, .venv-3.13, .tox and the like.
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if not name.startswith(".") and name not in _SKIPPED_DIRECTORIES
        )
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def _scan_file(path: str) -> list[Finding]:
    source = _read_source(path)
    try:
        return scan_source(source, path)
    except SyntaxError as error:
        where = f"{path}:{error.lineno}" if error.lineno else path
        if error.lineno and error.offset:
            where += f":{error.offset}"
        raise _Unscannable(f"{where}: cannot parse: {error.msg}") from error
    except ValueError as error:  # a null byte, before Python 3.12 made it a SyntaxError
        raise _Unscannable(f"{path}: cannot parse: {error}") from error
    except RecursionError as error:
        raise _Unscannable(f"{path}: cannot parse: expressions nested too deeply") from error


def _read_bytes(path: str) -> bytes:
    """The bytes of `path` if it is a regular file; raises _NotAFile for anything else."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _NotAFile(f"{path}: skipped: not a regular file")
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        raise _Unscannable(f"{path}: cannot read: {error.strerror or error}") from error
    with os.fdopen(descriptor, "rb") as file:
        # Checked again on what was opened: the path may have changed since `stat`.
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise _NotAFile(f"{path}: skipped: not a regular file")
        try:
            return file.read()
        except OSError as error:
            raise _Unscannable(f"{path}: cannot read: {error.strerror or error}") from error


def _read_source(path: str) -> str:
    """The text of `path`, decoded the way Python would (BOM, coding cookie, else UTF-8)."""
    data = _read_bytes(path)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:
        raise _Unscannable(f"{path}: cannot decode: {error.msg}") from error
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise _Unscannable(
            f"{path}:{line}: cannot decode as {encoding}: {error.reason} "
            f"(byte {data[error.start]:#04x}); declare the encoding or save it as UTF-8"
        ) from error
