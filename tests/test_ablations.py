"""The shipped claim grids: they plan in both profiles and state what their sources say."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from charrnn import registry
from charrnn.cli import main
from charrnn.grid.spec import grids_with_profile, load_grid
from charrnn.science.claims import ClaimKind

ABLATIONS = Path(__file__).resolve().parents[1] / "ablations"
REFERENCES = (Path(__file__).resolve().parents[1] / "docs" / "references.md").read_text(encoding="utf-8")
GRIDS = sorted(p for p in ABLATIONS.glob("*.yaml") if p.stem != "smoke")
QUICK_SEEDS = 5


def anchors() -> set[str]:
    """GitHub-style anchors of docs/references.md's headings."""
    heads = re.findall(r"^#+ (.+)$", REFERENCES, flags=re.M)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
@pytest.mark.parametrize("profile", ["quick", "full"])
def test_every_claim_grid_plans_with_dry_run_in_both_profiles(path, profile, results_dir, capsys):
    assert main(["grid", str(path), "--profile", profile, "--dry-run"]) == 0
    assert "seed=" in capsys.readouterr().out
    assert len(load_grid(path).seeds_of("quick")) >= QUICK_SEEDS


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_every_claim_names_a_reference_anchor_and_nothing_a_clone_lacks(path):
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"shar[e]d/|seeds/|issue \d", text, flags=re.I)  # [e]: the line never matches itself
    for claim in load_grid(path).claims:
        cited = re.findall(r"docs/references\.md#([a-z0-9-]+)", claim.source)
        assert cited or path.stem == "min_rnn", (path.stem, claim.id)
        assert set(cited) <= anchors(), (path.stem, claim.id, cited)


def claims_of(name: str):
    return load_grid(ABLATIONS / f"{name}.yaml").claims


def test_hidden_size_claims_speed_over_a_dense_sweep():
    grid = load_grid(ABLATIONS / "hidden_size.yaml")
    sizes = dict(grid.axes)["hidden_size"]
    assert min(sizes) <= 32 and max(sizes) >= 1024 and len([h for h in sizes if 64 <= h <= 256]) >= 5
    assert {c.metric for c in grid.claims} >= {"tokens_per_s", "log10_tokens_per_s"}
    assert registry.METRICS["log10_tokens_per_s"].unit.startswith("log10")


def test_dataset_size_judges_the_gap_at_a_fifth_of_the_data_as_our_extrapolation():
    claims = claims_of("dataset_size")
    (gap,) = [c for c in claims if c.metric == "generalization_gap" and c.value == 0.2]
    assert gap.tests == "extrapolation" and "might be some kind of memorization" in gap.source


def test_depth_residual_has_one_claim_per_depth_of_two_or_more():
    claims = claims_of("depth_residual")
    assert sorted(dict(c.where)["layers"] for c in claims) == [2, 8]
    assert dict(load_grid(ABLATIONS / "depth_residual.yaml").fixed)["residual_mode"] == "between_layers"


def test_at_least_three_grids_tune_a_nuisance_parameter():
    assert len([p for p in GRIDS if load_grid(p).tune]) >= 3


TRAINING_COMPARISONS = ("cell_type", "depth_residual", "hidden_init", "min_rnn", "dataset_size")


@pytest.mark.parametrize("name", TRAINING_COMPARISONS)
def test_grids_comparing_how_arms_train_tune_the_learning_rate_within_bounds(name):
    grid = load_grid(ABLATIONS / f"{name}.yaml")
    lrs, (low, high) = dict(grid.tune)["lr"], dict(grid.tune_bounds)["lr"]
    assert len(lrs) >= 3 and low < min(lrs) and max(lrs) < high


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_a_fixed_learning_rate_is_explained_in_the_grid(path):
    grid = load_grid(path)
    if "lr" not in dict(grid.tune) and any(c.axis for c in grid.claims):
        comments = " ".join(line.strip().lstrip("#").strip() for line in path.read_text().splitlines()
                            if line.lstrip().startswith("#"))
        assert "learning rate is fixed" in comments, path.stem


