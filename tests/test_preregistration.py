"""Preregistration: a grid's first invocation logs its claims' canonical text and hash on the
experiment; a claim edited after data reads preregistered = false with its original text."""
import hashlib
from dataclasses import replace

import pandas as pd

from charrnn.grid.session import GridSession
from charrnn.grid.spec import load_grid
from charrnn.report.pages import render_experiment, render_index
from charrnn.science.stats import mean_ci
from charrnn.science.verdict_table import ALTERED, EDITED, verdict_row, with_preregistration
from charrnn.science.verdicts import UNDERPOWERED, Verdict
from charrnn.tags import CLAIM_LOGGED_BEFORE_RUNS
from charrnn.tracking.store import Tracker
from claim_support import SCOPE
from grid_support import empty_store_db, store, write_grid  # noqa: F401
from report_synthetic import make_experiment


def invoke(tracker: Tracker, path) -> None:
    """A grid invocation that trains nothing: what preregistration sees when the first run starts."""
    with GridSession(tracker, load_grid(path), "quick", (), progress=False):
        pass


def row_of(claim, logged) -> dict:
    return verdict_row(with_preregistration([Verdict(claim, UNDERPOWERED, "", mean_ci([]))], logged)[0])


def test_claims_are_logged_once_and_an_edit_after_data_is_flagged(tmp_path, store):
    path = write_grid(tmp_path)
    tracker = Tracker()
    invoke(tracker, path)
    claim = load_grid(path).claims[0]
    logged = tracker.preregistered_claims("tiny")
    assert logged[claim.id] == {"text": claim.canonical_text(), "when": CLAIM_LOGGED_BEFORE_RUNS,
                                "sha256": hashlib.sha256(claim.canonical_text().encode()).hexdigest()}
    assert row_of(claim, logged)["preregistered"] == "true"

    edited_path = write_grid(tmp_path, claims=[{"source": "test", **SCOPE, "metric": "val_loss", "margin": 0.05,
                                                "expect": {"cell": "gru", "better_than": "vanilla"}}])
    invoke(tracker, edited_path)                       # the logged text is never overwritten
    edited = load_grid(edited_path).claims[0]
    assert edited == replace(claim, margin=0.05)
    row = row_of(edited, tracker.preregistered_claims("tiny"))
    assert (row["preregistered"], row["preregistration"]) == ("false", EDITED)
    assert row["original_text"] == claim.canonical_text() and "margin: 0.01" in row["original_text"]


def test_a_claim_first_logged_after_runs_existed_is_not_preregistered(tmp_path, store):
    tracker = Tracker()
    tracker.preregister_claims("late", {"c": "text"}, runs_existing=3)
    assert tracker.preregistered_claims("late")["c"]["when"] == "after 3 run(s) existed"
    claim = load_grid(write_grid(tmp_path)).claims[0]
    row = row_of(claim, {claim.id: {"text": claim.canonical_text(), "when": "after 3 run(s) existed"}})
    assert row["preregistered"] == "false" and "after 3 run(s)" in row["preregistration"]
    assert row_of(claim, {})["preregistered"] == "false"


def test_verdicts_csv_marks_a_claim_edited_after_data(tmp_path):
    """Through the report: the page's claims against the texts its store logged → verdicts.csv."""
    exp = make_experiment(claims=[{**SCOPE, "metric": "val_loss", "margin": 0.02,
                                   "expect": {"input_combine": "concat", "better_than": "add"}}])
    claim = exp.claims[0]
    logged_text = replace(claim, margin=0.01).canonical_text()
    exp.preregistered = {claim.id: {"text": logged_text, "when": CLAIM_LOGGED_BEFORE_RUNS}}
    render_experiment(exp, tmp_path)
    render_index(tmp_path, kernels=False)
    row = pd.read_csv(tmp_path / "verdicts.csv").iloc[0]
    assert (str(row["preregistered"]).lower(), row["preregistration"]) == ("false", EDITED)
    assert row["original_text"] == logged_text and row["tests"] == "source" and row["regime"] == SCOPE["regime"]
    assert row["learned"] == "baseline not logged" and str(row["stable"]).lower() in ("true", "false", "not applicable")


def test_a_stored_text_that_no_longer_matches_its_stored_sha256_is_flagged(tmp_path):
    claim = load_grid(write_grid(tmp_path)).claims[0]
    text = claim.canonical_text()
    good = {"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest(), "when": CLAIM_LOGGED_BEFORE_RUNS}
    assert row_of(claim, {claim.id: good})["preregistered"] == "true"
    altered = {**good, "sha256": hashlib.sha256(b"another text").hexdigest()}
    row = row_of(claim, {claim.id: altered})
    assert (row["preregistered"], row["preregistration"]) == ("false", ALTERED)
    assert row["original_text"] == text


def test_the_page_and_the_index_row_show_an_edit_after_data_and_the_original_text(tmp_path):
    exp = make_experiment(claims=[{**SCOPE, "metric": "val_loss", "margin": 0.02,
                                   "expect": {"input_combine": "concat", "better_than": "add"}}])
    claim = exp.claims[0]
    logged_text = replace(claim, margin=0.01).canonical_text()
    exp.preregistered = {claim.id: {"text": logged_text, "when": CLAIM_LOGGED_BEFORE_RUNS,
                                    "sha256": hashlib.sha256(logged_text.encode()).hexdigest()}}
    page = render_experiment(exp, tmp_path).path.read_text(encoding="utf-8")
    render_index(tmp_path, kernels=False)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    for html in (page, index):
        assert "edited after data" in html and "margin: 0.01" in html
    row = index[index.index('class="claim-row"'):index.index('class="more"')]
    assert "edited after data" in row
