"""docs/claims-history.md: every claim a committed suite judged, with its verdict in each suite version."""
import subprocess

import pandas as pd
from grid_support import REPO

from charrnn.report.claims_history import (COLUMNS, current_suite, history_markdown, main, read_history,
                                           seed_from_git, suite_rows, with_current)

HISTORY = REPO / "results" / "examples" / "claims-history.csv"
VERDICTS = REPO / "reports" / "examples" / "verdicts.csv"
CONVERGED = REPO / "reports" / "examples" / "converged" / "verdicts.csv"


def verdict(claim, adjusted="reproduced", **extra):
    return {"experiment": "depth_residual", "claim": claim, "tests": "source", "metric": "test_loss",
            "description": f"{claim} described", "source": "write-up 001", "verdict": adjusted,
            "adjusted_verdict": adjusted, "effect": 0.5, "effect_sense": "as claimed", "low": 0.1, "high": 0.9,
            "n": 5, **extra}


def version(suite, *rows):
    return suite_rows(pd.DataFrame(list(rows)), suite, "2026-12-0" + suite[-1])


def row_of(markdown, claim):
    (line,) = [line for line in markdown.splitlines() if f"| {claim} |" in line]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_docs_claims_history_is_the_committed_history_and_verdicts_rendered():
    history = with_current(read_history(HISTORY), current_suite(VERDICTS))
    history = with_current(history, current_suite(CONVERGED, "converged"))
    assert (REPO / "docs" / "claims-history.md").read_text(encoding="utf-8") == history_markdown(history)
    assert len(history) == len(read_history(HISTORY))   # the committed verdicts.csv is already its last version


def test_a_claim_removed_from_its_grid_stays_listed_with_its_last_verdict():
    history = version("v1", verdict("residual_helps_4_layers"), verdict("residual_helps_8_layers", "not tested"))
    current = version("v2", verdict("residual_helps_8_layers", "not tested"))
    cells = row_of(history_markdown(with_current(history, current)), "residual_helps_4_layers")
    assert cells[2:4] == ["reproduced (+0.5)", "—"]
    assert cells[4] == "dropped (last: reproduced, v1)"
    assert "dropped after v1 (last verdict: reproduced)" in cells[5]


def test_flips_edits_and_relabels_are_named_with_their_version():
    history = version("v1", verdict("c", "contradicted", tests="source"))
    current = version("v2", verdict("c", "reproduced", tests="extrapolation", description="c, reworded"))
    events = row_of(history_markdown(with_current(history, current)), "c")[-1]
    assert events == "added in v1; edited in v2; relabelled source → extrapolation in v2; " \
                     "flipped contradicted → reproduced in v2"


def test_the_same_suite_rendered_again_adds_no_version_and_a_rerun_does():
    history = version("v1", verdict("c"))
    assert with_current(history, version("v9", verdict("c"))).equals(history)
    assert list(dict.fromkeys(with_current(history, version("v2", verdict("c", effect=0.4)))["suite"])) == ["v1", "v2"]


def test_a_version_without_an_effect_sense_shows_the_raw_difference():
    old = version("v1", verdict("c", effect_sense=float("nan"), effect=-0.25))
    assert row_of(history_markdown(old), "c")[2] == "reproduced (Δ −0.25)"


def test_the_history_seeds_from_every_commit_of_a_verdicts_csv(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                       env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": "/usr/bin:/bin"})
    git("init", "-q")
    path = tmp_path / "verdicts.csv"
    for rows in ([verdict("a"), verdict("b")], [verdict("a", "contradicted")]):
        pd.DataFrame(rows).to_csv(path, index=False)
        git("add", "verdicts.csv")
        git("commit", "-qm", "suite")
    history = seed_from_git(path)
    assert list(history.columns) == COLUMNS and history["suite"].nunique() == 2
    assert history.groupby("suite", sort=False)["claim"].apply(list).tolist() == [["a", "b"], ["a"]]
    out_csv, doc = tmp_path / "history.csv", tmp_path / "claims-history.md"
    assert main([str(out_csv), str(path), str(doc), "--seed-from-git"]) == 0
    assert "dropped (last: reproduced" in row_of(doc.read_text(encoding="utf-8"), "b")[-2]


def test_each_profile_is_its_own_series_and_a_converged_suite_drops_no_quick_claim():
    quick = version("v1", verdict("a"), verdict("b"))
    converged = suite_rows(pd.DataFrame([verdict("a", "contradicted")]), "v2", "2026-12-07", "converged")
    history = with_current(quick, converged)
    page = history_markdown(history)
    assert page.index("## The quick suite") < page.index("## The converged suite")
    quick_part, converged_part = page.split("## The converged suite")
    assert "dropped after" not in page and "| depth_residual | b |" not in converged_part
    assert "| depth_residual | a | reproduced (+0.5) | reproduced | added in v1 |" in quick_part
    assert "| depth_residual | a | contradicted (+0.5) | contradicted | added in v2 |" in converged_part
    again = suite_rows(pd.DataFrame([verdict("a", "contradicted")]), "v3", "2026-12-08", "converged")
    assert with_current(history, again).equals(history)      # the same converged suite rendered again


def test_a_history_written_before_profiles_reads_as_quick(tmp_path):
    path = tmp_path / "history.csv"
    version("v1", verdict("a")).drop(columns="profile").to_csv(path, index=False)
    assert list(read_history(path)["profile"]) == ["quick"] and list(read_history(path).columns) == COLUMNS
