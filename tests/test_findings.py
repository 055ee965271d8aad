"""docs/findings.md is generated from the committed verdicts.csv: one plain line per claim."""
import re

import pandas as pd
import pytest
from grid_support import REPO

from charrnn.report.findings import (FINDINGS_END, FINDINGS_START, findings_markdown, main, read_provenance,
                                     side_by_side_markdown, splice)

FINDINGS = REPO / "docs" / "findings.md"
ROW = {"experiment": "hidden_init", "claim": "zero_beats_epoch_zero", "metric": "test_loss", "effect": -0.002,
       "sd": 0.032, "n": 5, "low": -0.042, "high": 0.038, "method": "Student-t (df = n − 1), 95 % CI",
       "margin": 0.01, "verdict": "equivalent", "adjusted_verdict": "underpowered", "mde": 0.051,
       "description": "hidden_init=zero gives lower test_loss than hidden_init=epoch_zero",
       "source": 'write-up 000: "init to zero every batch"', "reason": "", "seeds_needed": 1600.0,
       "p": 0.9, "p_adjusted": 1.0}


def generated_section() -> str:
    text = FINDINGS.read_text(encoding="utf-8")
    return text[text.index(FINDINGS_START) + len(FINDINGS_START):text.index(FINDINGS_END)].strip()


def test_docs_findings_are_the_committed_verdicts_csv_rendered():
    path = REPO / "reports" / "examples" / "verdicts.csv"
    assert generated_section() == findings_markdown(pd.read_csv(path), provenance=read_provenance(path))


def test_findings_name_the_commit_machine_and_versions_behind_the_verdicts():
    suite = {"commit": "abc1234", "dirty": False, "date": "2026-12-07T03:00:00Z", "cpu": "Xeon (family 6, model 167)",
             "cpu_flags": ["avx2", "avx512f"], "cpu_capability": "AVX512", "cpu_count": 2, "torch_threads": 1,
             "gpu": "NVIDIA H100", "gpu_driver": "550.54", "cuda": "12.4", "torch": "2.13.0", "mlflow": "3.17.2"}
    first = findings_markdown(pd.DataFrame([{**ROW, "tests": "source"}]), provenance=suite).splitlines()[0]
    for fact in ("abc1234", "2026-12-07", "Xeon (family 6, model 167)", "avx2 avx512f", "2 cores",
                 "torch threads 1", "NVIDIA H100", "driver 550.54", "CUDA 12.4", "torch 2.13.0", "MLflow 3.17.2"):
        assert fact in first, fact
    assert "commit" not in findings_markdown(pd.DataFrame([ROW])).splitlines()[0]


def test_every_page_the_findings_link_is_committed():
    pages = set(re.findall(r"\]\(\.\./(reports/examples/[^)]+\.html)\)", generated_section()))
    assert pages and all((REPO / page).is_file() for page in pages)


def test_one_line_per_claim_with_verdict_units_grouped_by_scope():
    rows = pd.DataFrame([{**ROW, "tests": "extrapolation"}, {**ROW, "claim": "from_the_source", "tests": "source"}])
    text = findings_markdown(rows, "pages")
    assert text.index("### What the sources said") < text.index("from_the_source") \
        < text.index("### Our extrapolations") < text.index("zero_beats_epoch_zero")
    line = text.splitlines()[-1]
    assert line.startswith("- [zero_beats_epoch_zero](pages/hidden_init.html) — **underpowered** after Holm "
                           "(equivalent on its own)")
    assert "effect −0.00200 nats/char [−0.0420 to 0.0380], n = 5" in line


def test_a_budget_sensitive_verdict_says_so():
    row = {**ROW, "tests": "source", "stable": False,
           "budget_note": "budget-sensitive: underpowered at step 150 (half the steps), equivalent at step 300"}
    assert findings_markdown(pd.DataFrame([row])).splitlines()[-1].endswith("equivalent at step 300.")


