"""`celery-timeouts scan`: find SIGALRM-based timeouts that only work in the main thread.

Python runs signal handlers in the main thread only, and `signal.signal` raises
ValueError anywhere else, so `signal.alarm`-style timeouts break under Celery's
threads, gevent and eventlet pools. The scanner reads source with `ast` (it never
imports it) and resolves each name through the imports of its own module, so
`sg.alarm(5)`, `from signal import alarm as a` and `from signal import *` are found
while `self.signal(...)`, `celery.signals` and a local `def alarm()` are not.

Names are followed in statement order, the way Python binds them: a later
assignment hides an import, both branches of an `if`/`try` count, and a function
body sees what its enclosing scope binds where the function is defined and at the
end of that scope (it may be called at either time).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import sys
import tokenize
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import cast

__all__ = ["Finding", "add_arguments", "main", "run", "scan_paths", "scan_source"]


@dataclass(frozen=True)
class Finding:
    """One SIGALRM-based call: where it is, which `signal` function, and the fix."""

    path: str
    line: int
    column: int  # 1-based, counted in characters like other linters
    call: str  # the canonical function: "signal.alarm", "signal.signal", ...
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


# What a name may stand for: the dotted names of the objects it can be bound to
# ("signal", "signal.alarm", "celery.signals", ...). Empty means nothing we track.
_Meanings = frozenset[str]
_NOTHING: _Meanings = frozenset()

_SIGALRM = frozenset({"signal.SIGALRM", "signal.Signals.SIGALRM"})
_ITIMER_REAL = frozenset({"signal.ITIMER_REAL"})
# `from signal import *` binds every public name; only these can lead to a finding.
_STAR_NAMES = ("signal", "alarm", "setitimer", "getitimer", "SIGALRM", "ITIMER_REAL", "Signals")
# A loop body is re-scanned until its bindings settle; `x = x.attr` never does.
_MAX_LOOP_PASSES = 4
_TRY_STATEMENTS: tuple[type[ast.stmt], ...] = tuple(
    getattr(ast, name) for name in ("Try", "TryStar") if hasattr(ast, name)
)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda

_FIX_IMPORT = "`from celery_timeouts import compat as signal` (per-thread alarm)"
_SIGNALS_ONLY_IN_MAIN = "SIGALRM handlers run only in the main thread"


class _Scope:
    """The names one module, class or function body has bound so far."""

    def __init__(
        self,
        outer: Mapping[str, _Meanings],
        local_names: frozenset[str] | None = None,
        home: _Scope | None = None,
    ) -> None:
        self.bindings: dict[str, _Meanings] = {}
        self.outer = outer  # what names this body does not bind refer to
        # A function's locals are fixed at compile time: an unbound local never
        # falls back to the enclosing scope. Modules and classes do fall back.
        self.local_names = local_names
        # Where functions defined here get their free names: class bodies are skipped.
        self.home: _Scope = home if home is not None else self
        self.deferred: list[tuple[_FunctionNode, dict[str, _Meanings]]] = []

    def lookup(self, name: str) -> _Meanings:
        return self._lookup_in(self.bindings, name)

    def _lookup_in(self, bindings: Mapping[str, _Meanings], name: str) -> _Meanings:
        if name in bindings:
            return bindings[name]
        if self.local_names is not None and name in self.local_names:
            return _NOTHING
        return self.outer.get(name, _NOTHING)

    def view(self) -> dict[str, _Meanings]:
        """What a function defined here right now would see for each free name."""
        seen = dict(self.outer)
        for name in self.local_names or ():
            seen[name] = _NOTHING
        seen.update(self.bindings)
        return seen

    def merge(self, *states: Mapping[str, _Meanings]) -> dict[str, _Meanings]:
        """Bindings after control flow joins: a name may hold what any path left in it."""
        names: set[str] = set().union(*states)
        return {
            name: frozenset().union(*(self._lookup_in(state, name) for state in states))
            for name in names
        }


def _union_views(*views: Mapping[str, _Meanings]) -> dict[str, _Meanings]:
    merged: dict[str, _Meanings] = {}
    for view in views:
        for name, meanings in view.items():
            merged[name] = merged.get(name, _NOTHING) | meanings
    return merged


class _Scanner:
    """Walks one module, binding names in order, and records the calls that need SIGALRM."""

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self._lines: list[str] | None = None
        # Keyed by node so a loop body scanned twice reports its calls once.
        self.found: dict[int, Finding] = {}

    def scan_module(self, tree: ast.Module) -> list[Finding]:
        scope = _Scope(outer={})
        self._run(tree.body, scope)
        self._finish(scope)
        return sorted(self.found.values(), key=lambda finding: (finding.line, finding.column))

    # -- scopes ---------------------------------------------------------------------

    def _finish(self, scope: _Scope) -> None:
        """Scan the functions defined in `scope`, now that its final bindings are known."""
        at_end = scope.view()
        for function, at_definition in scope.deferred:
            self._function(function, _union_views(at_definition, at_end))
        scope.deferred.clear()

    def _function(self, function: _FunctionNode, outer: Mapping[str, _Meanings]) -> None:
        scope = _Scope(outer, local_names=_local_names(function))
        if isinstance(function, ast.Lambda):
            self._expression(function.body, scope)
        else:
            self._run(function.body, scope)
        self._finish(scope)

    def _defer(self, function: _FunctionNode, scope: _Scope) -> None:
        scope.home.deferred.append((function, scope.home.view()))

    # -- statements -----------------------------------------------------------------

    def _run(self, body: Sequence[ast.stmt], scope: _Scope) -> None:
        for statement in body:
            self._statement(statement, scope)

    def _statement(self, node: ast.stmt, scope: _Scope) -> None:
        if isinstance(node, _TRY_STATEMENTS):
            self._try(cast(ast.Try, node), scope)  # ast.TryStar (3.11+) has the same fields
            return
        match node:
            case ast.FunctionDef() | ast.AsyncFunctionDef():
                self._expressions(node.decorator_list, scope)
                self._signature(node.args, scope)
                self._expression(node.returns, scope)
                self._defer(node, scope)
                scope.bindings[node.name] = _NOTHING
            case ast.ClassDef():
                self._expressions(node.decorator_list, scope)
                self._expressions(node.bases, scope)
                self._expressions([keyword.value for keyword in node.keywords], scope)
                body = _Scope(outer=scope.view(), home=scope.home)
                self._run(node.body, body)
                scope.bindings[node.name] = _NOTHING
            case ast.Import() | ast.ImportFrom():
                self._import(node, scope)
            case ast.Assign():
                self._expression(node.value, scope)
                for target in node.targets:
                    self._bind(target, node.value, scope)
            case ast.AnnAssign():
                self._expression(node.annotation, scope)
                if node.value is not None:
                    self._expression(node.value, scope)
                    self._bind(node.target, node.value, scope)
            case ast.AugAssign():
                self._expression(node.value, scope)
                self._bind(node.target, None, scope)
            case ast.Delete():
                for target in node.targets:
                    self._bind(target, None, scope)
            case ast.For() | ast.AsyncFor():
                self._expression(node.iter, scope)
                self._loop(node, scope)
            case ast.While():
                self._expression(node.test, scope)
                self._loop(node, scope)
            case ast.If():
                self._expression(node.test, scope)
                self._branches([node.body, node.orelse], scope, may_skip_all=False)
            case ast.With() | ast.AsyncWith():
                for item in node.items:
                    self._expression(item.context_expr, scope)
                    if item.optional_vars is not None:
                        self._bind(item.optional_vars, None, scope)
                self._run(node.body, scope)
            case ast.Match():
                self._match(node, scope)
            case _:
                self._other_statement(node, scope)

    def _other_statement(self, node: ast.stmt, scope: _Scope) -> None:
        """Return, raise, assert, expression statements, and statements newer than us."""
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self._statement(child, scope)
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                scope.bindings[child.id] = _NOTHING  # e.g. `type Alias = ...` (3.12)
            elif isinstance(child, ast.expr):
                self._expression(child, scope)

    def _import(self, node: ast.Import | ast.ImportFrom, scope: _Scope) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname is None:
                    top = alias.name.partition(".")[0]
                    scope.bindings[top] = frozenset({top})
                else:
                    scope.bindings[alias.asname] = frozenset({alias.name})
            return
        # A relative import names a module of this project, never the standard library.
        module = node.module if node.level == 0 else None
        for alias in node.names:
            if alias.name == "*":
                if module == "signal":
                    for name in _STAR_NAMES:
                        scope.bindings[name] = frozenset({f"signal.{name}"})
                continue  # another module's star import may bind anything; assume nothing
            bound = frozenset({f"{module}.{alias.name}"}) if module else _NOTHING
            scope.bindings[alias.asname or alias.name] = bound

    def _bind(self, target: ast.expr, value: ast.expr | None, scope: _Scope) -> None:
        """Bind `target` to what `value` means (an alias like `arm = signal.alarm` keeps it)."""
        match target:
            case ast.Name():
                meanings = _NOTHING if value is None else self._meanings(value, scope)
                scope.bindings[target.id] = meanings
            case ast.Tuple() | ast.List():
                values: list[ast.expr | None] = [None] * len(target.elts)
                if (
                    isinstance(value, (ast.Tuple, ast.List))
                    and len(value.elts) == len(values)
                    and not any(isinstance(elt, ast.Starred) for elt in target.elts + value.elts)
                ):
                    values = list(value.elts)
                for element, element_value in zip(target.elts, values, strict=True):
                    self._bind(element, element_value, scope)
            case ast.Starred():
                self._bind(target.value, None, scope)
            case _:
                self._expression(target, scope)  # `obj.attr = ...`, `items[f()] = ...`

    def _loop(self, node: ast.For | ast.AsyncFor | ast.While, scope: _Scope) -> None:
        """Scan the body until its bindings settle: a later pass sees what an earlier left."""
        start = dict(scope.bindings)
        for _ in range(_MAX_LOOP_PASSES):
            scope.bindings = dict(start)
            if isinstance(node, ast.While):
                self._expression(node.test, scope)
            else:
                self._bind(node.target, None, scope)
            self._run(node.body, scope)
            merged = scope.merge(start, scope.bindings)
            if merged == start:
                break
            start = merged
        scope.bindings = start
        self._run(node.orelse, scope)

    def _branches(
        self, bodies: Sequence[Sequence[ast.stmt]], scope: _Scope, *, may_skip_all: bool
    ) -> None:
        before = dict(scope.bindings)
        outcomes = [before] if may_skip_all else []
        for body in bodies:
            scope.bindings = dict(before)
            self._run(body, scope)
            outcomes.append(scope.bindings)
        scope.bindings = scope.merge(*outcomes)

    def _try(self, node: ast.Try, scope: _Scope) -> None:
        before = dict(scope.bindings)
        self._run(node.body, scope)
        after_body = scope.bindings
        outcomes = []
        for handler in node.handlers:
            # The exception may come from any statement of the body.
            scope.bindings = scope.merge(before, after_body)
            self._expression(handler.type, scope)
            if handler.name is not None:
                scope.bindings[handler.name] = _NOTHING  # the exception, deleted after
            self._run(handler.body, scope)
            if handler.name is not None:
                scope.bindings[handler.name] = _NOTHING
            outcomes.append(scope.bindings)
        scope.bindings = dict(after_body)
        self._run(node.orelse, scope)
        outcomes.append(scope.bindings)
        if node.finalbody:
            scope.bindings = scope.merge(before, *outcomes)
            self._run(node.finalbody, scope)
        else:
            scope.bindings = scope.merge(*outcomes)

    def _match(self, node: ast.Match, scope: _Scope) -> None:
        self._expression(node.subject, scope)
        before = dict(scope.bindings)
        outcomes = [before]  # no case matched
        for case in node.cases:
            scope.bindings = dict(before)
            for name in _pattern_names(case.pattern):
                scope.bindings[name] = _NOTHING
            self._expression(case.guard, scope)
            self._run(case.body, scope)
            outcomes.append(scope.bindings)
        scope.bindings = scope.merge(*outcomes)

    # -- expressions ----------------------------------------------------------------

    def _signature(self, arguments: ast.arguments, scope: _Scope) -> None:
        """Defaults and annotations run where the function is defined."""
        self._expressions(arguments.defaults, scope)
        self._expressions([d for d in arguments.kw_defaults if d is not None], scope)
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        every += [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
        self._expressions([arg.annotation for arg in every if arg.annotation is not None], scope)

    def _expressions(self, nodes: Sequence[ast.expr], scope: _Scope) -> None:
        for node in nodes:
            self._expression(node, scope)

    def _expression(self, node: ast.AST | None, scope: _Scope) -> None:
        match node:
            case None:
                return
            case ast.Lambda():
                self._signature(node.args, scope)
                self._defer(node, scope)
            case ast.ListComp() | ast.SetComp() | ast.GeneratorExp() | ast.DictComp():
                self._comprehension(node, scope)
            case ast.NamedExpr():
                self._expression(node.value, scope)
                self._bind(node.target, node.value, scope)
            case _:
                for child in ast.iter_child_nodes(node):
                    self._expression(child, scope)
                if isinstance(node, ast.Call):
                    self._check_call(node, scope)

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp, scope: _Scope
    ) -> None:
        # The first iterable runs outside; targets and the rest live in their own scope.
        self._expression(node.generators[0].iter, scope)
        targets = frozenset(
            name.id
            for generator in node.generators
            for name in ast.walk(generator.target)
            if isinstance(name, ast.Name)
        )
        inner = _Scope(outer=scope.view(), local_names=targets)
        for index, generator in enumerate(node.generators):
            if index:
                self._expression(generator.iter, inner)
            self._bind(generator.target, None, inner)
            self._expressions(generator.ifs, inner)
        if isinstance(node, ast.DictComp):
            self._expressions([node.key, node.value], inner)
        else:
            self._expression(node.elt, inner)
        self._finish(inner)

    def _meanings(self, node: ast.expr, scope: _Scope) -> _Meanings:
        """The dotted names `node` may evaluate to, e.g. `sg.alarm` -> {"signal.alarm"}."""
        match node:
            case ast.Name():
                return scope.lookup(node.id)
            case ast.Attribute():
                bases = self._meanings(node.value, scope)
                return frozenset(f"{base}.{node.attr}" for base in bases)
            case ast.Subscript(slice=ast.Constant(value=str() as member)):
                bases = self._meanings(node.value, scope)
                return frozenset(f"{base}.{member}" for base in bases if base == "signal.Signals")
            case ast.NamedExpr():
                return self._meanings(node.value, scope)
        return _NOTHING

    # -- findings -------------------------------------------------------------------

    def _check_call(self, call: ast.Call, scope: _Scope) -> None:
        for function in sorted(self._meanings(call.func, scope)):
            message = self._message(function, call, scope)
            if message is not None:
                self.found[id(call)] = Finding(
                    self.path, call.lineno, self._column(call), function, message
                )
                return

    def _message(self, function: str, call: ast.Call, scope: _Scope) -> str | None:
        """The finding's message if this call of `function` needs SIGALRM, else None."""
        if function == "signal.alarm":
            return _alarm_message(_number(_argument(call, 0, "seconds")))
        if function == "signal.signal":
            if not self._means(_argument(call, 0, "signalnum"), _SIGALRM, scope):
                return None
            return (
                "signal.signal(SIGALRM, ...) raises ValueError outside the main thread; "
                "use `compat.signal(compat.SIGALRM, handler)` (`from celery_timeouts import "
                "compat`) or `celery_timeouts.portable_timeout(seconds)`"
            )
        if function not in ("signal.setitimer", "signal.getitimer"):
            return None
        if not self._means(_argument(call, 0, "which"), _ITIMER_REAL, scope):
            return None  # ITIMER_VIRTUAL and ITIMER_PROF send other signals
        if function == "signal.getitimer":
            return (
                "signal.getitimer(ITIMER_REAL) reads the process-wide SIGALRM timer; "
                "use `compat.getitimer(compat.ITIMER_REAL)` (`from celery_timeouts import "
                "compat`) or `celery_timeouts.remaining()`"
            )
        seconds = _number(_argument(call, 1, "seconds"))
        return (
            f"signal.setitimer(ITIMER_REAL, ...): {_SIGNALS_ONLY_IN_MAIN}; "
            f"use `compat.setitimer(compat.ITIMER_REAL, {_seconds_text(seconds)})` "
            f"(`from celery_timeouts import compat`) {_portable_hint(seconds)}"
        )

    def _means(self, node: ast.expr | None, wanted: _Meanings, scope: _Scope) -> bool:
        return node is not None and not self._meanings(node, scope).isdisjoint(wanted)

    def _column(self, node: ast.expr) -> int:
        """1-based character column: `col_offset` counts UTF-8 bytes."""
        if self._lines is None:
            self._lines = re.split(r"\r\n|\r|\n", self.source)
        if node.lineno > len(self._lines):
            return node.col_offset + 1
        prefix = self._lines[node.lineno - 1].encode("utf-8")[: node.col_offset]
        return len(prefix.decode("utf-8", errors="replace")) + 1


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    """The argument at `position` or passed as `keyword`; None when `*args` hides it."""
    for index, argument in enumerate(call.args):
        if isinstance(argument, ast.Starred):
            return None
        if index == position:
            return argument
    for passed in call.keywords:
        if passed.arg == keyword:
            return passed.value
    return None


