"""The package's layout rule, read from every module's syntax tree.

`ratscore/` (the inference path) never imports `ratscore.training` or `ratscore.synth`, except
`ratscore.cli`, which wires every part to a command; `ratscore.synth` never imports
`ratscore.training`; and no module imports itself back through others. Imports inside functions
and `importlib.import_module("...")` calls count as much as those at the top of a file.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ratscore"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, known: dict) -> str | None:
    """The known module a dotted name lands in: itself, else the longest known prefix."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: dict) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name` may name a submodule
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        for target in targets:
            hit = resolve(target, known) if target.startswith("ratscore") else None
            if hit and hit != module:
                found.add(hit)
    return found


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def part(module: str) -> str:
    for sub in ("ratscore.training", "ratscore.synth"):
        if module == sub or module.startswith(sub + "."):
            return sub
    return "ratscore"


def test_the_graph_is_read(graph):
    # a reader that sees nothing would pass every rule below
    assert "ratscore.training.bundle" in graph["ratscore.cli"]
    assert "ratscore.model" in graph["ratscore.pipeline"]
    assert "ratscore.synth" in graph["ratscore.training.bundle"]


def test_inference_never_imports_training_or_synth(graph):
    wrong = sorted(f"{m} -> {t}" for m, targets in graph.items() if part(m) == "ratscore" and m != "ratscore.cli"
                   for t in targets if part(t) != "ratscore")
    assert not wrong, "the inference modules import training or synth:\n" + "\n".join(wrong)


def test_synth_never_imports_training(graph):
    wrong = sorted(f"{m} -> {t}" for m, targets in graph.items() if part(m) == "ratscore.synth"
                   for t in targets if part(t) == "ratscore.training")
    assert not wrong, "\n".join(wrong)


def find_cycle(graph: dict) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for t in sorted(graph.get(m, ())):
            if t == m or t.startswith(m + "."):  # a package importing its own modules is not a cycle
                continue
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if state.get(t) is None:
                cycle = visit(t)
                if cycle:
                    return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if state.get(m) is None:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def test_no_import_cycles(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_reader_sees_imports_inside_functions_and_importlib(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from .training import bundle\n"
                      "import importlib\nimportlib.import_module('ratscore.synth')\n")
    known = {"ratscore": None, "ratscore.m": None, "ratscore.training": None, "ratscore.training.bundle": None,
             "ratscore.synth": None}
    found = imports_of("ratscore.m", source, known)
    assert found == {"ratscore.training.bundle", "ratscore.synth"}
