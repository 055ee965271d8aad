"""Architecture over the AST of `charrnn/`: no import cycle (function-level imports included), no
module over 450 lines, MLflow imported by `tracking` alone, and the report, results, statistics and
registry modules never load torch (nor MLflow, except the store readers, through `tracking`)."""
import ast
import functools
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "charrnn"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
# torch-free by design; of them only the store readers reach MLflow, and only through charrnn.tracking
TORCH_FREE = sorted(m for m in MODULES
                    if m.startswith(("charrnn.report", "charrnn.science")) or m == "charrnn.registry")
# the modules of `charrnn.tracking` that import MLflow and that the store readers reach (the UI module aside)
TRACKING_MLFLOW_MODULES = ["charrnn.tracking.mlflow_private", "charrnn.tracking.run_handle", "charrnn.tracking.store"]
STORE_READERS = {"charrnn.science.results", "charrnn.report.store", "charrnn.report.run"}


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(node: ast.AST, name: str, path: Path) -> list[str]:
    """charrnn modules one import statement loads (a submodule also loads its parent packages)."""
    if isinstance(node, ast.Import):
        found = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = _package(name, path).split(".")
            base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
        found = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    loaded = set()
    for target in found:
        parts = target.split(".")
        loaded |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return sorted(t for t in loaded if t in MODULES and t != name and t != "charrnn")


@functools.cache
def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in _targets(node, name, path)}
    return graph


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "charrnn.report.base" in graph["charrnn.report.pages"]
    assert "charrnn.report.kernels" in graph["charrnn.report.run"]
    assert "charrnn.grid.executors" in graph["charrnn.cli"]          # imported inside cmd_grid


def test_no_import_cycle_in_charrnn():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


# The layers, top to bottom: a module may import its own layer and the layers below it, never above.
# Root modules are layers of their own; a subpackage is one layer (its __init__ included).
LAYERS = (
    ("charrnn.cli", "charrnn.__main__"),
    ("charrnn.report",),
    ("charrnn.grid",),
    ("charrnn.run", "charrnn.bench"),
    ("charrnn.capabilities",),
    ("charrnn.science",),
    ("charrnn.rnn", "charrnn.tasks"),
    ("charrnn.tracking",),
    ("charrnn.provenance",),
    ("charrnn.config",),
    ("charrnn.numbers",),
    ("charrnn.registry",),
    ("charrnn.paths", "charrnn.tags"),
)


def layer_of(module: str) -> int:
    """Index of `module`'s layer in LAYERS (0 = top); KeyError for a module outside every layer."""
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise KeyError(module)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in graph.items() if m != "charrnn"
                  for t in targets if layer_of(t) < layer_of(m))


def test_every_module_outside_the_core_lives_in_a_subpackage():
    core = {"cli", "__main__", "config", "registry", "numbers", "tracking", "paths", "tags", "provenance",
            "capabilities"}
    flat = sorted(p.stem for p in ROOT.glob("*.py") if p.stem != "__init__")
    assert [m for m in flat if m not in core] == []
    assert all(layer_of(m) >= 0 for m in MODULES if m != "charrnn")


def test_imports_run_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_the_layer_check_catches_an_upward_import():
    graph = {**import_graph(), "charrnn.science.stats": {"charrnn.grid.spec"}}
    assert upward_imports(graph) == ["charrnn.science.stats -> charrnn.grid.spec"]


def test_report_base_is_the_package_leaf():
    graph = import_graph()
    report = {m for m in MODULES if m.startswith("charrnn.report.")}
    assert not graph["charrnn.report.base"] & report
    assert [m for m in sorted(report) if "charrnn.report.base" not in reachable(m, graph)] == []


@functools.cache
def external_imports(name: str) -> set[str]:
    """Top-level packages outside charrnn that module `name` imports anywhere (functions included)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.partition(".")[0])
    return found - {"charrnn"}


def reachable(name: str, graph: dict[str, set[str]]) -> set[str]:
    """`name` and every charrnn module its imports load, directly or not."""
    seen, todo = set(), [name]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def loaders_of(package: str, name: str, graph: dict[str, set[str]]) -> list[str]:
    """The charrnn modules reachable from `name` that import `package` themselves."""
    return sorted(m for m in reachable(name, graph) if package in external_imports(m))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_at_most_450_lines(name):
    assert len(MODULES[name].read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_the_checks_see_torch_and_mlflow_behind_charrnn_imports():
    graph = import_graph()
    assert "mlflow" in external_imports("charrnn.tracking.store")
    assert "charrnn.rnn.models" in loaders_of("torch", "charrnn.run.train", graph)
    assert loaders_of("mlflow", "charrnn.science.results", graph) == TRACKING_MLFLOW_MODULES


def test_only_tracking_imports_mlflow():
    assert [m for m in MODULES if "mlflow" in external_imports(m)] == sorted(
        TRACKING_MLFLOW_MODULES + ["charrnn.tracking.datasets"])


@pytest.mark.parametrize("name", TORCH_FREE)
def test_report_results_stats_and_registry_never_import_torch(name):
    assert loaders_of("torch", name, import_graph()) == []


@pytest.mark.parametrize("name", TORCH_FREE)
def test_only_the_store_readers_reach_mlflow(name):
    assert loaders_of("mlflow", name, import_graph()) == (TRACKING_MLFLOW_MODULES if name in STORE_READERS else [])


def test_report_pages_and_output_paths_load_neither_torch_nor_mlflow():
    from grid_support import heavy_imports

    assert heavy_imports("charrnn.report.pages") == [] and heavy_imports("charrnn.paths") == []
    assert heavy_imports("charrnn.science.verdicts") == []
