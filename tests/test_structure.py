"""The code's shape: no import cycles (counting imports inside functions), models independent of data and
checkpoints, no private names imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unetseg"


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str]]:
    """(module imported, name imported) for every import anywhere in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in known else base, alias.name))
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return [(m, n) for m, n in found if m.startswith("unetseg")]


def test_the_import_graph_has_no_cycles_even_through_imports_inside_functions():
    known = modules()
    graph = {m: {t for t, _ in imports(m, p, known) if t in known and t != m} for m, p in known.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif not state.get(t):
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(known):
        if not state.get(m):
            visit(m, [m])
    assert cycles == []


def test_models_import_no_data_checkpoint_or_training_code():
    known = modules()
    for m, p in known.items():
        if m.startswith("unetseg.models"):
            bad = [t for t, _ in imports(m, p, known)
                   if t.startswith(("unetseg.data", "unetseg.checkpoint", "unetseg.training", "unetseg.workflow"))]
            assert bad == [], (m, bad)


def test_no_private_name_is_imported_from_another_module():
    known = modules()
    private = [(m, t, n) for m, p in known.items() for t, n in imports(m, p, known)
               if n.startswith("_") and not n.startswith("__") and t != m]
    assert private == []
