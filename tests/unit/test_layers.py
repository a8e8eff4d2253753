"""Layers point down: core under streams, streams under models, all of them under the CLI.

Read from the source with ``ast`` (every import, including those inside functions), so a lazy
import cannot hide an upward edge. docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tonewatch", "streams", "models")
# the local-stack launcher is a developer tool: only these entry points may start it
STACK_USERS = ("tonewatch.cli", "tonewatch.commands", "tonewatch.demo", "tonewatch.bench", "tonewatch.perf",
               "tonewatch.stack")
# what each layer may import of ours (besides itself)
ALLOWED = {
    "tonewatch.core": ("tonewatch.core",),
    "streams": ("streams", "tonewatch.core"),
    "models": ("models", "streams", "tonewatch.core"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _imports(path: Path, known: dict[str, Path], top_level_only: bool = False) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            yield from subs or [node.module]


def _layer(module: str) -> str | None:
    return next((layer for layer in ALLOWED if _within(module, layer)), None)


def test_no_layer_imports_upward() -> None:
    known = _modules()
    upward = []
    for module, path in known.items():
        layer = _layer(module)
        if layer is None:
            continue
        upward += [f"{module} -> {target}" for target in _imports(path, known)
                   if not any(_within(target, allowed) for allowed in ALLOWED[layer])]
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(set(upward)))


def test_only_entry_points_import_the_local_stack_launcher() -> None:
    known = _modules()
    offenders = [f"{module} -> {target}" for module, path in known.items()
                 if not any(_within(module, user) for user in STACK_USERS)
                 for target in _imports(path, known) if _within(target, "tonewatch.stack")]
    assert not offenders, "production code importing tonewatch.stack:\n" + "\n".join(sorted(offenders))


def test_the_worker_never_imports_training_code() -> None:
    known = _modules()
    offenders = [f"{module} -> {target}" for module, path in known.items() if _within(module, "streams")
                 for target in _imports(path, known) if _within(target, "models")]
    assert not offenders, "\n".join(offenders)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, if it has any (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_modules() -> None:
    known = _modules()
    graph = {m: {t for t in _imports(p, known) if t in known and t != m} for m, p in known.items()}
    found = _cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
