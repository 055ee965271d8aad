"""Nuisance tuning: `tune:` in grid files expands per (variant, seed); selection on val per arm."""
from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
from claim_support import SCOPE
from grid_support import REPO, grid_data, write_grid

from charrnn.cli import main
from charrnn.science import tune_space, tuning
from charrnn.grid.spec import GridError, load_grid

LRS = [0.001, 0.003, 0.01]


# ----------------------------------------------------------------------------- grid expansion

def tuned_grid(tmp_path, **overrides):
    data = grid_data(axes={"cell": ["vanilla", "gru"]}, **{"tune": {"lr": LRS}, **overrides})
    return load_grid(write_grid(tmp_path, data))


def test_tune_trains_every_variant_and_seed_once_per_value(tmp_path):
    specs = tuned_grid(tmp_path).expand("quick")
    assert len(specs) == 2 * 3 * 2 and len({s.identity for s in specs}) == 12
    assert {(s.variant, s.config.lr, s.seed) for s in specs} == {
        (f"cell={c}", lr, seed) for c in ("vanilla", "gru") for lr in LRS for seed in (0, 1)}
    assert specs[0].run_name == "cell=vanilla,lr=0.001,seed=0"
    assert specs[0].tuned == (("lr", 0.001),) and specs[0].varied == (("cell", "vanilla"),)
    assert specs[0].varied_json == '{"cell": "vanilla"}'   # a tuned key is not an axis


def test_two_tuned_keys_expand_to_their_product(tmp_path):
    grid = tuned_grid(tmp_path, tune={"lr": LRS, "grad_clip": [1.0, 5.0, 10.0]})
    assert len(grid.tunings()) == 9
    assert len(grid.expand("quick")) == 2 * 9 * 2


def test_grid_without_tune_expands_as_before(tmp_path):
    specs = load_grid(write_grid(tmp_path)).expand("quick")
    assert len(specs) == 8 and all(s.tuned == () for s in specs)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"tune": {"cell": ["gru"]}}, "cell is already an axis"),
    ({"tune": {"seed": [1, 2]}}, "seed cannot vary here"),
    ({"tune": {"lr": [0.01, 0.01]}}, "repeated value"),
    ({"tune": {"lr": []}}, "empty axis"),
    ({"tune": {"lr": [-1.0]}}, "lr=-1.0: out of range"),
    ({"tune": {"nope": [1]}}, "unknown key 'nope'"),
    ({"tune": {"lr": LRS}, "profiles": {"quick": {"lr": 0.1}, "full": {}}}, "lr is varied by the grid"),
])
def test_bad_tune_block_is_a_one_line_grid_error(tmp_path, overrides, message):
    data = grid_data(axes={"cell": ["vanilla", "gru"]}, **overrides)
    with pytest.raises(GridError, match=message) as err:
        load_grid(write_grid(tmp_path, data))
    assert "\n" not in str(err.value)


def test_tune_choice_per_seed_is_read_from_the_grid_and_the_stored_yaml(tmp_path):
    grid = tuned_grid(tmp_path, tune={"lr": LRS, "choice": "per_seed"})
    assert grid.tune == (("lr", tuple(LRS)),) and grid.tune_space.per_seed
    assert len(grid.expand("quick")) == 2 * 3 * 2
    assert tune_space.tune_of({"tune": {"lr": LRS, "choice": "per_seed"}}).choice == "per_seed"
    assert tuned_grid(tmp_path).tune_space.choice == "per_arm"


@pytest.mark.parametrize(("tune", "message"), [
    ({"lr": LRS, "choice": "per_run"}, "tune.choice: 'per_run': unknown choice; valid: per_arm, per_seed"),
    ({"choice": "per_seed"}, "tune.choice: 'per_seed' without a tuned key"),
])
def test_bad_tune_choice_is_a_one_line_grid_error(tmp_path, tune, message):
    with pytest.raises(GridError, match=message) as err:
        load_grid(write_grid(tmp_path, grid_data(tune=tune)))
    assert "\n" not in str(err.value)


def test_tune_key_in_fixed_is_a_grid_error(tmp_path):
    data = grid_data(tune={"lr": LRS})
    data["fixed"]["lr"] = 0.01
    with pytest.raises(GridError, match="lr is already in fixed"):
        load_grid(write_grid(tmp_path, data))


# ----------------------------------------------------------------------------- selection

