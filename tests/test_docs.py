"""The README fits a newcomer's screen budget, every page it links exists, and the config-key table
in docs/ is the one `TrainConfig` generates."""
import dataclasses
import re

from grid_support import REPO

from charrnn.config import FIELD_TYPES, TrainConfig
from charrnn.report.config_keys import CONFIG_KEYS_END, CONFIG_KEYS_START, key_table, main

README = REPO / "README.md"
CONFIG_DOC = REPO / "docs" / "grids-and-config.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def local_links(path):
    return [t for t in LINK.findall(path.read_text(encoding="utf-8")) if "://" not in t]


def test_readme_is_at_most_250_lines_and_links_the_docs():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250
    docs = {t for t in local_links(README) if t.startswith("docs/") and t.endswith(".md")}
    assert {"docs/grids-and-config.md", "docs/claims-and-verdicts.md", "docs/scaling-out.md",
            "docs/kernels.md", "docs/findings.md"} <= docs


def test_every_local_link_of_the_readme_and_the_docs_exists():
    pages = [README, *sorted((REPO / "docs").glob("*.md"))]
    missing = [(page.name, target) for page in pages for target in local_links(page)
               if not (page.parent / target).exists()]
    assert not missing


def test_the_config_key_table_is_generated_from_train_config():
    committed = committed_table()
    assert committed == key_table(), "run `make docs` after changing TrainConfig"
    rows = re.findall(r"^\| `(\w+)` \|", committed, flags=re.M)
    assert rows == [f.name for f in dataclasses.fields(TrainConfig)]


@dataclasses.dataclass(frozen=True)
class ExtendedConfig(TrainConfig):
    # --- added in a test ---
    new_key: int = 3                # a key the committed docs do not list


def committed_table() -> str:
    text = CONFIG_DOC.read_text(encoding="utf-8")
    return text[text.index(CONFIG_KEYS_START) + len(CONFIG_KEYS_START):text.index(CONFIG_KEYS_END)].strip()


def test_a_new_config_field_makes_the_committed_table_stale(monkeypatch):
    monkeypatch.setattr("charrnn.report.config_keys.TrainConfig", ExtendedConfig)
    monkeypatch.setitem(FIELD_TYPES, "new_key", int)
    table = key_table()
    assert "| `new_key` | `3` | an integer | a key the committed docs do not list |" in table
    assert table != committed_table()


def test_main_writes_the_table_between_the_markers(tmp_path):
    doc = tmp_path / "keys.md"
    doc.write_text(f"intro\n{CONFIG_KEYS_START}\n{CONFIG_KEYS_END}\nend\n")
    assert main([str(doc)]) == 0
    assert doc.read_text() == f"intro\n{CONFIG_KEYS_START}\n{key_table()}\n{CONFIG_KEYS_END}\nend\n"


def test_a_document_without_the_markers_is_refused_and_left_alone(tmp_path, capsys):
    doc = tmp_path / "keys.md"
    doc.write_text("no markers\n")
    assert main([str(doc)]) == 2 and doc.read_text() == "no markers\n"
    assert capsys.readouterr().err.count("\n") == 1


CLAIMS_DOC = REPO / "docs" / "claims-and-verdicts.md"


def committed_claims_list() -> str:
    from charrnn.report.claims_list import CLAIMS_LIST_END, CLAIMS_LIST_START
    text = CLAIMS_DOC.read_text(encoding="utf-8")
    return text[text.index(CLAIMS_LIST_START) + len(CLAIMS_LIST_START):text.index(CLAIMS_LIST_END)].strip()


def test_the_per_grid_claims_list_is_generated_from_the_grids():
    from charrnn.report.claims_list import claim_grid_files, claims_list
    committed = committed_claims_list()
    assert committed == claims_list(), "run `make docs` after changing a grid's claims"
    grids = re.findall(r"^- \*\*`(\w+)`\*\*", committed, flags=re.M)
    assert grids == [p.stem for p in claim_grid_files()] and len(grids) >= 10


def test_a_grid_with_another_claim_makes_the_committed_list_stale(tmp_path):
    import shutil

    from charrnn.report.claims_list import claim_grid_files, claims_list
    for path in claim_grid_files():
        shutil.copy(path, tmp_path / path.name)
    grid = tmp_path / "depth_residual.yaml"
    grid.write_text(grid.read_text(encoding="utf-8").replace("residual_helps_8_layers", "residual_helps_at_8"),
                    encoding="utf-8")
    assert "`residual_helps_at_8`" in claims_list(tmp_path) and claims_list(tmp_path) != committed_claims_list()


def test_the_kernel_page_shows_the_readmes_auto_over_fused_headline_from_the_committed_bench():
    import json

    bench = json.loads((REPO / "results" / "examples" / "bench-auto-vs-fused-cpu.json").read_text())
    info = bench["benchmarks"][0]["extra_info"]
    headline = f"{info['ratio']:.2f}×"
    assert f"{headline} fused" in README.read_text(encoding="utf-8").replace("x fused", "× fused")
    page = (REPO / "reports" / "examples" / "kernels.html").read_text(encoding="utf-8")
    assert f"at {headline} fused's tokens/s" in page and "bench-auto-vs-fused-cpu.json" in page
