"""No import cycles between the modules of ``simledger``.

The layer contract (pyproject.toml ``[tool.importlinter]``, run by ``.ci/run`` as
``lint-imports``) stops imports that point outwards, from one layer to a higher one. It
cannot see two modules of ONE layer importing each other, directly or through a chain:
this test does, on grimp's import graph of the installed package (the graph
import-linter itself builds).

What counts as an import:

* an import inside a function counts: it runs whenever the function does, so the two
  modules need each other as surely as with a top-level import;
* an import under ``if TYPE_CHECKING:`` counts too (grimp's default): the module still
  depends on what it names (mypy reads it, a rename there breaks it), and such a guard
  hides a cycle from the interpreter without removing it. A module that needs to type its
  host (a mixin, a helper called with the ledger) names a Protocol of what it uses;
* a module importing itself (``audit.py`` does, for pickling under ``-m``) is not a cycle
  between modules and is ignored.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import grimp
import pytest

PACKAGE = "simledger"


def import_cycles(graph: grimp.ImportGraph) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative):
    each a set of modules every one of which imports every other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def imported_by(module: str) -> list[str]:
        return sorted(m for m in graph.find_modules_directly_imported_by(module) if m != module)

    for root in sorted(graph.modules):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(imported_by(root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, todo = work[-1]
            step = next(todo, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(imported_by(step))))
                elif step in on_stack:
                    low[module] = min(low[module], index[step])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return sorted(found, key=sorted)


def describe(graph: grimp.ImportGraph, cycle: frozenset[str]) -> str:
    """The cycle's modules and every import between them, with its line."""
    lines = [" <-> ".join(sorted(cycle))]
    for importer in sorted(cycle):
        for imported in sorted(cycle - {importer}):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(
                    f"    {importer} -> {imported} "
                    f"(l.{detail['line_number']}: {detail['line_contents']})"
                )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # cache_dir=None: grimp would otherwise write .grimp_cache into the current directory.
    return grimp.build_graph(PACKAGE, cache_dir=None)


def test_the_graph_is_the_whole_package(graph: grimp.ImportGraph) -> None:
    """A graph missing the layers would find no cycle in them and prove nothing."""
    for layer in ("domain", "projections", "adapters", "application", "runners"):
        assert f"{PACKAGE}.{layer}" in graph.modules
        assert graph.find_children(f"{PACKAGE}.{layer}"), layer


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = import_cycles(graph)
    assert not cycles, "modules that import each other (directly or through a chain):\n" + (
        "\n".join(describe(graph, cycle) for cycle in cycles)
    )


def test_a_cycle_through_a_chain_is_found() -> None:
    """The detector itself: a -> b -> c -> a is one cycle, d -> a and a self-import none."""
    sample = grimp.ImportGraph()
    for importer, imported in [
        ("p.a", "p.b"),
        ("p.b", "p.c"),
        ("p.c", "p.a"),
        ("p.d", "p.a"),
        ("p.d", "p.d"),
        ("p.e", "p.f"),
    ]:
        sample.add_import(importer=importer, imported=imported)
    assert import_cycles(sample) == [frozenset({"p.a", "p.b", "p.c"})]
    sample.remove_import(importer="p.c", imported="p.a")
    assert import_cycles(sample) == []


MAX_LINES = 600


def test_no_module_is_over_the_size_of_one_job(graph: grimp.ImportGraph) -> None:
    """A module that outgrows this holds more than one job (ARCHITECTURE.md)."""
    too_long = {}
    for module in sorted(graph.modules):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        with open(spec.origin, encoding="utf-8") as source:
            lines = sum(1 for _ in source)
        if lines > MAX_LINES:
            too_long[module] = lines
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
