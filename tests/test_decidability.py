"""Decidability before any run: `charrnn grid --dry-run` prints, per claim, the smallest p its
design can reach after Holm, and "cannot decide: needs >= k seeds" where it cannot."""
from pathlib import Path

import pytest

from charrnn.cli import main
from charrnn.grid.spec import load_grid
from charrnn.science import decidability
from charrnn.science.claims import parse_claims

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "ablations").glob("*.yaml"))
UNDER_SEEDED = REPO / "tests" / "fixtures" / "undecidable" / "under_seeded.yaml"


def dry_run(path: Path, capsys) -> str:
    assert main(["grid", str(path), "--profile", "quick", "--dry-run"]) == 0
    return capsys.readouterr().out


def test_a_sign_test_design_with_6_seeds_in_a_family_of_5_cannot_decide(results_dir, capsys):
    """2 · 0.5⁶ · 5 = 0.156 ≥ 0.05: every claim warns, and 8 seeds would do (2 · 0.5⁸ · 5 = 0.039).
    Mutation caught: the family size left out of the bound (0.031 < 0.05 reads as decidable)."""
    out = dry_run(UNDER_SEEDED, capsys)
    lines = [ln for ln in out.splitlines() if "cannot decide" in ln]
    assert len(lines) == 5 and all("needs >= 8 seeds" in ln and "family of 5" in ln for ln in lines)
    assert "smallest p 0.0312 × 5 = 0.156" in lines[0]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_no_shipped_grid_has_a_claim_its_quick_design_cannot_decide(path, results_dir, capsys):
    out = dry_run(path, capsys)
    assert "decidability before any run" in out and "cannot decide" not in out


def test_bitflip_decides_by_its_test_items_where_the_sign_test_over_seeds_could_not():
    grid = load_grid(REPO / "ablations" / "bitflip_combine.yaml")
    sizes = {"extrapolation": 20}
    rows = decidability.assess(grid.claims, 6, sizes)
    assert all(r.design == "exact binomial" and r.decidable for r in rows)
    sign = [c.__class__(**{**c.__dict__, "method": "t", "items": 0}) for c in grid.claims]
    assert not any(r.decidable for r in decidability.assess(sign, 6, sizes))


def test_the_planned_t_design_needs_more_seeds_in_a_larger_family():
    data = {"claims": [{"metric": "val_loss", "tests": "extrapolation", "regime": "r", "expect": {"better_than": 2.48},
                        "plan": {"sd": 0.02, "effect": -0.2}}]}
    (claim,) = parse_claims(data, {})
    alone, suite = decidability.assess([claim], 3, {"extrapolation": 1})[0], decidability.assess([claim], 3, {
        "extrapolation": 20})[0]
    assert alone.decidable and not suite.decidable and suite.needed == 4