def runs(values: dict[tuple[str, int, float], float], status: dict | None = None) -> pd.DataFrame:
    """A runs_frame-like table: (variant, seed, lr) -> final_val_loss (+ a test loss to ignore)."""
    rows = [{"run_id": f"{v}-{s}-{lr}", "variant": v, "seed": s, "lr": lr, "final_val_loss": loss,
             "final_test_loss": 10 - loss, "status": (status or {}).get((v, s, lr), "FINISHED")}
            for (v, s, lr), loss in values.items()]
    return pd.DataFrame(rows)


TWO_SEEDS = {("a", 0, 0.001): 2.0, ("a", 0, 0.003): 1.5, ("a", 0, 0.01): 1.7,
             ("a", 1, 0.001): 1.4, ("a", 1, 0.003): 1.6, ("a", 1, 0.01): 1.8,
             ("b", 0, 0.001): 2.2, ("b", 0, 0.003): 2.1, ("b", 0, 0.01): 1.9}


def test_per_seed_choice_selects_the_best_val_run_per_variant_and_seed():
    chosen = tuning.select(runs(TWO_SEEDS), tune_space.TuneSpace({"lr": LRS}, choice="per_seed"))
    assert list(zip(chosen["variant"], chosen["seed"], chosen["lr"])) == [
        ("a", 0, 0.003), ("a", 1, 0.001), ("b", 0, 0.01)]
    assert list(chosen["tuned"]) == ["lr=0.003", "lr=0.001", "lr=0.01"]
    assert list(chosen["tune_at_edge"]) == [False, True, True]
    assert (chosen["tune_candidates"] == 3).all() and (chosen["tune_planned"] == 3).all()
    assert chosen["final_test_loss"].tolist() == [8.5, 8.6, 8.1]   # the selected runs' test numbers


def test_by_default_each_arm_runs_at_the_value_with_the_best_mean_val_loss_over_its_seeds():
    chosen = tuning.select(runs(TWO_SEEDS), {"lr": LRS})     # arm a: means 1.7, 1.55, 1.75
    assert list(zip(chosen["variant"], chosen["seed"], chosen["lr"])) == [
        ("a", 0, 0.003), ("a", 1, 0.003), ("b", 0, 0.01)]
    assert chosen["final_test_loss"].tolist() == [8.5, 8.4, 8.1] and chosen.attrs["choice"] == "per_arm"
    assert chosen["tune_at_edge"].tolist() == [False, False, True]


def test_per_arm_a_value_some_seed_failed_at_ranks_below_one_every_seed_finished():
    frame = runs({("a", 0, 0.001): 0.5, ("a", 1, 0.001): 0.5, ("a", 0, 0.003): 0.1, ("a", 1, 0.003): 0.2,
                  ("a", 0, 0.01): 0.9, ("a", 1, 0.01): 0.9}, status={("a", 1, 0.003): "FAILED"})
    assert tuning.select(frame, {"lr": LRS})["lr"].tolist() == [0.001, 0.001]


def test_per_arm_a_seed_whose_run_at_the_arms_choice_failed_is_judged_as_failed():
    frame = runs({("a", 0, 0.001): 0.5, ("a", 1, 0.001): math.nan, ("a", 0, 0.003): math.nan, ("a", 1, 0.003): 0.9})
    assert tuning.select(frame, {"lr": LRS}).attrs["unselected"] == [("a", 1)]
    judged = tuning.judged_runs(frame, {"lr": LRS})
    assert judged[judged["seed"] == 1]["tuned"].tolist() == ["none usable", "none usable"]


def test_a_tie_goes_to_the_value_listed_first():
    frame = runs({("a", 0, 0.01): 1.5, ("a", 0, 0.003): 1.5, ("a", 0, 0.001): 1.9})
    assert tuning.select(frame, {"lr": LRS})["lr"].tolist() == [0.003]
    assert tuning.select(frame, {"lr": [0.01, 0.003, 0.001]})["lr"].tolist() == [0.01]


def test_failed_and_diverged_runs_are_never_selected_and_an_empty_group_is_reported():
    frame = runs({("a", 0, 0.001): 2.0, ("a", 0, 0.003): 0.1, ("a", 0, 0.01): math.nan,
                  ("b", 0, 0.001): 1.0}, status={("a", 0, 0.003): "FAILED", ("b", 0, 0.001): "KILLED"})
    chosen = tuning.select(frame, {"lr": LRS})
    assert chosen[["variant", "lr", "tune_candidates"]].values.tolist() == [["a", 0.001, 1]]
    assert chosen.attrs["unselected"] == [("b", 0)]


