"""README's "What we found" is generated from the committed verdicts.csv and says what it says."""
import re

import pandas as pd
import pytest

from charrnn.report.findings import FINDINGS_END, FINDINGS_START, findings_markdown, main, splice
from grid_support import REPO

ROW = {"experiment": "hidden_init", "claim": "zero_beats_epoch_zero", "metric": "test_loss", "effect": -0.002,
       "sd": 0.032, "n": 5, "low": -0.042, "high": 0.038, "method": "Student-t (df = n − 1), 95 % CI",
       "margin": 0.01, "verdict": "underpowered", "adjusted_verdict": "underpowered", "mde": 0.051,
       "description": "hidden_init=zero gives lower test_loss than hidden_init=epoch_zero",
       "source": 'write-up 000: "init to zero every batch"', "reason": "", "seeds_needed": 1600.0,
       "p": 0.9, "p_adjusted": 1.0}


def readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text[text.index(FINDINGS_START) + len(FINDINGS_START):text.index(FINDINGS_END)].strip()


def test_readme_findings_are_the_committed_verdicts_csv_rendered():
    verdicts = pd.read_csv(REPO / "reports" / "examples" / "verdicts.csv")
    assert readme_section() == findings_markdown(verdicts)


def test_every_page_the_findings_link_is_committed():
    pages = re.findall(r"\]\((reports/examples/[^)]+\.html)\)", readme_section())
    assert pages and all((REPO / page).is_file() for page in pages)


def test_an_underpowered_claim_prints_its_minimum_detectable_effect_and_seeds_needed():
    text = findings_markdown(pd.DataFrame([ROW]))
    assert '"init to zero every batch"' in text and "(n = 5, sd 0.032; Student-t (df = n − 1), 95 % CI)" in text
    assert "**underpowered**: minimum detectable effect 0.051 at 80 % power; 1600 seeds would decide" in text


def test_a_not_tested_claim_says_why():
    row = {**ROW, "verdict": "not tested", "adjusted_verdict": "not tested", "effect": 0.0, "sd": 0.0,
           "low": float("nan"), "high": float("nan"), "reason": "arms are bit-identical"}
    assert "**not tested** (arms are bit-identical)" in findings_markdown(pd.DataFrame([row]))


def test_splice_replaces_only_the_text_between_the_markers():
    readme = f"intro\n{FINDINGS_START}\nold\n{FINDINGS_END}\noutro\n"
    assert splice(readme, "new") == f"intro\n{FINDINGS_START}\nnew\n{FINDINGS_END}\noutro\n"


def test_a_readme_without_the_markers_is_refused_with_one_line_and_left_alone(tmp_path, capsys):
    readme, verdicts = tmp_path / "README.md", tmp_path / "verdicts.csv"
    readme.write_text("no markers\n")
    pd.DataFrame([ROW]).to_csv(verdicts, index=False)
    assert main([str(verdicts), str(readme)]) == 2
    assert readme.read_text() == "no markers\n"
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "findings:start" in err


@pytest.mark.parametrize("content", ["", "not,a\ncsv,\"file"])
def test_an_unreadable_verdicts_csv_is_refused(tmp_path, content):
    readme, verdicts = tmp_path / "README.md", tmp_path / "verdicts.csv"
    readme.write_text(f"{FINDINGS_START}\n{FINDINGS_END}\n")
    verdicts.write_text(content)
    assert main([str(verdicts), str(readme)]) == 2