def _number(node: ast.expr | None) -> int | float | None:
    """A literal number of seconds, to quote in the suggested fix; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return None if isinstance(node.value, bool) else node.value
    return None


def _seconds_text(seconds: int | float | None) -> str:
    return "seconds" if seconds is None else repr(seconds)


def _portable_hint(seconds: int | float | None) -> str:
    if seconds == 0:  # disarming: the scope does that itself
        return "or drop it: `celery_timeouts.portable_timeout(...)` disarms itself on exit"
    return f"or `celery_timeouts.portable_timeout({_seconds_text(seconds)})`"


def _alarm_message(seconds: int | float | None) -> str:
    label = "signal.alarm(0)" if seconds == 0 else "signal.alarm()"
    return f"{label}: {_SIGNALS_ONLY_IN_MAIN}; use {_FIX_IMPORT} {_portable_hint(seconds)}"


def _local_names(function: _FunctionNode) -> frozenset[str]:
    """Names a function binds anywhere in its body, which makes them local throughout."""
    arguments = function.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
    names = {arg.arg for arg in every}
    declared: set[str] = set()
    body = [function.body] if isinstance(function, ast.Lambda) else function.body
    for node in _nodes_of_scope(body):
        match node:
            case ast.Name(ctx=ast.Store() | ast.Del()):
                names.add(node.id)
            case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef():
                names.add(node.name)
            case ast.Import() | ast.ImportFrom():
                names.update(
                    alias.asname or alias.name.partition(".")[0]
                    for alias in node.names
                    if alias.name != "*"
                )
            case ast.ExceptHandler(name=str() as name):
                names.add(name)
            case ast.pattern():
                names.update(_pattern_names(node))
            case ast.Global() | ast.Nonlocal():
                declared.update(node.names)
    return frozenset(names - declared)


def _nodes_of_scope(top: Sequence[ast.AST]) -> Iterator[ast.AST]:
    """Every node in this scope; nested functions and classes yield only themselves."""
    nodes = list(top)
    while nodes:
        node = nodes.pop()
        yield node
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            continue
        if isinstance(node, _COMPREHENSIONS):
            # Loop targets bind inside the comprehension; only a walrus leaks out.
            for inner in ast.walk(node):
                if isinstance(inner, ast.NamedExpr):
                    nodes.append(inner.target)
            continue
        nodes.extend(ast.iter_child_nodes(node))


def _pattern_names(pattern: ast.pattern) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(pattern):
        if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name is not None:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest is not None:
            names.add(node.rest)
    return names


def scan_source(source: str, path: str = "<string>") -> list[Finding]:
    """Every SIGALRM-based call in `source`, in line order; `path` only labels findings.

    Raises SyntaxError when `source` does not parse, and ValueError when it holds a
    null byte (Python 3.11 and older).
    """
    tree = ast.parse(source, filename=path)  # parse first: broken input must still raise
    if "signal" not in source:
        return []  # every spelling we report imports a module named `signal`
    findings = _Scanner(path, source).scan_module(tree)
    if findings and IGNORE_MARKER in source:
        ignored = _ignored_lines(source)
        findings = [finding for finding in findings if finding.line not in ignored]
    return findings


# A comment with this on the line of a call keeps it out of the report (code that runs
# only in the main thread on purpose).
IGNORE_MARKER = "celery-timeouts: ignore"


def _ignored_lines(source: str) -> frozenset[int]:
    """Lines whose comment carries IGNORE_MARKER (comments only, never strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return frozenset(
        token.start[0]
        for token in tokens
        if token.type == tokenize.COMMENT and IGNORE_MARKER in token.string
    )


class _Unscannable(Exception):
    """A file that cannot be read, decoded or parsed; the message names it and why."""


_SKIPPED_DIRECTORIES = frozenset({"__pycache__", "node_modules"})


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


def _read_source(path: str) -> str:
    """The text of `path`, decoded the way Python would (BOM, coding cookie, else UTF-8)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise _Unscannable(f"{path}: cannot read: {error.strerror or error}") from error
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


def scan_paths(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Finding], list[str]]:
    """Scan files and directory trees; return the findings and one message per bad input.

    A directory is searched recursively for `*.py`, skipping hidden directories,
    `__pycache__` and `node_modules`; a file named directly is scanned whatever its
    suffix. Never raises for bad input: a missing path, an unreadable or undecodable
    file and a syntax error each become an entry in the error list.
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
    return findings, errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Give `parser` the scan options, so `celery-timeouts scan` can be a subcommand."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="file or directory to scan (directories: every *.py below, recursively)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: one `path:line:col: message` per finding; json: one JSON object",
    )


def run(args: argparse.Namespace) -> int:
    """Scan `args.paths`, print in `args.format`; 0 clean, 1 findings, 2 unscannable input."""
    findings, errors = scan_paths(args.paths)
    if args.format == "json":
        report = {"findings": [asdict(finding) for finding in findings], "errors": errors}
        print(json.dumps(report, indent=2))
    else:
        for finding in findings:
            print(finding)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 2
    return 1 if findings else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`celery-timeouts scan PATH... [--format text|json]`; returns the exit code.

    Exit codes: 0 nothing found, 1 findings, 2 any path could not be scanned (even
    with findings). Bad options exit through argparse's SystemExit(2).
    """
    parser = argparse.ArgumentParser(
        prog="celery-timeouts scan",
        description=(
            "Report signal.alarm-style timeouts (SIGALRM, ITIMER_REAL), which work only "
            "in the main thread and so break under Celery's threads, gevent and "
            "eventlet pools."
        ),
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
