"""The layers, read from the sources: which module uses which.

Rust: a module graph from `crate::…`, `super::…`, `self::…` and child-module
paths in `rust/src`; the query compiler must not reach into the readers
(readers may use the plan's row filter: one direction only), the leaf
modules use nothing of the crate, and the top-level modules form no cycle.
Python: an import graph of `cdrq`, imports inside functions included.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUST = ROOT / "rust" / "src"
PYTHON = ROOT / "python" / "cdrq"

# Modules that use nothing else of the crate: what everything may build on.
RUST_LEAVES = ("crate::error", "crate::values", "crate::schema")


def _strip_rust(text: str) -> str:
    """The source without comments, strings and char literals (braces and
    paths in those are not code)."""
    token = re.compile(
        r"//[^\n]*"
        r"|/\*.*?\*/"
        r'|b?r(#*)".*?"\1'
        r'|b?"(?:\\.|[^"\\])*"'
        r"|b?'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^'\\])'",
        re.S,
    )
    return token.sub(lambda m: " " if m.group(0).startswith(("/", "b'", "'")) else '""', text)


def _module_of(path: Path) -> tuple[str, ...]:
    parts = list(path.relative_to(RUST).with_suffix("").parts)
    if parts[-1] in ("lib", "mod"):
        parts.pop()
    return ("crate", *parts)


def _expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", tree))
    depth, split_at = 0, None
    for i, c in enumerate(tree):
        if c == "{":
            if depth == 0 and split_at is None:
                split_at = i
            depth += 1
        elif c == "}":
            depth -= 1
    if split_at is None:
        return [tree]
    prefix, inner = tree[:split_at], tree[split_at + 1 : -1]
    items, depth, start = [], 0, 0
    for i, c in enumerate(inner + ","):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            if inner[start:i]:
                items.append(inner[start:i])
            start = i + 1
    return [p for item in items for p in _expand_use(prefix + item)]


def rust_graph() -> dict[str, set[str]]:
    """Module → modules it uses (by file, test modules included)."""
    files = {_module_of(p): p for p in RUST.rglob("*.rs")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        code = _strip_rust(path.read_text())
        # Where each offset stands among inline modules (`mod tests { … }`),
        # so that `super::` resolves from the right place.
        inline: list[tuple[int, int, str]] = []  # (start, end, name)
        for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code):
            depth, i = 1, m.end()
            while depth and i < len(code):
                depth += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
            inline.append((m.start(), i, m.group(1)))

        def scope(at: int, inline: list = inline, module: tuple = module) -> tuple[str, ...]:
            names = [name for start, end, name in inline if start <= at < end]
            return (*module, *names)

        paths: list[tuple[int, str]] = []
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            paths += [(m.start(), p) for p in _expand_use(m.group(1))]
        for m in re.finditer(r"(?<![\w:])(?:crate|super|self)(?:::\w+)+", code):
            paths.append((m.start(), m.group(0)))
        for m in re.finditer(r"(?<![\w:])(\w+)(?:::\w+)+", code):
            if (*module, m.group(1)) in modules:
                paths.append((m.start(), m.group(0)))
        used = graph.setdefault(".".join(module), set())
        for at, p in paths:
            segments = p.split("::")
            here = scope(at)
            if segments[0] == "crate":
                target = ["crate"]
                segments = segments[1:]
            elif segments[0] in ("super", "self"):
                target = list(here)
                while segments and segments[0] in ("super", "self"):
                    if segments.pop(0) == "super":
                        target.pop()
            elif (*here, segments[0]) in modules:
                target = list(here)
            else:
                continue  # another crate, or a local item
            for s in segments:
                if (*target, s) not in modules:
                    break
                target.append(s)
            # Inline test modules belong to their file.
            while tuple(target) not in modules:
                target.pop()
            if tuple(target) != module:
                used.add(".".join(target))
    return graph


def _depends(graph: dict[str, set[str]], source: str, target: str) -> list[tuple[str, str]]:
    """Edges from modules at or under `source` to modules at or under `target`."""

    def under(m: str, p: str) -> bool:
        return m == p or m.startswith(p + ".")

    return sorted((m, u) for m, uses in graph.items() if under(m, source) for u in uses if under(u, target))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_rust_graph_sees_known_edges():
    graph = rust_graph()
    # Sanity: a `use super::…` and a `crate::…` path are both seen.
    assert "crate.read.pushdown" in graph["crate.read.json"]
    assert "crate.error" in graph["crate.read"]
    assert "crate.query.pattern" in graph["crate.query.compile"]


def test_query_does_not_depend_on_read():
    assert _depends(rust_graph(), "crate.query", "crate.read") == []


@pytest.mark.parametrize("leaf", RUST_LEAVES)
def test_rust_leaves_use_nothing_of_the_crate(leaf):
    graph = rust_graph()
    assert graph[leaf.replace("::", ".")] == set()


def test_rust_top_level_modules_have_no_cycle():
    graph = rust_graph()
    top: dict[str, set[str]] = {}
    for m, uses in graph.items():
        parts = m.split(".")
        if len(parts) < 2:
            continue
        node = ".".join(parts[:2])
        top.setdefault(node, set()).update(".".join(u.split(".")[:2]) for u in uses if u.count(".") >= 1)
    for node, uses in top.items():
        uses.discard(node)
    assert _cycles(top) == []


def test_only_the_panic_guard_releases_the_gil():
    """Every call into the core from `py/` runs behind `guarded`: it alone
    detaches from Python, catching panics (a panic elsewhere would reach
    Python as `PanicException`, not `CdrqError`)."""
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((RUST / "py").glob("*.rs"))
        for n, line in enumerate(_strip_rust(p.read_text()).splitlines(), 1)
        if re.search(r"\.(detach|allow_threads)\(", line)
    ]
    assert [f.split(":")[0] for f in found] == ["rust/src/py/mod.rs"], found


def test_python_column_types_agree_with_the_core():
    """The column types are the core's (`schema.rs`, `_core.COLUMN_TYPES`):
    what the scan's Polars schema says must be what the readers build."""
    import importlib

    import polars as pl

    from cdrq import _core

    scan = importlib.import_module("cdrq.scan")  # `cdrq.scan` is also the function

    kinds = {"int": pl.Int64, "time": pl.Datetime, "text": pl.String}
    for name, kind in _core.COLUMN_TYPES.items():
        assert scan.dtype_of(name, None).base_type() == kinds[kind], name


