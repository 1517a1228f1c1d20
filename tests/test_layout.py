"""The house rules, read from the source: imports point one way (no cycle, no upward import,
also inside functions), no module over 500 lines, no function over 80 lines.

The layers, lowest first; a module may import its own layer and those below (a cycle within a
layer still fails). README's development section shows the same map.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "tasks")

LAYERS: tuple[tuple[str, ...], ...] = (
    ("bench.errors", "bench.registry", "bench.config", "bench.args", "bench.stats", "bench.recipes"),
    ("bench.records",),
    ("bench.spec",),
    ("methods", "tasks"),
    (
        "bench.models",
        "bench.train",
        "bench.loglik",
        "bench.decode",
        "bench.evaluate",
        "bench.lm_eval_bridge",
        "bench.measure",
        "bench.distributed",
        "bench.nvml",
        "bench.skeleton",
        "bench.matching",
        "bench.validation",
        "bench.report",
        "bench.micro",
        "bench.micro_step",
        "bench.evalspeed",
        "bench.hub",
    ),
    ("bench.runner",),
    ("bench.launch",),
    ("bench.executors", "bench.executor_args"),
    ("bench.plan", "bench.tune"),
    ("bench.regress", "bench.regress_rules", "bench.scale", "bench.checks", "bench.gpu_checks", "bench.commands"),
    ("bench.cli", "bench.__main__", "bench"),
)
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def layer(module: str) -> int:
    """The layer of ``module``: its longest listed prefix decides."""
    best = (-1, -1)
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best[0]:
                best = (len(name), index)
    if best[1] < 0:
        raise AssertionError(f"module {module} is in no layer of tests/test_layout.py; add it to LAYERS")
    return best[1]


def resolve(name: str) -> str | None:
    """The project module an import names (a submodule if it is one, else its package)."""
    while name:
        if name in SOURCES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> set[str]:
    """Project modules ``module`` imports anywhere in its file, except under ``if TYPE_CHECKING``."""
    tree = ast.parse(SOURCES[module].read_text(encoding="utf-8"))
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    package = module if SOURCES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from bench import records`` names the submodule; ``from bench.x import f``, bench.x
            names = [
                f"{base}.{a.name}" if resolve(f"{base}.{a.name}") == f"{base}.{a.name}" else base for a in node.names
            ]
        else:
            continue
        found |= {r for n in names if (r := resolve(n)) and r != module}
    return found


GRAPH = {m: imports(m) for m in SOURCES}


def test_every_module_has_a_layer():
    for module in SOURCES:
        layer(module)


def test_no_upward_import():
    upward = [
        f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
        for m, deps in GRAPH.items()
        for d in sorted(deps)
        if layer(d) > layer(m) and not (m.startswith(d + ".") or d.startswith(m + "."))
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a package importing its own submodules is no cycle)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep.startswith(node + "."):  # a package's __init__ importing its own submodules
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "p": {"p.x"}, "p.x": set()}) is None


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_sizes(module):
    path = SOURCES[module]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path} has {len(text.splitlines())} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


TESTS = {p.stem for p in (ROOT / "tests").rglob("test_*.py")}
TESTED_ELSEWHERE = {
    "bench": "the package's docstring only",
    "bench.__main__": "calls bench.cli.main (tests/bench/test_cli.py)",
    "bench.commands": "the package's docstring only",
    "bench.report": "write_report: tests/bench/report/test_report_write.py",
    "methods": "the registry: tests/bench/test_registry.py",
    "tasks": "the registry: tests/tasks/test_task_registry.py",
}


def test_every_module_has_a_test_module():
    """``pkg/a/b.py`` is tested by ``test_b.py`` or ``test_a_b.py`` (``_`` prefixes dropped;
    ``methods/_base.py`` and ``tasks/_base.py``: ``test_method_base``, ``test_task_base``)."""
    missing = []
    for module in SOURCES:
        if module in TESTED_ELSEWHERE:
            continue
        parts = [p.lstrip("_") for p in module.split(".")]
        names = {f"test_{parts[-1]}", f"test_{'_'.join(parts[-2:])}", f"test_{parts[0].rstrip('s')}_{parts[-1]}"}
        if not names & TESTS:
            missing.append(f"{module} (one of {sorted(names)})")
    assert not missing, "modules without a test module: " + ", ".join(missing)
