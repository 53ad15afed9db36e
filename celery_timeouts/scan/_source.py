"""Scanning one module's source in pieces, so memory stays bounded on huge files.

Python's `ast` objects take about 600 bytes per node: a 10 MB generated module is
over a gigabyte as one tree. The module is parsed a chunk of top-level statements
at a time instead, walked, and dropped. Functions are scanned when their chunk is;
one whose module-level names change later (say, `import signal` at the end of the
file) is parsed again at the end and scanned with those names too.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import io
import re
import tokenize
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ._names import FUNCTIONS, FunctionNode, Meanings, Scope, union_views
from ._rules import Finding
from ._walker import Scanner

# A comment with this on the line of a call keeps it out of the report (code that runs
# only in the main thread on purpose).
IGNORE_MARKER = "celery-timeouts: ignore"

# Where a top-level statement may start: a name or a decorator in column 0 that does
# not continue a compound statement. A split inside a string or brackets makes the
# piece before it fail to parse, and the piece is then grown: a wrong guess costs
# time, never a wrong result.
_STATEMENT_START = re.compile(r"^(?!(?:else|elif|except|finally)\b)[A-Za-z_@]", re.MULTILINE)
_CHUNK_CHARACTERS = 1 << 16

_FunctionKey = tuple[str, int, int]  # node type, line within its chunk, column


@dataclass
class _Chunk:
    start: int
    end: int
    line_offset: int
    functions: list[tuple[_FunctionKey, Mapping[str, Meanings]]] = field(default_factory=list)


def scan_source(source: str, path: str = "<string>") -> list[Finding]:
    """Every SIGALRM-based call in `source`, in line order; `path` only labels findings.

    Raises SyntaxError when `source` does not parse, and ValueError when it holds a
    null byte (Python 3.11 and older).
    """
    with _collector_paused():
        if "signal" not in source:
            # Every spelling we report imports a module named `signal`; broken input
            # must still raise, so it is parsed all the same (a piece at a time).
            for _ in _parsed_chunks(source, path):
                pass
            return []
        findings = _scan_module(source, path)
    if findings and IGNORE_MARKER in source:
        ignored = _ignored_lines(source)
        findings = [finding for finding in findings if finding.line not in ignored]
    return findings


def _scan_module(source: str, path: str) -> list[Finding]:
    scanner = Scanner(path, source)
    module = Scope(outer=None)
    chunks: list[_Chunk] = []
    for chunk, tree in _parsed_chunks(source, path):
        scanner.line_offset = chunk.line_offset
        scanner.run(tree.body, module)
        for function, at_definition in module.deferred:
            scanner.function(function, at_definition)
            chunk.functions.append((_key(function), at_definition))
        module.deferred.clear()
        chunks.append(chunk)
    at_end = module.view()
    for chunk in chunks:
        _rescan_changed(scanner, chunk, at_end, path)
    return scanner.findings()


def _rescan_changed(
    scanner: Scanner, chunk: _Chunk, at_end: Mapping[str, Meanings], path: str
) -> None:
    """Scan again the functions of `chunk` that see more at the end of the module."""
    changed: dict[_FunctionKey, dict[str, Meanings]] = {}
    for key, at_definition in chunk.functions:
        seen = union_views(at_definition, at_end)
        if seen != at_definition:
            changed[key] = seen
    if not changed:
        return
    tree = ast.parse(scanner.source[chunk.start : chunk.end], filename=path)
    scanner.line_offset = chunk.line_offset
    for node in ast.walk(tree):
        if isinstance(node, FUNCTIONS) and (names := changed.get(_key(node))) is not None:
            scanner.function(node, names)


def _key(function: FunctionNode) -> _FunctionKey:
    return (type(function).__name__, function.lineno, function.col_offset)


def _parsed_chunks(source: str, path: str) -> Iterator[tuple[_Chunk, ast.Module]]:
    """The module as consecutive runs of whole top-level statements, each parsed."""
    start, line_offset = 0, 0
    while start < len(source):
        size = _CHUNK_CHARACTERS
        while True:
            split = _STATEMENT_START.search(source, start + size)
            end = split.start() if split is not None else len(source)
            text = source[start:end]
            try:
                tree = ast.parse(text, filename=path)
            except SyntaxError as error:
                if end < len(source):
                    size *= 2  # the split fell inside a statement: take more
                    continue
                _shift(error, line_offset)
                raise
            break
        yield _Chunk(start, end, line_offset), tree
        del tree
        line_offset += _line_breaks(text)
        start = end


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic GC: the scan makes no cycles, and the collections that its
    millions of short-lived tree nodes trigger took a third of its time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _line_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _shift(error: SyntaxError, line_offset: int) -> None:
    """Make a chunk's syntax error name its line in the whole file."""
    if error.lineno is not None:
        error.lineno += line_offset
    end_lineno = getattr(error, "end_lineno", None)
    if end_lineno is not None:
        error.end_lineno = end_lineno + line_offset


def _ignored_lines(source: str) -> frozenset[int]:
    """Lines whose comment carries IGNORE_MARKER (comments only, never strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return frozenset(
        token.start[0]
        for token in tokens
        if token.type == tokenize.COMMENT and IGNORE_MARKER in token.string
    )
