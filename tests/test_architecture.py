"""The house rules of the architecture (README, docs/architecture.md), checked against the code.

Each rule here is one a reader of the README relies on; a change that breaks one either
fixes the code or changes the README on purpose (and this file with it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "poptune"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The poptune modules ``path`` imports (``from a import b`` counts ``a.b`` when it is a
    module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under a top-level `if`, TYPE_CHECKING's included
        for stmt in tree.body:
            if isinstance(stmt, ast.If):
                nodes = nodes + stmt.body + stmt.orelse
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n in MODULES)
    return found


def _package(name: str) -> str:
    """The unit the cycle rule is about: a top-level module, or a sub-package as a whole."""
    return ".".join(name.split(".")[:2])


def test_no_source_module_is_over_600_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {n: s for n, s in sizes.items() if s > 600} == {}


def _last_name(node: ast.AST) -> str:
    """``study`` for ``study``, ``self.study`` and ``view._study``: what the value is called."""
    if isinstance(node, ast.Name):
        return node.id.lower()
    if isinstance(node, ast.Attribute):
        return node.attr.lower()
    return ""


def test_only_the_study_package_touches_a_study_private_member():
    """Anything called ``study`` (``study``, ``self.study``, ``self._study``) outside the
    Study's package uses only public members: the package's modules are the driver seam."""
    offenders = []
    for name, path in MODULES.items():
        if name == "poptune.study" or name.startswith("poptune.study."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and "study" in _last_name(node.value)
            ):
                offenders.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


@pytest.mark.parametrize(
    "reader", ["poptune.dashboard", "poptune.plot", "poptune.results", "poptune.lineage"]
)
def test_readers_import_no_algorithm(reader):
    """The dashboard, the figures and the results read a study; they never build or consult
    an algorithm (ranking and lineage are data)."""
    for name, path in MODULES.items():
        if name == reader or name.startswith(reader + "."):
            bad = {
                m
                for m in _imports(path, top_level_only=False)
                if m.startswith("poptune.algorithms")
            }
            assert bad == set(), name


def test_lineage_and_results_sit_below_storage_and_study():
    for name in ("poptune.lineage", "poptune.results"):
        imported = _imports(MODULES[name], top_level_only=False)
        assert not {m for m in imported if m.split(".")[1] in ("storage", "study", "execution")}


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        for target in _imports(path, top_level_only=True):
            a, b = _package(name), _package(target)
            if a != b:
                graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            here = todo.pop()
            for nxt in graph.get(here, ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert cycles == []
