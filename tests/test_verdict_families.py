"""verdicts.csv rows by family: runs table → judge → verdict_row → adjust_rows. Self-checks are
exact checks outside Holm; Holm runs within each scope. Each test names the mutation it catches."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from charrnn.grid.spec import load_grid
from charrnn.science.claims import COMPARISON, Claim
from charrnn.science.estimates import holm_p
from charrnn.science.verdict_table import adjust_rows, verdict_row
from charrnn.science.verdicts import judge

ABLATIONS = Path(__file__).resolve().parents[1] / "ablations"
(HARNESS,) = load_grid(ABLATIONS / "reference_loss.yaml").claims
FUSED = {c.id: c for c in load_grid(ABLATIONS / "fused_vs_loop.yaml").claims}["fused_equals_loop_loss"]


def reference_runs(offsets) -> pd.DataFrame:
    """Harness runs whose val loss is each seed's reference plus an offset."""
    refs = dict(HARNESS.baseline)
    return pd.DataFrame([{"seed": s, "status": "FINISHED", "final_val_loss": refs[s] + o}
                         for s, o in zip(sorted(refs), offsets)])


def backend_runs(loop, offsets) -> pd.DataFrame:
    rows = [{"backend": b, "seed": str(i), "status": "FINISHED", "final_test_loss": v + (o if b == "fused" else 0.0)}
            for i, (v, o) in enumerate(zip(loop, offsets)) for b in ("loop", "fused")]
    return pd.DataFrame(rows)


def test_the_harness_self_check_passes_rounding_and_catches_a_1e_3_perturbation():
    """The shipped tolerance (rtol 3e-4 + atol 5e-5: 6e-4 nats here) passes the references' rounding
    and fails a 1e-3 nats difference in one seed. Mutation caught: the tolerance widened to the old
    ±0.01 margin (rtol 5e-3) lets the 1e-3 seed pass."""
    row = verdict_row(judge(reference_runs([9e-5, -4e-5, 2e-5, 0.0, -9e-5]), HARNESS, []))
    assert (row["verdict"], row["family"], row["p"]) == ("passed", "self-check", None)
    bad = verdict_row(judge(reference_runs([0.0, 0.0, 1e-3, 0.0, 0.0]), HARNESS, []))
    assert bad["verdict"] == "failed" and "largest |difference| 0.001" in bad["reason"]


def test_the_kernel_self_check_holds_kernels_to_1e_5_relative():
    """A 1e-3 nats bug in one seed fails. Mutation caught: rtol 1e-3 for the kernels lets it pass."""
    loop = [2.1, 2.05, 2.12, 2.08, 2.11]
    ok = verdict_row(judge(backend_runs(loop, [2.6e-9] * 5), FUSED, ["backend"]))
    assert ok["verdict"] == "passed"
    bad = verdict_row(judge(backend_runs(loop, [0, 0, 0, 1e-3, 0]), FUSED, ["backend"]))
    assert bad["verdict"] == "failed"


def comparison(cid: str, tests: str) -> Claim:
    return Claim(cid, "val_loss", COMPARISON, "input_combine", "concat", "add", 0.0, tests=tests, regime="r")


def simulated_rows(rng) -> list[dict]:
    """Four comparisons (two per scope) and one self-check, judged from simulated runs."""
    out = []
    for cid, tests, effect in (("s1", "source", -0.03), ("s2", "source", -0.02),
                               ("e1", "extrapolation", -0.05), ("e2", "extrapolation", -0.015)):
        diffs = rng.normal(effect, 0.012, 5)
        runs = pd.DataFrame([{"input_combine": arm, "seed": str(s), "status": "FINISHED",
                              "final_val_loss": 2.0 + (d if arm == "concat" else 0.0)}
                             for s, d in enumerate(diffs) for arm in ("add", "concat")])
        out.append(verdict_row(judge(runs, comparison(cid, tests), ["input_combine"])))
    out.append(verdict_row(judge(reference_runs([0.0] * 5), HARNESS, [])))
    return out


def test_holm_runs_within_each_scope_and_leaves_self_checks_out():
    """Simulated rows: each family's adjusted p equals Holm over that family alone; the self-check
    has none and keeps its verdict. Mutation caught: one Holm family over all rows (the earlier
    rule) gives different adjusted p-values, and counting the self-check in the family too."""
    for seed in range(20):
        rows = adjust_rows(simulated_rows(np.random.default_rng(seed)))
        by = {r["claim"]: r for r in rows}
        for family in (("s1", "s2"), ("e1", "e2")):
            expected = holm_p([by[c]["p"] for c in family])
            assert [by[c]["p_adjusted"] for c in family] == pytest.approx(expected)
        check = by["harness_equals_bare_loop"]
        assert check["p_adjusted"] is None and check["adjusted_verdict"] == check["verdict"] == "passed"
        one_family = holm_p([r["p"] for r in rows[:4]])
        if any(abs(a - b) > 1e-12 for a, b in zip(one_family, [r["p_adjusted"] for r in rows[:4]])):
            break
    else:
        pytest.fail("the family split never changed an adjusted p")


def test_seeds_needed_after_holm_grow_with_the_family():
    """A row underpowered after Holm says how many seeds would decide it at α / family size.
    Mutation caught: seeds_needed left at the per-claim α (the earlier rule)."""
    rows = simulated_rows(np.random.default_rng(3))
    base = {r["claim"]: r["seeds_needed"] for r in rows}
    wide = adjust_rows([*rows, *[{**r, "claim": r["claim"] + "x"} for r in rows[2:4]] * 3])
    after = {r["claim"]: r["seeds_needed"] for r in wide[:5]}
    assert after["e2"] > base["e2"] and after["s2"] >= base["s2"]


def test_a_row_states_its_family():
    claim = replace(comparison("x", "extrapolation"))
    runs = pd.DataFrame([{"input_combine": a, "seed": str(s), "status": "FINISHED", "final_val_loss": 1.0 + s / 10}
                         for s in range(3) for a in ("add", "concat")])
    assert verdict_row(judge(runs, claim, ["input_combine"]))["family"] == "extrapolation"