def test_selection_on_a_test_metric_is_refused():
    with pytest.raises(ValueError, match="never uses the test split"):
        tuning.select(runs({("a", 0, 0.001): 1.0}), {"lr": LRS}, metric="final_test_loss")


def test_higher_is_better_metrics_select_the_maximum():
    frame = runs({("a", 0, 0.001): 0.2, ("a", 0, 0.003): 0.9}).rename(columns={"final_val_loss": "final_val_accuracy"})
    assert tuning.select(frame, {"lr": LRS}, metric="final_val_accuracy")["lr"].tolist() == [0.003]


def test_params_read_back_as_floats_still_match_the_tuned_values():
    frame = runs({("a", 0, float("0.0030000000000000001")): 1.0})
    assert tuning.select(frame, {"lr": LRS})["tuned"].tolist() == ["lr=0.003"]
    with pytest.raises(ValueError, match="not among the tuned values"):   # inside the range, not listed
        tuning.select(runs({("a", 0, 0.005): 1.0}), {"lr": LRS})


def test_string_params_match_typed_tuned_values_and_are_written_as_configs_write_them():
    frame = pd.DataFrame([{"variant": "a", "seed": 0, "hidden_size": "512", "residual": "True",
                           "final_val_loss": 1.0, "status": "FINISHED"}])   # MLflow params are strings
    chosen = tuning.select(frame, {"hidden_size": [256, 512, 1024], "residual": [False, True]})
    assert chosen["tuned"].tolist() == ["hidden_size=512,residual=true"]   # config.format_value's text
    assert chosen["tune_at_edge"].tolist() == [False]


def test_isolation_and_chosen_counts_feed_the_page():
    frame = runs({("a", s, lr): 1 + lr * 100 + s for s in (0, 1) for lr in LRS})
    view = tuning.isolation(frame, "lr")
    assert view[view["variant"] == "a"]["count"].tolist() == [2, 2, 2]
    assert view["mean"].tolist() == pytest.approx([1.6, 1.8, 2.5])
    assert tuning.chosen_counts(tuning.select(frame, {"lr": LRS})).values.tolist() == [["a", "lr=0.001", 2]]
    assert tune_space.tune_of({"tune": {"lr": LRS}}) == {"lr": LRS} and tune_space.tune_of(None) == {}


def test_tuning_module_does_not_import_torch():
    code = "import sys, charrnn.science.tuning; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ----------------------------------------------------------------------------- bracketing

@pytest.mark.parametrize(("overrides", "message"), [
    ({"tune": {"lr": [0.001, 0.01]}}, r"tune.lr: \[0.001, 0.01\]: 2 value\(s\); valid: at least 3 values"),
    ({"tune": {"lr": LRS}, "tune_bounds": {"grad_clip": [0.0, 1.0]}}, "grad_clip: 'grad_clip' is not tuned"),
    ({"tune": {"lr": LRS}, "tune_bounds": {"lr": [0.001]}}, r"tune_bounds.lr: \[0.001\]: expected \[lower, upper\]"),
    ({"tune": {"lr": LRS}, "tune_bounds": {"lr": [0.1, 0.0001]}}, "lower >= upper"),
    ({"tune": {"lr": LRS}, "tune_bounds": {"lr": [0.002, 0.1]}}, r"the tuned values \[0.001\] lie outside"),
    ({"tune": {"activation": ["tanh", "relu", "identity"]}, "tune_bounds": {"activation": ["tanh", "relu"]}},
     "activation is not numeric"),
])
def test_bad_tuning_range_is_a_one_line_grid_error(tmp_path, overrides, message):
    with pytest.raises(GridError, match=message) as err:
        load_grid(write_grid(tmp_path, grid_data(axes={"cell": ["vanilla", "gru"]}, **overrides)))
    assert "\n" not in str(err.value)


