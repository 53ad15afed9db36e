"""Name tracking for the scanner: what each name of a body may stand for.

Only meanings that can lead to a finding are kept: the `signal` module and names
inside it. Everything else (`os`, `x = f()`, ...) is the same as "nothing we
track", so a scope stores few bindings and the copies that branches, loops and
function definitions need stay small whatever the size of the module. (Keeping
every name made a module of n functions cost O(n^2) time and memory: each
definition copied every name bound so far.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping

# What a name may stand for: the dotted names of the objects it can be bound to
# ("signal", "signal.alarm", "signal.Signals.SIGALRM", ...). Empty: nothing we track.
Meanings = frozenset[str]
NOTHING: Meanings = frozenset()

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda

# Nodes with nothing inside (`Load`, `Add`, ...): skipping them is a third of the walk.
_MARKERS = frozenset(
    subclass
    for kind in (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
    for subclass in kind.__subclasses__()
)


def children(node: ast.AST) -> Iterator[ast.AST]:
    """`ast.iter_child_nodes` without the marker nodes (contexts and operators)."""
    for name in node._fields:
        value = getattr(node, name, None)
        if isinstance(value, list):
            for item in value:
                if isinstance(item, ast.AST) and type(item) not in _MARKERS:
                    yield item
        elif isinstance(value, ast.AST) and type(value) not in _MARKERS:
            yield value


def relevant(meanings: Meanings) -> Meanings:
    """Only the meanings a finding can come from: `signal` and what is inside it."""
    if not meanings:
        return NOTHING
    kept = frozenset(name for name in meanings if name == "signal" or name.startswith("signal."))
    return meanings if len(kept) == len(meanings) else kept


class Scope:
    """The names one module, class, comprehension or function body has bound so far.

    `bindings` is sparse: a name without an entry means what the enclosing scope says
    (or nothing, for a function's own locals). An empty entry is kept only where it
    hides a meaning the enclosing scope has, e.g. `alarm = 1` in a class body.
    """

    def __init__(
        self,
        outer: Scope | Mapping[str, Meanings] | None,
        local_names: frozenset[str] | None = None,
        home: Scope | None = None,
    ) -> None:
        # What names this body does not bind refer to: a live scope for bodies that
        # run on the spot (class bodies, comprehensions), a snapshot for functions.
        self.outer = outer
        # A function's locals are fixed at compile time: an unbound local never
        # falls back to the enclosing scope. Modules and classes do fall back.
        self.local_names = local_names
        # Where functions defined here get their free names: class bodies are skipped.
        self._home = home  # None: this scope (not `self`, which would make a cycle)
        self.deferred: list[tuple[FunctionNode, Mapping[str, Meanings]]] = []
        self._bindings: dict[str, Meanings] = {}
        self._view: dict[str, Meanings] | None = None

    @property
    def home(self) -> Scope:
        return self if self._home is None else self._home

    @property
    def bindings(self) -> dict[str, Meanings]:
        """The current bindings; read-only for callers (use `bind` or assign a whole dict)."""
        return self._bindings

    @bindings.setter
    def bindings(self, bindings: dict[str, Meanings]) -> None:
        self._bindings = bindings
        self._view = None

    def bind(self, name: str, meanings: Meanings) -> None:
        meanings = relevant(meanings)
        if meanings or self._hides(name):
            self._bindings[name] = meanings
        else:
            self._bindings.pop(name, None)
        self._view = None

    def lookup(self, name: str) -> Meanings:
        return self._lookup_in(self._bindings, name)

    def _lookup_in(self, bindings: Mapping[str, Meanings], name: str) -> Meanings:
        if name in bindings:
            return bindings[name]
        if self.local_names is not None and name in self.local_names:
            return NOTHING
        return self._outer_lookup(name)

    def _outer_lookup(self, name: str) -> Meanings:
        if self.outer is None:
            return NOTHING
        if isinstance(self.outer, Scope):
            return self.outer.lookup(name)
        return self.outer.get(name, NOTHING)

    def _hides(self, name: str) -> bool:
        """Whether binding `name` to nothing must be recorded to hide an outer meaning."""
        if self.local_names is not None and name in self.local_names:
            return False
        return bool(self._outer_lookup(name))

    def view(self) -> Mapping[str, Meanings]:
        """What a function defined here right now would see for each free name.

        Shared until the bindings change: callers must not modify it.
        """
        if self._view is None:
            if self.outer is None:
                seen: dict[str, Meanings] = {}
            elif isinstance(self.outer, Scope):
                seen = dict(self.outer.view())
            else:
                seen = dict(self.outer)
            if self.local_names:
                for name in [name for name in seen if name in self.local_names]:
                    del seen[name]
            for name, meanings in self._bindings.items():
                if meanings:
                    seen[name] = meanings
                else:
                    seen.pop(name, None)
            self._view = seen
        return self._view

    def merge(self, *states: Mapping[str, Meanings]) -> dict[str, Meanings]:
        """Bindings after control flow joins: a name may hold what any path left in it."""
        names: set[str] = set().union(*states)
        merged: dict[str, Meanings] = {}
        for name in names:
            meanings: Meanings = frozenset().union(
                *(self._lookup_in(state, name) for state in states)
            )
            if meanings or self._hides(name):
                merged[name] = meanings
        return merged


def union_views(*views: Mapping[str, Meanings]) -> dict[str, Meanings]:
    merged: dict[str, Meanings] = {}
    for view in views:
        for name, meanings in view.items():
            merged[name] = merged.get(name, NOTHING) | meanings
    return merged


def local_names(function: FunctionNode, *, walrus: bool = True) -> frozenset[str]:
    """Names a function binds anywhere in its body, which makes them local throughout.

    Statements are followed into their blocks and only binding targets are read;
    expressions are searched (for `:=`) only when `walrus` says the source has one.
    Reading every node of the body instead cost a third of a scan.
    """
    arguments = function.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
    names = {arg.arg for arg in every}
    declared: set[str] = set()
    if isinstance(function, ast.Lambda):
        if walrus:
            names.update(_walrus_targets(function.body))
        return frozenset(names)
    statements: list[ast.AST] = list(function.body)
    while statements:
        node = statements.pop()
        _bound_by(node, names, declared)
        if isinstance(node, (*FUNCTIONS, ast.ClassDef)):
            continue  # their bodies are scopes of their own
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                statements.extend(block)
        if walrus:
            for child in children(node):
                if isinstance(child, ast.expr):
                    names.update(_walrus_targets(child))
    return frozenset(names - declared)


def _bound_by(node: ast.AST, names: set[str], declared: set[str]) -> None:
    """Add what one statement (or handler, or match case) binds in its own scope."""
    match node:
        case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef():
            names.add(node.name)
        case ast.Import() | ast.ImportFrom():
            names.update(
                alias.asname or alias.name.partition(".")[0]
                for alias in node.names
                if alias.name != "*"
            )
        case ast.Global() | ast.Nonlocal():
            declared.update(node.names)
        case ast.Assign() | ast.Delete():
            for target in node.targets:
                _target_names(target, names)
        case ast.AugAssign() | ast.AnnAssign() | ast.For() | ast.AsyncFor():
            _target_names(node.target, names)
        case ast.With() | ast.AsyncWith():
            for item in node.items:
                if item.optional_vars is not None:
                    _target_names(item.optional_vars, names)
        case ast.ExceptHandler(name=str() as name):
            names.add(name)
        case ast.match_case():
            names.update(pattern_names(node.pattern))
        case ast.stmt() if type(node).__name__ == "TypeAlias":  # 3.12: `type X = ...`
            _target_names(node.name, names)  # type: ignore[attr-defined]


def _target_names(target: ast.expr, names: set[str]) -> None:
    """Names an assignment target binds: `a`, `a, *b`, `[a, b]` (not `a.x` or `a[i]`)."""
    match target:
        case ast.Name():
            names.add(target.id)
        case ast.Tuple() | ast.List():
            for element in target.elts:
                _target_names(element, names)
        case ast.Starred():
            _target_names(target.value, names)


def _walrus_targets(expression: ast.AST) -> Iterator[str]:
    """Names `:=` binds in an expression, comprehensions included (they leak out of
    them), lambdas excluded (they bind in the lambda)."""
    nodes = [expression]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            yield node.target.id
        if not isinstance(node, ast.Lambda):
            nodes.extend(children(node))


def pattern_names(pattern: ast.pattern) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(pattern):
        if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name is not None:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest is not None:
            names.add(node.rest)
    return names
