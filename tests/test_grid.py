"""Grid files: validation before anything runs, expansion to RunSpecs, `charrnn grid` bad input."""
import dataclasses
from pathlib import Path

import pytest
import torch
from claim_support import SCOPE
from grid_support import REPO, grid_data, heavy_imports, write_grid

from charrnn.cli import main
from charrnn.grid.spec import GridError, load_grid
from charrnn.science.claims import ClaimKind

ABLATIONS = REPO / "ablations"


def test_axes_expand_to_the_cartesian_product_times_seeds(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    specs = grid.expand("quick")
    assert len(specs) == 8
    assert len({s.identity for s in specs}) == 8
    assert [s.run_name for s in specs[:3]] == ["cell=vanilla,hidden_size=8,seed=0",
                                               "cell=vanilla,hidden_size=8,seed=1",
                                               "cell=vanilla,hidden_size=16,seed=0"]
    assert {(s.config.cell, s.config.hidden_size, s.seed) for s in specs} == {
        (c, h, s) for c in ("vanilla", "gru") for h in (8, 16) for s in (0, 1)}


def test_run_specs_are_frozen_and_hash_their_resolved_config(tmp_path):
    spec = load_grid(write_grid(tmp_path)).expand("quick")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.profile = "full"
    assert spec.identity == spec.config.identity_hash()
    assert spec.varied == (("cell", "vanilla"), ("hidden_size", 8))
    assert spec.varied_json == '{"cell": "vanilla", "hidden_size": 8}'


def test_hash_is_stable_across_loads_and_changes_with_the_profile(tmp_path):
    path = write_grid(tmp_path)
    quick = [s.identity for s in load_grid(path).expand("quick")]
    assert quick == [s.identity for s in load_grid(path).expand("quick")]
    assert not set(quick) & {s.identity for s in load_grid(path).expand("full")}


def test_layers_apply_in_order_defaults_task_fixed_profile_axes_seed(tmp_path):
    data = grid_data(fixed={"steps": 5, "lr": 0.01, "device": "cpu"},
                     profiles={"quick": {"steps": 7}, "full": {}})
    cfg = load_grid(write_grid(tmp_path, data)).expand("quick")[-1].config
    assert (cfg.task, cfg.steps, cfg.lr, cfg.cell, cfg.hidden_size, cfg.seed) == \
        ("tinyshakespeare", 7, 0.01, "gru", 16, 1)
    assert cfg.layers == 1  # untouched default


def test_zip_varies_axes_together(tmp_path):
    data = grid_data(axes={"cell": ["vanilla", "gru"]},
                     zip={"hidden_size": [8, 16, 32], "lr": [0.01, 0.005, "2.5e-3"]}, seeds=[0])
    specs = load_grid(write_grid(tmp_path, data)).expand("quick")
    assert len(specs) == 6
    assert {(s.config.hidden_size, s.config.lr) for s in specs} == {(8, 0.01), (16, 0.005), (32, 0.0025)}
    assert specs[2].run_name == "cell=vanilla,hidden_size=32,lr=0.0025,seed=0"


def test_a_grid_without_axes_is_one_variant_per_seed(tmp_path):
    data = grid_data(axes=None, claims=None, seeds=[3, 4])
    assert [s.run_name for s in load_grid(write_grid(tmp_path, data)).expand("quick")] == ["seed=3", "seed=4"]


def test_a_threshold_claim_compares_the_runs_with_a_number(tmp_path):
    claims = [{**SCOPE, "metric": "val_loss", "expect": {"better_than": 1.6}}]
    grid = load_grid(write_grid(tmp_path, axes=None, claims=claims))
    (claim,) = grid.claims
    assert claim.kind is ClaimKind.THRESHOLD and claim.baseline == 1.6 and claim.margin == 0.01


def test_a_claim_can_be_equivalence_to_a_number_or_name_the_effect_size_it_claims(tmp_path):
    claims = [{**SCOPE, "metric": "val_loss", "expect": {"equivalent_to": 1.6}},
              {**SCOPE, "metric": "val_loss", "at_least": 0.5, "expect": {"cell": "gru", "better_than": "vanilla"}}]
    equal, sized = load_grid(write_grid(tmp_path, claims=claims, axes={"cell": ["vanilla", "gru"]})).claims
    assert equal.kind is ClaimKind.EQUAL_TO_REFERENCE and equal.id == "val_loss_eq_1.6"
    assert equal.describe() == "val_loss equals 1.6 within ±0.01"
    assert sized.at_least == 0.5 and sized.describe().endswith("by at least 0.5")


def test_claims_list_with_where_equivalence_and_margin(tmp_path):
    claims = [{"source": "s1", **SCOPE, "metric": "val_loss", "expect": {"cell": "gru", "better_than": "vanilla"},
               "where": {"hidden_size": 16}},
              {"id": "same", **SCOPE, "metric": "val_loss", "margin": 0.02,
               "expect": {"cell": "gru", "equivalent_to": "vanilla"}}]
    grid = load_grid(write_grid(tmp_path, claims=claims, axes={"cell": ["vanilla", "gru"],
                                                                           "hidden_size": [8, 16]}))
    first, second = grid.claims
    assert first.id == "cell=gru_vs_vanilla.hidden_size=16" and first.where == (("hidden_size", 16),)
    assert first.source == "s1" and first.expected_sign == -1
    assert (second.id, second.kind, second.margin) == ("same", "equivalence", 0.02)


def test_every_shipped_grid_loads_and_plans_with_its_claims():
    from pathlib import Path
    for path in sorted((Path(__file__).resolve().parents[1] / "ablations").glob("*.yaml")):
        grid = load_grid(path)
        assert grid.claims and all(c.metric for c in grid.claims)
        assert all(grid.expand(p) for p in grid.profile_names)


def test_every_shipped_grid_is_valid_for_every_profile():
    files = sorted(ABLATIONS.glob("*.yaml"))
    assert ABLATIONS / "smoke.yaml" in files
    for path in files:
        grid = load_grid(path)
        assert {"quick", "full"} <= set(grid.profile_names)
        for profile in grid.profile_names:
            assert grid.expand(profile)


def test_smoke_grid_is_small_and_cpu_only():
    specs = load_grid(ABLATIONS / "smoke.yaml").expand("quick")
    assert 2 <= len(specs) <= 8
    assert all(s.config.device == "cpu" and s.config.steps <= 500 for s in specs)


def _malformed(tmp_path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _with(**overrides) -> dict:
    return grid_data(**overrides)


MALFORMED = {
    "yaml_syntax": ("name: x\naxes: {cell: [gru, \n", "YAML syntax error at line"),
    "unknown_top_level_key": (_with(axis={"cell": ["gru"]}), "unknown key 'axis'; valid keys: name, question"),
    "missing_required_key": ({k: v for k, v in _with().items() if k != "seeds"}, "missing required key 'seeds'"),
    "unknown_axis": (_with(axes={"colour": ["red"]}), "axes: unknown key 'colour'; valid keys: task,"),
    "unknown_value": (_with(axes={"cell": ["gru", "transformer"]}),
                      "axes: cell='transformer': unknown value; valid choices: vanilla, gru, lstm"),
    "wrong_type": (_with(axes={"hidden_size": [8, "big"]}), "axes: hidden_size='big': expected an integer"),
    "out_of_range": (_with(fixed={"layers": 9}), "fixed: layers=9: out of range; valid: an integer in 1..8"),
    "axis_not_a_list": (_with(axes={"cell": "gru"}), "axes.cell: 'gru': expected a list of values"),
    "empty_axis": (_with(axes={"cell": []}), "axes.cell: empty axis; valid: a list of one or more values"),
    "zip_unequal_lengths": (_with(zip={"hidden_size": [8, 16], "lr": [0.1]}, axes={"cell": ["gru"]},
                                  claims=None),
                            "zip: lists of unequal length (hidden_size: 2, lr: 1)"),
    "zip_repeated_row": (_with(zip={"hidden_size": [8, 16, 8], "lr": [0.1, 0.1, 0.1]}, axes={"cell": ["gru"]},
                               claims=None),
                         "zip: row 3 {'hidden_size': 8, 'lr': 0.1} repeats row 1; valid: distinct rows"),
    "seed_as_axis": (_with(axes={"seed": [0, 1]}), "axes.seed: seed cannot vary here"),
    "empty_seeds": (_with(seeds=[]), "seeds: []: expected a non-empty list of integers"),
    "missing_full_profile": (_with(profiles={"quick": {}}), "profiles: missing profile 'full'"),
    "bad_profile_value": (_with(profiles={"quick": {"optimizer": "lbfgs"}, "full": {}}),
                          "profiles.quick: optimizer='lbfgs': unknown value; valid choices: adam, sgd, rmsprop"),
    "profile_overrides_axis": (_with(profiles={"quick": {"cell": "gru"}, "full": {}}),
                               "profiles.quick.cell: cell cannot be set here; cell is varied by the grid"),
    "bad_combination": (_with(axes={"input_combine": ["add", "concat"]}, fixed={"cell": "vanilla"}, claims=None),
                        "profile quick, run input_combine=add,seed=0: input_combine='add': backend=fused"),
    "claim_value_not_on_axis": (_with(claims=[{**SCOPE, "metric": "val_loss",
                                               "expect": {"cell": "lstm", "better_than": "gru"}}]),
                                "claims[0].expect: cell='lstm' is not on the axis; valid: vanilla, gru"),
    "claim_unknown_metric": (_with(claims=[{**SCOPE, "metric": "bleu",
                                            "expect": {"cell": "gru", "better_than": "vanilla"}}]),
                             "claims[0].metric: 'bleu': unknown metric; valid choices: val_loss"),
    "claim_threshold_not_a_number": (_with(claims=[{**SCOPE, "metric": "val_loss", "expect": {"better_than": "low"}}]),
                                     "claims[0].expect: better_than='low': a claim against a reference number "
                                     "needs a finite number"),
    "claim_at_least_on_an_equivalence": (_with(claims=[{**SCOPE, "metric": "val_loss", "margin": 0.1, "at_least": 0.5,
                                                      "expect": {"cell": "gru", "equivalent_to": "vanilla"}}]),
                                         "claims[0].at_least: valid only with expect: {AXIS: VALUE, better_than"),
    "claim_at_least_not_positive": (_with(claims=[{**SCOPE, "metric": "val_loss", "at_least": 0,
                                                 "expect": {"cell": "gru", "better_than": "vanilla"}}]),
                                    "claims[0].at_least: 0: valid: a finite number > 0"),
    "claims_not_a_list": (_with(claims={"metric": "val_loss"}),
                          "claims: {'metric': 'val_loss'}: expected a list"),
    "claim_duplicate_id": (_with(claims=[
        {"id": "a", **SCOPE, "metric": "val_loss", "expect": {"cell": "gru", "better_than": "vanilla"}},
        {"id": "a", **SCOPE, "metric": "val_loss", "expect": {"better_than": 1.5}}]), "claims: id 'a' repeated"),
    "claim_where_not_an_axis": (_with(claims=[
        {**SCOPE, "metric": "val_loss", "expect": {"cell": "gru", "better_than": "vanilla"}, "where": {"layers": 2}}]),
        "claims[0].where: 'layers' is not an axis it can restrict; valid: hidden_size"),
    "claim_negative_margin": (_with(claims=[{**SCOPE, "metric": "val_loss", "margin": -1,
                                           "expect": {"cell": "gru", "better_than": "vanilla"}}]),
                              "claims[0].margin: -1: valid: a finite number >= 0"),
    "equivalence_without_margin_on_speed": (_with(claims=[{**SCOPE, "metric": "tokens_per_s", "expect": {
        "cell": "gru", "equivalent_to": "vanilla"}}]),
        "claims[0].margin: an equivalence claim on tokens_per_s needs a stated margin"),
    "claim_unknown_key": (_with(claims=[{**SCOPE, "metric": "val_loss", "expect": {"better_than": 1.5}, "rope": 1}]),
                          "claims[0]: unknown key 'rope'; valid keys: id, source, tests, regime, metric"),
    "claim_without_scope": (_with(claims=[{"metric": "val_loss", "regime": "GPU", "expect": {"better_than": 1.5}}]),
                            "claims[0]: missing required key 'tests'; valid choices: source, extrapolation"),
    "claim_bad_scope": (_with(claims=[{**SCOPE, "tests": "ours", "metric": "val_loss",
                                       "expect": {"better_than": 1.5}}]),
                        "claims[0].tests: 'ours': valid choices: source, extrapolation"),
    "claim_empty_regime": (_with(claims=[{**SCOPE, "regime": " ", "metric": "val_loss",
                                          "expect": {"better_than": 1.5}}]),
                           "claims[0].regime: ' ': valid: the source's setting in a few words"),
    "not_a_mapping": ("- just\n- a list\n", "expected a mapping of key: value"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_grid_is_rejected_with_one_line_naming_file_key_and_value(tmp_path, case):
    content, needle = MALFORMED[case]
    path = _malformed(tmp_path, content) if isinstance(content, str) else write_grid(tmp_path, content, "bad.yaml")
    with pytest.raises(GridError) as err:
        load_grid(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert needle in message
    assert "\n" not in message


def test_missing_file_names_the_grids_that_exist(tmp_path):
    write_grid(tmp_path, name="present.yaml")
    with pytest.raises(GridError, match=r"nope\.yaml: grid file not found; valid: present\.yaml"):
        load_grid(tmp_path / "nope.yaml")


CLI_BAD = {
    "malformed": (lambda d: [str(write_grid(d, _with(axes={"cell": ["rnn"]})))], "cell='rnn'"),
    "syntax": (lambda d: [str(_malformed(d, "name: [x\n"))], "YAML syntax error"),
    "missing_file": (lambda d: [str(d / "missing.yaml")], "grid file not found"),
    "unknown_profile": (lambda d: [str(write_grid(d)), "--profile", "fast"],
                        "profile 'fast': unknown profile; valid: quick, full"),
    "unusable_data": (lambda d: [str(write_grid(d, _with(fixed={"seq_len": 200_000})))],
                      "run cell=vanilla,hidden_size=8,seed=0: seq_len=200000: needs 200001 tokens"),
    "local_parallel": (lambda d: [str(write_grid(d)), "--max-parallel", "2"], "--max-parallel=2"),
    "unknown_executor": (lambda d: [str(write_grid(d)), "--executor", "slurm"],
                         "--executor='slurm': unknown executor; valid choices: local, ray"),
}


@pytest.mark.parametrize("case", sorted(CLI_BAD))
def test_charrnn_grid_bad_input_exits_2_one_line_and_creates_no_store(tmp_path, results_dir, capsys, case):
    make_args, needle = CLI_BAD[case]
    assert main(["grid", *make_args(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("charrnn: error: ") and needle in err
    assert len(err.splitlines()) == 1
    assert not results_dir.exists()


def test_grid_with_a_cuda_only_backend_on_a_cpu_machine_exits_2_and_creates_no_store(
        tmp_path, results_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    path = write_grid(tmp_path, _with(fixed={"backend": "loop_cudagraph", "device": "auto"}))
    assert main(["grid", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "backend='loop_cudagraph': CUDA graphs need a CUDA device; device is cpu" in err
    assert len(err.splitlines()) == 1 and not results_dir.exists()


def test_dry_run_lists_every_run_and_creates_nothing(tmp_path, results_dir, capsys):
    assert main(["grid", str(write_grid(tmp_path)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    specs = load_grid(tmp_path / "tiny.yaml").expand("quick")
    for spec in specs:
        assert spec.identity in out and spec.run_name in out
    assert out.count(" train") == 8
    assert not results_dir.exists()


def test_grid_module_imports_neither_torch_nor_mlflow():
    assert heavy_imports("charrnn.grid.spec") == []


def test_a_profile_may_list_its_own_seeds(tmp_path):
    path = tmp_path / "seeded.yaml"
    path.write_text(
        "name: seeded\nquestion: q?\ntask: bitflip\naxes: {cell: [vanilla, gru]}\nseeds: [0, 1, 2]\n"
        "profiles:\n  quick: {steps: 2}\n  full: {steps: 4, seeds: [0, 1, 2, 3, 4]}\n")
    grid = load_grid(path)
    assert sorted({s.seed for s in grid.expand("quick")}) == [0, 1, 2]
    assert sorted({s.seed for s in grid.expand("full")}) == [0, 1, 2, 3, 4]
    assert len(grid.expand("full")) == 10


def test_a_profile_seeds_list_is_validated(tmp_path):
    path = tmp_path / "badseeds.yaml"
    path.write_text(
        "name: badseeds\nquestion: q?\ntask: bitflip\naxes: {cell: [vanilla, gru]}\nseeds: [0]\n"
        "profiles:\n  quick: {steps: 2, seeds: [0, 0]}\n  full: {steps: 4}\n")
    with pytest.raises(GridError, match="repeated seed"):
        load_grid(path)


def test_a_zip_key_may_repeat_a_value_when_its_rows_differ(tmp_path):
    zipped = {"cell": ["gru", "gru", "vanilla"], "hidden_size": [8, 16, 8]}
    grid = load_grid(write_grid(tmp_path, axes=None, zip=zipped, claims=None))
    assert [s.variant for s in grid.expand("quick") if s.config.seed == 0] == [
        "cell=gru,hidden_size=8", "cell=gru,hidden_size=16", "cell=vanilla,hidden_size=8"]
