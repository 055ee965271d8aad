"""Everything decided about a backend lives in its `registry.Backend` entry: no module outside the
registry and the factory modules the entries name compares a backend name as a string (`== "scan"`,
`in ("fused", "fused_nocudnn")`, `.startswith("fused")`); they ask the entry instead."""
import ast
from pathlib import Path

from charrnn import registry

ROOT = Path(__file__).resolve().parents[1] / "charrnn"
NAMES = set(registry.BACKENDS)   # (not `auto`: a device choice too)
FACTORY_MODULES = {ref.partition(":")[0] for b in registry.BACKENDS.values() for ref in (b.layer,)}
ALLOWED = {"charrnn.registry"} | FACTORY_MODULES


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _names_in(node: ast.AST) -> list[str]:
    """Backend names written as string literals in `node`: a constant, or a tuple/list/set of them."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in NAMES]


def name_comparisons(source: str) -> list[str]:
    """`line: name` for every backend name compared as a string literal in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            names = [n for side in (node.left, *node.comparators) for n in _names_in(side)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith", "removeprefix", "removesuffix")):
            names = [n for arg in node.args for n in _names_in(arg)]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names]
    return found


def test_the_factory_modules_are_the_ones_the_entries_name():
    assert FACTORY_MODULES == {"charrnn.rnn.cells", "charrnn.rnn.loop_layers", "charrnn.rnn.mincells",
                               "charrnn.rnn.native_min"}


def test_the_check_finds_equality_membership_and_prefix_comparisons():
    source = 'a == "scan"\nif b in ("fused", "fused_nocudnn"): pass\nc.startswith("fused")\nd != "gru"\n'
    assert name_comparisons(source) == ["1: scan", "2: fused", "2: fused_nocudnn", "3: fused"]


def test_no_module_outside_the_registry_and_the_factories_compares_backend_names():
    found = {module_name(p): name_comparisons(p.read_text(encoding="utf-8")) for p in sorted(ROOT.rglob("*.py"))
             if module_name(p) not in ALLOWED}
    assert {m: hits for m, hits in found.items() if hits} == {}
