"""The package's parts import one way (cli / pytest plugin -> machine -> run loop ->
cpu, memory, board -> devices; diagnostics read the machine, never the other way).

Every import in every module counts, those inside functions included; only
imports under `if TYPE_CHECKING:` are left out, because they never run (they
name types for annotations). A part is a subpackage (cpu, devices, ...) or a
top-level module (machine, runloop, ...).
"""
from __future__ import annotations

import ast
from pathlib import Path

import unikernel_sim

PACKAGE = Path(unikernel_sim.__file__).parent
CORE = ("machine", "runloop", "breakpoints", "snapshot", "stops", "arch", "cpu", "memory", "devices", "boot")
"""The parts the machine is built from: none of them may import diagnostics."""


def _part(module: str) -> str | None:
    """unikernel_sim.cpu.delivery -> cpu; unikernel_sim.machine -> machine; a name defined
    in the package's __init__ (unikernel_sim.__version__) -> __init__; other packages -> None."""
    names = module.split(".")
    if names[0] != "unikernel_sim":
        return None
    if len(names) == 1:
        return "__init__"
    if (PACKAGE / names[1]).is_dir() or (PACKAGE / f"{names[1]}.py").exists():
        return names[1]
    return "__init__"


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST, this_package: str):
    """Imported module names, walking into functions but not into TYPE_CHECKING blocks."""
    for node in ast.iter_child_nodes(tree):
        if _is_type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = this_package.split(".")[: len(this_package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base == "unikernel_sim":                       # from unikernel_sim import X
                yield from (f"unikernel_sim.{alias.name}" for alias in node.names)
            else:
                yield base
        yield from _imports(node, this_package)


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        source = _part(module)
        for target in _imports(ast.parse(path.read_text()), package):
            part = _part(target)
            if part is not None and part != source:
                graph.setdefault(source, set()).add(part)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_parts():
    graph = import_graph()
    assert cycles(graph) == [], "import cycles between parts of the package"


def test_the_machine_and_its_parts_never_import_diagnostics():
    graph = import_graph()
    offenders = {part for part in CORE if "diagnostics" in graph.get(part, set())}
    assert offenders == set()


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
