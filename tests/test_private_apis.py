"""Private APIs live behind a fence: MLflow's in `charrnn.tracking.mlflow_private`, checked here
against the version it names (MLflow 3.17.2); torch's private APIs are not used at all (their public
counterparts are, e.g. `torch.compiler.reset`). An upgrade that moves one fails here, in one place."""
import ast
from pathlib import Path

import mlflow

from charrnn.tracking import mlflow_private

ROOT = Path(__file__).resolve().parents[1] / "charrnn"
FENCE = ROOT / "tracking" / "mlflow_private.py"
# MLflow modules it documents as public API (everything else under mlflow.* is private)
MLFLOW_PUBLIC = ("mlflow", "mlflow.entities", "mlflow.environment_variables", "mlflow.exceptions", "mlflow.tracking")


def _private_part(name: str) -> bool:
    return any(p.startswith("_") and not p.endswith("__") for p in name.split("."))


def private_imports(source: str) -> list[str]:
    """Modules `source` imports that are private: torch._*, or MLflow outside MLFLOW_PUBLIC."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        found += [n for n in names if (n.split(".")[0] == "torch" and _private_part(n))
                  or (n.split(".")[0] == "mlflow" and n not in MLFLOW_PUBLIC)]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch" \
                and _private_part(node.attr):
            found.append(f"torch.{node.attr}")
    return found


def test_the_fence_was_checked_against_the_installed_mlflow():
    assert mlflow.__version__ == mlflow_private.CHECKED_AGAINST == "3.17.2", \
        "check mlflow_private's APIs against this MLflow, then update CHECKED_AGAINST"


def test_the_fenced_mlflow_apis_behave_as_charrnn_relies_on():
    assert mlflow_private.local_file_uri_to_path("file:///tmp/a%20b/c") == "/tmp/a b/c"
    assert mlflow_private.local_file_uri_to_path("/tmp/plain") == "/tmp/plain"
    app = mlflow_private.server_app()
    assert callable(app.after_request) and isinstance(app.extensions, dict)
    assert type(mlflow_private.fastapi_app(app)).__name__ == "FastAPI"
    assert mlflow_private.MLFLOW_RUN_NOTE == "mlflow.note.content"
    assert callable(mlflow_private.SystemMetricsMonitor(  # what tracking.RunHandle starts
        "0" * 32, sampling_interval=10, tracking_uri="sqlite:///:memory:").start)


def test_the_check_finds_private_imports():
    source = "import torch._dynamo\nfrom mlflow.server import app\nimport mlflow.entities\ntorch._dynamo.reset()\n"
    assert private_imports(source) == ["torch._dynamo", "mlflow.server", "torch._dynamo"]


def test_no_module_outside_the_fence_uses_a_private_api():
    found = {str(p.relative_to(ROOT)): private_imports(p.read_text(encoding="utf-8"))
             for p in sorted(ROOT.rglob("*.py")) if p != FENCE}
    assert {path: hits for path, hits in found.items() if hits} == {}
