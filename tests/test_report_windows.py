"""The experiment page and verdicts.csv put the interval over test windows beside the seed interval."""
import json
import re

import numpy as np
import pandas as pd

from charrnn.report.pages import render_experiment, render_index
from charrnn.tags import TEST_WINDOWS_ARTIFACT
from claim_support import SCOPE
from report_synthetic import make_experiment

CLAIM = {"source": "seed 002", **SCOPE, "metric": "test_loss",
         "expect": {"input_combine": "concat", "better_than": "add"}}


def with_windows(exp, window_sd: float, recorded=lambda run_id: True):
    """`exp` with a test_loss per run made from 40 logged windows: a difficulty shared by all runs,
    the concat arm's gain of 0.1 varying over windows with sd `window_sd` (the same for every seed),
    and small per-run noise; `recorded(run_id)` False: the run logged no windows."""
    rng = np.random.default_rng(0)
    difficulty, gain, logged, losses = rng.normal(2.0, 0.5, 40), rng.normal(0.1, window_sd, 40), {}, []
    for run_id, arm, seed in zip(exp.runs["run_id"], exp.runs["input_combine"], exp.runs["seed"]):
        window = difficulty - gain * (arm == "concat") + rng.normal(0, 0.01, 40)
        logged[run_id] = {"test": {"loss_sum": (16 * window).tolist(), "tokens": [16.0] * 40}}
        losses.append(float(window.mean()))
    exp.runs = exp.runs.assign(final_test_loss=losses)
    other = exp.artifact
    exp.artifact = lambda run_id, path: (json.dumps(logged[run_id]) if recorded(run_id) else None) \
        if path == TEST_WINDOWS_ARTIFACT else other(run_id, path)
    return exp


def test_page_and_csv_show_the_window_interval_and_which_one_dominates(tmp_path):
    exp = with_windows(make_experiment("combine", seeds=[0, 1, 2, 3, 4], claim=CLAIM), window_sd=0.1)
    html = render_experiment(exp, tmp_path).path.read_text(encoding="utf-8")
    line = re.search(r'<p class="note" id="windows-[^"]*">(.*?)</p>', html, re.S).group(1)
    assert "Over test windows: [" in line and "bootstrap over 40 test windows" in line
    assert "the test windows dominate" in line    # the gain's spread over windows, 0.1 / √40 ≫ the seeds' spread
    render_index(tmp_path)
    row = pd.read_csv(tmp_path / "verdicts.csv").iloc[0]
    assert row["dominant_uncertainty"] == "test windows"
    assert 0 < row["window_low"] < row["effect"] < row["window_high"]   # claimed direction: lower loss is +


def test_a_store_without_window_sums_says_not_recorded(tmp_path):
    exp = with_windows(make_experiment("combine", seeds=[0, 1, 2, 3, 4], claim=CLAIM), 0.3,
                       recorded=lambda run_id: run_id != "r0001")
    html = render_experiment(exp, tmp_path).path.read_text(encoding="utf-8")
    assert "Over test windows: not recorded" in html
    render_index(tmp_path)
    row = pd.read_csv(tmp_path / "verdicts.csv").iloc[0]
    assert row["dominant_uncertainty"] == "not recorded" and np.isnan(row["window_low"])


def test_a_claim_on_validation_loss_has_no_window_line(tmp_path):
    claim = {**CLAIM, "metric": "val_loss"}
    html = render_experiment(make_experiment("combine", claim=claim), tmp_path).path.read_text(encoding="utf-8")
    assert "Over test windows" not in html
    render_index(tmp_path)
    assert pd.read_csv(tmp_path / "verdicts.csv").iloc[0]["dominant_uncertainty"] == "not applicable"
