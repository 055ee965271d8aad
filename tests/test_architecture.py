"""Architecture over the AST of `charrnn/`: no import cycle (function-level imports included), and
the report package and the statistics modules stay small."""
import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "charrnn"
MAX_LINES = 450
SMALL = [*sorted((ROOT / "report").glob("*.py")), *(ROOT / f"{m}.py" for m in
                                                     ("claims", "verdicts", "stats", "paths", "sequential"))]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


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
    assert "charrnn.report_kernels" in graph["charrnn.report.run"]
    assert "charrnn.executors" in graph["charrnn.cli"]          # imported inside cmd_grid


def test_no_import_cycle_in_charrnn():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_report_base_is_the_package_leaf():
    graph = import_graph()
    report = {m for m in MODULES if m.startswith("charrnn.report.")}
    assert not graph["charrnn.report.base"] & report
    assert all("charrnn.report.base" in graph[m] or m == "charrnn.report.base" for m in report)


@pytest.mark.parametrize("path", SMALL, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_at_most_450_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_report_pages_and_output_paths_load_neither_torch_nor_mlflow():
    from grid_support import heavy_imports

    assert heavy_imports("charrnn.report.pages") == [] and heavy_imports("charrnn.paths") == []
    assert heavy_imports("charrnn.verdicts") == []