def test_without_a_tests_column_there_is_one_list_and_fractions_read_in_points():
    row = {**ROW, "metric": "test_exact_match", "effect": 0.05, "low": 0.04, "high": 0.06,
           "description": "test_exact_match is higher than 0.95"}
    line = findings_markdown(pd.DataFrame([row])).splitlines()[-1]
    assert "value − bar +5.00 pp [4.00 to 6.00], n = 5." in line and "source" not in line


def test_a_not_tested_claim_says_why():
    row = {**ROW, "verdict": "not tested", "adjusted_verdict": "not tested", "effect": 0.0, "sd": 0.0,
           "low": float("nan"), "high": float("nan"), "reason": "arms are bit-identical"}
    assert "**not tested**: arms are bit-identical" in findings_markdown(pd.DataFrame([row]))


def test_splice_replaces_only_the_text_between_the_markers():
    doc = f"intro\n{FINDINGS_START}\nold\n{FINDINGS_END}\noutro\n"
    assert splice(doc, "new") == f"intro\n{FINDINGS_START}\nnew\n{FINDINGS_END}\noutro\n"


def test_a_document_without_the_markers_is_refused_with_one_line_and_left_alone(tmp_path, capsys):
    doc, verdicts = tmp_path / "findings.md", tmp_path / "verdicts.csv"
    doc.write_text("no markers\n")
    pd.DataFrame([ROW]).to_csv(verdicts, index=False)
    assert main([str(verdicts), str(doc)]) == 2
    assert doc.read_text() == "no markers\n"
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "findings:start" in err


@pytest.mark.parametrize("content", ["", "not,a\ncsv,\"file"])
def test_an_unreadable_verdicts_csv_is_refused(tmp_path, content):
    doc, verdicts = tmp_path / "findings.md", tmp_path / "verdicts.csv"
    doc.write_text(f"{FINDINGS_START}\n{FINDINGS_END}\n")
    verdicts.write_text(content)
    assert main([str(verdicts), str(doc)]) == 2


# --------------------------------------------------------------------------- quick and converged side by side

def both(quick: dict, converged: dict) -> str:
    q = pd.DataFrame([{**ROW, "tests": "source", **quick}])
    c = pd.DataFrame([{**ROW, "tests": "source", **converged}])
    return side_by_side_markdown(q, c, "quick", "conv")


def test_side_by_side_gives_both_verdicts_on_one_line_and_no_flip_when_they_agree():
    text = both({}, {"effect": -0.004})
    (line,) = [ln for ln in text.splitlines() if ln.startswith("- ")]
    assert line.startswith("- zero_beats_epoch_zero — quick: [**underpowered**](quick/hidden_init.html) (")
    assert " · converged: [**underpowered**](conv/hidden_init.html) (" in line and "Flip" not in line
    assert "0 flip(s)" in text


def test_a_flip_from_not_tested_names_the_quick_reason_and_the_moved_effect():
    capped = "10 of 10 runs stopped at the step cap before converging"
    text = both({"verdict": "not tested", "adjusted_verdict": "not tested", "reason": capped},
                {"verdict": "reproduced", "adjusted_verdict": "reproduced", "effect": 0.05, "low": 0.02, "high": 0.08})
    line = text.splitlines()[-1]
    assert f"**Flip**: quick was not tested ({capped})" in line
    assert "trained to convergence the effect moved from −0.00200 nats/char" in line and "to +0.0500 nats/char" in line
    assert "1 flip(s)" in text


def test_a_flip_to_not_tested_gives_the_converged_reason():
    line = both({}, {"verdict": "not tested", "adjusted_verdict": "not tested", "reason": "why"}).splitlines()[-1]
    assert line.endswith("**Flip**: converged runs leave it untested: why.")


def test_a_claim_new_in_the_converged_suite_is_not_a_flip():
    q = pd.DataFrame([{**ROW, "tests": "source", "claim": "other"}])
    c = pd.DataFrame([{**ROW, "tests": "source"}])
    line = side_by_side_markdown(q, c, "quick", "conv").splitlines()[-1]
    assert "quick: not in this suite" in line and "Flip" not in line
