"""One sign convention everywhere: a claim's effect is shown in the claimed direction (positive means
as claimed) by verdicts.csv, the experiment page and the index (as Chromium renders them), the
`charrnn report` line, findings.md, and the grid's MLflow parent run (its `claim.<id>.*` metrics and
its description, read through the MLflow API), all from `verdict_table.directed_effect`. The claim
here is "lower val_loss", so the turned sign matters."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from grid_support import TINY_FIXED, empty_store_db, grid_data, parents, runs_of, store, write_grid  # noqa: F401

from report_browser import Browser, BrowserMissing

from charrnn.cli import main
from charrnn.grid.summary import claim_metric_name
from charrnn import numbers
from charrnn.report.findings import findings_markdown
from charrnn.science.verdict_table import AS_CLAIMED
from charrnn.tags import NOTE_TAG, verdict_tag

CLAIM = "cell=gru_vs_vanilla"


@pytest.fixture
def reported(store, tmp_path, monkeypatch, capsys):
    """A tiny cell grid trained and reported: the parent run, verdicts.csv's row, the pages, the CLI's output."""
    reports = tmp_path / "reports"
    monkeypatch.setenv("CHARRNN_REPORTS_DIR", str(reports))
    path = write_grid(tmp_path, grid_data(axes={"cell": ["vanilla", "gru"]}, fixed=dict(TINY_FIXED)))
    assert main(["grid", str(path), "--no-progress"]) == 0
    assert main(["report", "tiny"]) == 0
    [parent] = parents(runs_of("tiny", store))
    row = pd.read_csv(reports / "verdicts.csv").set_index("claim").loc[CLAIM]
    return parent, row, reports, capsys.readouterr().out


def test_every_view_of_a_claim_shows_the_same_signed_effect(reported):
    parent, row, reports, cli = reported
    assert row["metric"] == "val_loss" and row["effect_sense"] == AS_CLAIMED
    effect, low, high = (float(row[k]) for k in ("effect", "low", "high"))
    assert low < effect < high

    # MLflow: the parent's metrics and description, in the claimed direction
    for part, value in (("effect", effect), ("low", low), ("high", high)):
        assert math.isclose(parent.metrics[claim_metric_name(CLAIM, part)], value, rel_tol=1e-9), part
    signed = (f"{'+' if effect > 0 else ''}{numbers.difference(effect, 'val_loss')} "
              f"{numbers.interval(low, high, 'val_loss')}")                # the pages' formatter
    assert signed in parent.tags[NOTE_TAG] and signed in cli          # the description; `charrnn grid`'s output
    assert parent.tags[verdict_tag(CLAIM)] == row["adjusted_verdict"]

    # the pages, the CLI's report line and findings.md: the same number, with + when positive
    shown = numbers.difference(effect, "val_loss")
    shown = f"+{shown}" if effect > 0 else shown
    try:
        with Browser() as browser:
            pages = [browser.text(reports / "tiny.html"), browser.text(reports / "index.html")]
    except BrowserMissing as err:
        pytest.fail(f"headless Chromium is needed to read the pages: {err}", pytrace=False)
    for text in (*pages, cli, findings_markdown(pd.read_csv(reports / "verdicts.csv"), ".")):
        assert shown in text