def python_graph() -> dict[str, set[str]]:
    """`cdrq` module → `cdrq` modules it imports, at any depth of the code
    (function-local imports count; `if TYPE_CHECKING:` blocks do not run).
    A name imported from the package resolves to the module it re-exports."""
    files = {}
    for path in PYTHON.rglob("*.py"):
        parts = path.relative_to(PYTHON.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    trees = {name: ast.parse(path.read_text()) for name, path in files.items()}
    # The extension module imports nothing of the package.
    for stub in PYTHON.rglob("*.pyi"):
        name = ".".join(stub.relative_to(PYTHON.parent).with_suffix("").parts)
        files.setdefault(name, stub)
        trees.setdefault(name, ast.Module(body=[], type_ignores=[]))
    # Names the package's __init__ takes from its modules.
    reexports = {}
    for node in trees["cdrq"].body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cdrq."):
            for alias in node.names:
                reexports[alias.asname or alias.name] = node.module

    def resolve(module: str, name: str | None) -> str | None:
        if name and f"{module}.{name}" in files:
            return f"{module}.{name}"
        if module == "cdrq" and name in reexports:
            return reexports[name]
        while module and module not in files:
            module = module.rpartition(".")[0]
        return module or None

    def imports(tree: ast.AST, package: str):
        for node in ast.iter_child_nodes(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from (i for child in node.orelse for i in imports(ast.Module(body=[child]), package))
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "cdrq":
                        yield resolve(alias.name, None)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                if base.split(".")[0] == "cdrq":
                    for alias in node.names:
                        yield resolve(base, alias.name)
            yield from imports(node, package)

    graph = {}
    for name, tree in trees.items():
        package = name if files[name].name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in imports(tree, package) if m and m != name}
    return graph


def test_the_python_graph_sees_function_local_imports():
    graph = python_graph()
    assert "cdrq.engines.sql" in graph["cdrq"]  # cdrq.to_sql imports it on first use
    assert "cdrq.services.server" in graph["cdrq.cli"]  # imported by `cdrq serve` alone


def test_python_modules_have_no_import_cycle():
    assert _cycles(python_graph()) == []
