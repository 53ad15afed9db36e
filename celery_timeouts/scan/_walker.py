"""The scanner's walk: statements and expressions in the order Python runs them.

Names are followed in statement order, the way Python binds them: a later
assignment hides an import, both branches of an `if`/`try` count, and a function
body sees what its enclosing scope binds where the function is defined and at the
end of that scope (it may be called at either time).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import cast

from ._names import (
    NOTHING,
    FunctionNode,
    Meanings,
    Scope,
    children,
    local_names,
    pattern_names,
    union_views,
)
from ._rules import STAR_NAMES, Finding, message

# A loop body is re-scanned until its bindings settle; `x = x.attr` never does.
_MAX_LOOP_PASSES = 4
_NO_CALLS = frozenset({ast.Name, ast.Constant})
_TRY_STATEMENTS: tuple[type[ast.stmt], ...] = tuple(
    getattr(ast, name) for name in ("Try", "TryStar") if hasattr(ast, name)
)


class Scanner:
    """Walks a module, binding names in order, and records the calls that need SIGALRM.

    The module may come in pieces (top-level statements parsed a chunk at a time):
    `line_offset` is the number of lines before the piece being walked.
    """

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self.line_offset = 0
        self.walrus = ":=" in source  # else no expression can bind a name
        self._lines: list[str] | None = None
        # Keyed by position so a body scanned twice (a loop, or a function scanned
        # again with more names) reports each call once.
        self.found: dict[tuple[int, int, int, int], Finding] = {}

    def findings(self) -> list[Finding]:
        return sorted(self.found.values(), key=lambda finding: (finding.line, finding.column))

    # -- scopes ---------------------------------------------------------------------

    def finish(self, scope: Scope) -> None:
        """Scan the functions defined in `scope`, now that its final bindings are known."""
        at_end = scope.view()
        for function, at_definition in scope.deferred:
            self.function(function, union_views(at_definition, at_end))
        scope.deferred.clear()

    def function(self, function: FunctionNode, outer: Mapping[str, Meanings]) -> None:
        """Scan one function body, whose free names mean what `outer` says."""
        scope = Scope(outer, local_names=local_names(function, walrus=self.walrus))
        if isinstance(function, ast.Lambda):
            self._expression(function.body, scope)
        else:
            self.run(function.body, scope)
        self.finish(scope)

    def _defer(self, function: FunctionNode, scope: Scope) -> None:
        scope.home.deferred.append((function, scope.home.view()))

    # -- statements -----------------------------------------------------------------

    def run(self, body: Sequence[ast.stmt], scope: Scope) -> None:
        for statement in body:
            self._statement(statement, scope)

    def _statement(self, node: ast.stmt, scope: Scope) -> None:
        if isinstance(node, _TRY_STATEMENTS):
            self._try(cast(ast.Try, node), scope)  # ast.TryStar (3.11+) has the same fields
            return
        match node:
            case ast.FunctionDef() | ast.AsyncFunctionDef():
                self._expressions(node.decorator_list, scope)
                self._signature(node.args, scope)
                self._expression(node.returns, scope)
                self._defer(node, scope)
                scope.bind(node.name, NOTHING)
            case ast.ClassDef():
                self._expressions(node.decorator_list, scope)
                self._expressions(node.bases, scope)
                self._expressions([keyword.value for keyword in node.keywords], scope)
                body = Scope(outer=scope, home=scope.home)
                self.run(node.body, body)
                scope.bind(node.name, NOTHING)
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
                self.run(node.body, scope)
            case ast.Match():
                self._match(node, scope)
            case _:
                self._other_statement(node, scope)

    def _other_statement(self, node: ast.stmt, scope: Scope) -> None:
        """Return, raise, assert, expression statements, and statements newer than us."""
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self._statement(child, scope)
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                scope.bind(child.id, NOTHING)  # e.g. `type Alias = ...` (3.12)
            elif isinstance(child, ast.expr):
                self._expression(child, scope)

    def _import(self, node: ast.Import | ast.ImportFrom, scope: Scope) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname is None:
                    top = alias.name.partition(".")[0]
                    scope.bind(top, frozenset({top}))
                else:
                    scope.bind(alias.asname, frozenset({alias.name}))
            return
        # A relative import names a module of this project, never the standard library.
        module = node.module if node.level == 0 else None
        for alias in node.names:
            if alias.name == "*":
                if module == "signal":
                    for name in STAR_NAMES:
                        scope.bind(name, frozenset({f"signal.{name}"}))
                continue  # another module's star import may bind anything; assume nothing
            bound = frozenset({f"{module}.{alias.name}"}) if module else NOTHING
            scope.bind(alias.asname or alias.name, bound)

    def _bind(self, target: ast.expr, value: ast.expr | None, scope: Scope) -> None:
        """Bind `target` to what `value` means (an alias like `arm = signal.alarm` keeps it)."""
        match target:
            case ast.Name():
                meanings = NOTHING if value is None else self._meanings(value, scope)
                scope.bind(target.id, meanings)
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

    def _loop(self, node: ast.For | ast.AsyncFor | ast.While, scope: Scope) -> None:
        """Scan the body until its bindings settle: a later pass sees what an earlier left."""
        start = dict(scope.bindings)
        for _ in range(_MAX_LOOP_PASSES):
            scope.bindings = dict(start)
            if isinstance(node, ast.While):
                self._expression(node.test, scope)
            else:
                self._bind(node.target, None, scope)
            self.run(node.body, scope)
            merged = scope.merge(start, scope.bindings)
            if merged == start:
                break
            start = merged
        scope.bindings = start
        self.run(node.orelse, scope)

    def _branches(
        self, bodies: Sequence[Sequence[ast.stmt]], scope: Scope, *, may_skip_all: bool
    ) -> None:
        before = dict(scope.bindings)
        outcomes = [before] if may_skip_all else []
        for body in bodies:
            scope.bindings = dict(before)
            self.run(body, scope)
            outcomes.append(scope.bindings)
        scope.bindings = scope.merge(*outcomes)

    def _try(self, node: ast.Try, scope: Scope) -> None:
        before = dict(scope.bindings)
        self.run(node.body, scope)
        after_body = dict(scope.bindings)
        outcomes = []
        for handler in node.handlers:
            # The exception may come from any statement of the body.
            scope.bindings = scope.merge(before, after_body)
            self._expression(handler.type, scope)
            if handler.name is not None:
                scope.bind(handler.name, NOTHING)  # the exception, deleted after
            self.run(handler.body, scope)
            if handler.name is not None:
                scope.bind(handler.name, NOTHING)
            outcomes.append(scope.bindings)
        scope.bindings = dict(after_body)
        self.run(node.orelse, scope)
        outcomes.append(scope.bindings)
        if node.finalbody:
            scope.bindings = scope.merge(before, *outcomes)
            self.run(node.finalbody, scope)
        else:
            scope.bindings = scope.merge(*outcomes)

    def _match(self, node: ast.Match, scope: Scope) -> None:
        self._expression(node.subject, scope)
        before = dict(scope.bindings)
        outcomes = [before]  # no case matched
        for case in node.cases:
            scope.bindings = dict(before)
            for name in pattern_names(case.pattern):
                scope.bind(name, NOTHING)
            self._expression(case.guard, scope)
            self.run(case.body, scope)
            outcomes.append(scope.bindings)
        scope.bindings = scope.merge(*outcomes)

    # -- expressions ----------------------------------------------------------------

    def _signature(self, arguments: ast.arguments, scope: Scope) -> None:
        """Defaults and annotations run where the function is defined."""
        self._expressions(arguments.defaults, scope)
        self._expressions([d for d in arguments.kw_defaults if d is not None], scope)
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        every += [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
        self._expressions([arg.annotation for arg in every if arg.annotation is not None], scope)

    def _expressions(self, nodes: Sequence[ast.expr], scope: Scope) -> None:
        for node in nodes:
            self._expression(node, scope)

    def _expression(self, node: ast.AST | None, scope: Scope) -> None:
        if node is None or type(node) in _NO_CALLS:
            return  # most nodes: a fast way out
        match node:
            case ast.Lambda():
                self._signature(node.args, scope)
                self._defer(node, scope)
            case ast.ListComp() | ast.SetComp() | ast.GeneratorExp() | ast.DictComp():
                self._comprehension(node, scope)
            case ast.NamedExpr():
                self._expression(node.value, scope)
                self._bind(node.target, node.value, scope)
            case _:
                for child in children(node):
                    self._expression(child, scope)
                if isinstance(node, ast.Call):
                    self._check_call(node, scope)

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp, scope: Scope
    ) -> None:
        # The first iterable runs outside; targets and the rest live in their own scope.
        self._expression(node.generators[0].iter, scope)
        targets = frozenset(
            name.id
            for generator in node.generators
            for name in ast.walk(generator.target)
            if isinstance(name, ast.Name)
        )
        inner = Scope(outer=scope, local_names=targets)
        for index, generator in enumerate(node.generators):
            if index:
                self._expression(generator.iter, inner)
            self._bind(generator.target, None, inner)
            self._expressions(generator.ifs, inner)
        if isinstance(node, ast.DictComp):
            self._expressions([node.key, node.value], inner)
        else:
            self._expression(node.elt, inner)
        self.finish(inner)

    def _meanings(self, node: ast.expr, scope: Scope) -> Meanings:
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
        return NOTHING

    # -- findings -------------------------------------------------------------------

    def _check_call(self, call: ast.Call, scope: Scope) -> None:
        functions = self._meanings(call.func, scope)
        if not functions:
            return

        def means(node: ast.expr | None, wanted: Meanings) -> bool:
            return node is not None and not self._meanings(node, scope).isdisjoint(wanted)

        for function in sorted(functions):
            text = message(function, call, means)
            if text is not None:
                line = call.lineno + self.line_offset
                key = (line, call.col_offset, call.end_lineno or 0, call.end_col_offset or 0)
                self.found[key] = Finding(self.path, line, self._column(call), function, text)
                return

    def _column(self, node: ast.expr) -> int:
        """1-based character column: `col_offset` counts UTF-8 bytes."""
        if self._lines is None:
            self._lines = re.split(r"\r\n|\r|\n", self.source)
        line = node.lineno + self.line_offset
        if line > len(self._lines):
            return node.col_offset + 1
        prefix = self._lines[line - 1].encode("utf-8")[: node.col_offset]
        return len(prefix.decode("utf-8", errors="replace")) + 1