def test_cell_type_tests_the_sources_trainability_claim_and_extrapolates_capacity():
    """Collins et al.'s "far more difficult to train" is judged as they measured it, the share of a
    learning-rate search that trains well, on converged runs; the fixed-budget loss comparisons and
    capacity at equal parameters are our extrapolations."""
    claims = {c.id: c for c in claims_of("cell_type")}
    trains = [c for c in claims.values() if c.kind is ClaimKind.COMPARISON]
    assert {(c.value, c.baseline, c.tests, c.method) for c in trains} == {
        ("gru", "vanilla", "source", "trainability"), ("lstm", "vanilla", "source", "trainability"),
        ("gru", "vanilla", "extrapolation", "t"), ("lstm", "vanilla", "extrapolation", "t")}
    assert all(c.profiles == ("converged",) and c.delta > 0 for c in trains if c.tests == "source")
    (capacity,) = [c for c in claims.values() if c.kind is ClaimKind.EQUIVALENCE]
    assert capacity.tests == "extrapolation" and "careful training" in capacity.source


def test_min_rnn_tests_parallel_mingru_against_the_sequential_gru_at_t512_on_the_gpu_profile():
    """The paper's 175x: parallel minGRU against the traditional sequential GRU at T = 512, a GPU
    regime: the source test is judged on the gpu profile; the same comparison on CPU profiles is
    an extrapolation, as is the scan against minGRU's own loop."""
    (speed,) = [c for c in claims_of("min_rnn") if c.tests == "source"]
    assert (speed.metric, speed.axis, speed.value, speed.baseline) == ("tokens_per_s", "backend", "scan", "fused")
    assert dict(speed.where) == {"seq_len": 512} and speed.profiles == ("gpu",)
    cpu = {c.id: c for c in claims_of("min_rnn")}["mingru_parallel_faster_than_gru_t512_cpu"]
    assert (cpu.tests, cpu.value, cpu.baseline, cpu.profiles) == ("extrapolation", "scan", "fused", ("quick", "full"))
    others = [c for c in claims_of("min_rnn") if c.id != speed.id]
    assert others and all(c.tests == "extrapolation" for c in others)


def test_harness_self_checks_are_exact_checks_with_a_stated_tolerance():
    checks = [c for p in GRIDS for c in load_grid(p).claims if c.is_self_check]
    assert {c.id for c in checks} == {"fused_equals_loop_loss", "harness_equals_bare_loop"}
    assert all(c.family is None and c.rtol > 0 and c.tolerance_why for c in checks)
    assert {c.tests for p in GRIDS for c in load_grid(p).claims if c.family} == {"source", "extrapolation"}


def test_fused_vs_loop_does_not_say_its_loop_is_the_write_ups():
    text = (ABLATIONS / "fused_vs_loop.yaml").read_text()
    assert "nn.RNN computes the same cell" not in text and "relu" in text


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_every_tuned_axis_states_the_bound_it_may_grow_to(path):
    grid = load_grid(path)
    assert set(dict(grid.tune)) == set(dict(grid.tune_bounds)), path.stem


SOURCE_GRIDS = [p for p in GRIDS if any(c.tests == "source" for c in load_grid(p).claims)]


@pytest.mark.parametrize("path", SOURCE_GRIDS, ids=lambda p: p.stem)
def test_every_grid_testing_a_source_has_a_converged_profile_that_plans(path, results_dir, capsys):
    grid = load_grid(path)
    assert "converged" in grid.profile_names
    assert main(["grid", str(path), "--profile", "converged", "--dry-run"]) == 0
    assert "seed=" in capsys.readouterr().out
    specs = grid.expand("converged")
    budgeted = [s.config for s in specs if s.config.patience > 0]
    # every run trains to convergence, except a bar fixed at its source's own budget (reference_loss)
    assert budgeted or path.stem == "reference_loss"
    assert all(c.steps > c.eval_interval * c.patience for c in budgeted)   # patience can run out before the cap


def test_depth_residual_converged_covers_depths_one_to_eight():
    specs = load_grid(ABLATIONS / "depth_residual.yaml").expand("converged")
    assert sorted({s.config.layers for s in specs}) == [1, 2, 4, 8]
    assert {s.config.residual for s in specs} == {False, True}


def test_the_converged_suite_is_every_grid_with_a_source_claim_and_make_ablations_runs_only_those():
    paths = sorted(str(p) for p in ABLATIONS.glob("*.yaml") if p.stem != "smoke")
    chosen = grids_with_profile("converged", paths)
    with_source = [p for p in paths if any(c.tests == "source" for c in load_grid(p).claims)]
    assert set(with_source) <= set(chosen) and "ablations/grad_clip.yaml" not in " ".join(chosen)