def test_a_two_value_axis_stops_charrnn_grid_with_exit_2(tmp_path, results_dir, capsys):
    path = write_grid(tmp_path, grid_data(tune={"lr": [0.001, 0.01]}))
    assert main(["grid", str(path), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.parametrize(("values", "side", "bound", "expected"), [
    ([0.001, 0.003, 0.01], 1, 1.0, 0.03333),          # geometric: 0.01 * (0.01 / 0.003)
    ([0.001, 0.003, 0.01], 1, 0.03, 0.03),            # clipped to the bound
    ([0.001, 0.003, 0.01], -1, 1e-5, 0.0003333),
    ([0.001, 0.003, 0.01], 1, 0.01, None),            # the edge is the bound: nothing beyond
    ([32, 64, 128], 1, 1000, 256),                     # integers stay integers
    ([0.0, 0.5, 1.0], -1, -2.0, -0.5),                 # through zero: the difference
])
def test_one_step_beyond_an_edge(values, side, bound, expected):
    assert tuning.beyond(values, side, bound) == (pytest.approx(expected) if expected is not None else None)


def space(bounds=None):
    return tuning.TuneSpace({"lr": LRS}, bounds)


def top_wins(extra=()):
    """Every seed of arm a prefers the largest lr it tried."""
    return runs({("a", s, lr): 2 - 10 * lr for s in (0, 1) for lr in (*LRS, *extra)})


def test_a_choice_at_an_edge_below_the_bound_grows_that_side_of_the_axis():
    chosen = tuning.select(top_wins(), space({"lr": (0.0005, 0.03)}))
    assert chosen["tune_at_edge"].all() and not chosen["tune_at_bound"].any()
    assert tuning.extension(chosen) == {"a": {"lr": [0.03]}}


def test_runs_beyond_the_listed_range_are_the_extension_and_a_choice_at_the_bound_stops_it():
    chosen = tuning.select(top_wins(extra=(0.03,)), space({"lr": (0.0005, 0.03)}))
    assert chosen["lr"].tolist() == [0.03, 0.03] and (chosen["tune_planned"] == 4).all()
    assert chosen["tune_at_edge"].all() and chosen["tune_at_bound"].all()
    assert tuning.extension(chosen) == {}


def test_without_a_bound_an_edge_is_flagged_not_grown_and_at_any_size():
    chosen = tuning.select(top_wins(), {"lr": LRS})
    assert chosen["tune_at_edge"].all() and tuning.extension(chosen) == {}
    two = tuning.select(runs({("a", 0, 0.001): 1.0, ("a", 0, 0.003): 2.0}), {"lr": [0.001, 0.003]})
    assert two["tune_at_edge"].tolist() == [True]


def test_tune_of_reads_bounds_and_numbers_yaml_left_as_text():
    found = tune_space.tune_of({"tune": {"lr": ["1e-3", 0.003, 0.01]}, "tune_bounds": {"lr": ["3e-4", 0.03]}})
    assert found == {"lr": [0.001, 0.003, 0.01]} and found.bounds == {"lr": (0.0003, 0.03)}
    assert found.choice == "per_arm"


def test_per_arm_the_axis_grows_where_the_arms_mean_choice_sits_at_an_edge():
    # seed 0 prefers 0.003 by a little, seed 1 prefers 0.01 by a lot: the arm's mean picks the edge 0.01
    frame = runs({("a", 0, 0.001): 2.0, ("a", 0, 0.003): 1.50, ("a", 0, 0.01): 1.55,
                  ("a", 1, 0.001): 2.0, ("a", 1, 0.003): 1.90, ("a", 1, 0.01): 1.20})
    per_arm = tuning.select(frame, space({"lr": (0.0005, 0.03)}))
    assert per_arm["lr"].tolist() == [0.01, 0.01] and tuning.extension(per_arm) == {"a": {"lr": [0.03]}}
    inside = runs({k: v for k, v in TWO_SEEDS.items() if k[0] == "a"})   # arm a's mean picks 0.003
    assert tuning.extension(tuning.select(inside, space({"lr": (0.0005, 0.03)}))) == {}
    per_seed = tune_space.TuneSpace({"lr": LRS}, {"lr": (0.0005, 0.03)}, "per_seed")
    assert tuning.extension(tuning.select(inside, per_seed)) == {"a": {"lr": [0.0005]}}   # seed 1 chose 0.001


def test_each_arm_brackets_its_own_optimum_and_reads_its_edges_on_its_own_axis():
    # arm a tried 0.03 beyond the grid (its edge choice grew its axis); arm b did not and chose 0.001
    frame = runs({**{("a", s, lr): 2 - 10 * lr for s in (0, 1) for lr in (*LRS, 0.03)},
                  **{("b", s, lr): 1 + 10 * lr for s in (0, 1) for lr in LRS}})
    chosen = tuning.select(frame, space({"lr": (0.0001, 0.1)}))
    by_arm = chosen.drop_duplicates("variant").set_index("variant")
    assert by_arm["lr"].to_dict() == {"a": 0.03, "b": 0.001} and by_arm["tune_planned"].to_dict() == {"a": 4, "b": 3}
    assert by_arm["tune_at_edge"].all() and not by_arm["tune_at_bound"].any()   # b's 0.001 is its own lowest
    assert list(chosen.attrs["tune"]["lr"]) == [*LRS, 0.03]                      # what any arm tried
    assert tuning.extension(chosen) == {"a": {"lr": [0.09]}, "b": {"lr": [0.0003333]}}


def test_a_value_an_arm_tried_and_failed_at_counts_as_tried():
    frame = runs({("a", 0, lr): 2 - 10 * lr for lr in (*LRS, 0.03)}, status={("a", 0, 0.03): "FAILED"})
    chosen = tuning.select(frame, space({"lr": (0.0005, 0.1)}))
    assert chosen["lr"].tolist() == [0.01] and not chosen["tune_at_edge"].any() and tuning.extension(chosen) == {}


def test_only_arms_a_loss_claim_judges_grow_the_axis_and_speed_only_arms_do_not(tmp_path):
    from types import SimpleNamespace

    from charrnn.grid.extend import next_round, tried_values, tuned_arms

    loss = {"source": "test", **SCOPE, "metric": "val_loss", "where": {"hidden_size": 16},
            "expect": {"cell": "gru", "better_than": "vanilla"}}
    speed = {"source": "test", **SCOPE, "metric": "tokens_per_s", "where": {"hidden_size": 8},
             "expect": {"cell": "gru", "better_than": "vanilla"}}
    grid = load_grid(write_grid(tmp_path, grid_data(claims=[loss, speed], tune={"lr": LRS},
                                                    tune_bounds={"lr": [0.0005, 0.03]})))
    assert tuned_arms(grid) == {"cell=vanilla,hidden_size=16", "cell=gru,hidden_size=16"}

    def results(best_of):   # every arm's runs, each arm preferring the lr `best_of(spec)` names
        return [SimpleNamespace(spec=s, status="FINISHED", final={"final_val_loss": abs(s.config.lr - best_of(s))})
                for s in grid.expand("quick")]
    speed_arms_at_edge = results(lambda s: 0.01 if s.config.hidden_size == 8 else 0.003)
    assert next_round(grid, "quick", speed_arms_at_edge, set())[1] == ()
    judged_at_edge = results(lambda s: 0.01 if s.config.cell == "gru" else 0.003)
    wider, specs, note = next_round(grid, "quick", judged_at_edge, {s.identity for s in grid.expand("quick")})
    assert dict(wider.tune)["lr"] == tuple(LRS) and tried_values(wider) == {"lr": [*LRS, 0.03]}
    assert "axis grew (cell=gru,hidden_size=16: lr + 0.03)" in note
    assert {(s.config.cell, s.config.hidden_size, s.config.lr) for s in specs} == {("gru", 16, 0.03)}   # that arm alone
    assert len(specs) == 2   # its two seeds; vanilla (inside its axis) and the speed-only arms train no more


def test_arms_only_speed_claims_judge_train_once_per_seed_at_the_first_tuned_value(tmp_path):
    loss = {"source": "test", **SCOPE, "metric": "val_loss", "where": {"hidden_size": 16},
            "expect": {"cell": "gru", "better_than": "vanilla"}}
    speed = {"source": "test", **SCOPE, "metric": "tokens_per_s", "where": {"hidden_size": 8},
             "expect": {"cell": "gru", "better_than": "vanilla"}}
    grid = load_grid(write_grid(tmp_path, grid_data(claims=[loss, speed], tune={"lr": LRS})))
    specs = grid.expand("quick")
    lrs = {(s.config.cell, s.config.hidden_size): sorted({t.config.lr for t in specs
                                                          if (t.config.cell, t.config.hidden_size) ==
                                                          (s.config.cell, s.config.hidden_size)}) for s in specs}
    assert lrs == {("vanilla", 8): [LRS[0]], ("gru", 8): [LRS[0]],
                   ("vanilla", 16): sorted(LRS), ("gru", 16): sorted(LRS)}
    assert len(specs) == (2 * 1 + 2 * len(LRS)) * 2
    only_speed = load_grid(write_grid(tmp_path, grid_data(claims=[speed], tune={"lr": LRS}), name="speed.yaml"))
    assert {s.config.lr for s in only_speed.expand("quick")} == set(LRS)   # speed claims alone: every variant tuned
    from charrnn.grid.extend import grow
    from charrnn.grid.spec import variant_name
    grown = grow(grid, {variant_name(v): {"lr": [0.03]} for v in grid.variants()})
    assert [s for s in grown.expand("quick") if s.config.hidden_size == 8] == \
        [s for s in specs if s.config.hidden_size == 8]   # an extension leaves them as they were
