"""Pages of tuned grids judge best against best; every page shows the budget views."""
from __future__ import annotations

import numpy as np
import pandas as pd

from charrnn.report.pages import build_context, render_experiment
from charrnn.science.tuning import TuneSpace, judged_runs
from charrnn.tags import EXCLUSIVE, SPEED_MEASUREMENTS, SPEED_TAG
from tests.claim_support import SCOPE
from tests.report_synthetic import make_curves, make_experiment

LRS = [0.001, 0.01]


def tuned_experiment():
    """concat is worse at lr 0.001 and far better at its best lr 0.01; add is best at 0.001.
    Averaged over both lrs the arms tie; best against best, concat wins by 0.1."""
    exp = make_experiment(axes={"input_combine": ["add", "concat"]}, seeds=[0, 1, 2, 3, 4],
                          claims=[{**SCOPE,
                                   "metric": "test_loss", "expect": {"input_combine": "concat", "better_than": "add"}}])
    rows = []
    rng = np.random.default_rng(1)
    for _, r in exp.runs.iterrows():
        for lr in LRS:
            best = {"add": 0.001, "concat": 0.01}[r["input_combine"]]
            loss = 1.8 + (0.0 if lr == best else 0.3) - (0.1 if r["input_combine"] == "concat" else 0.0)
            loss += 0.003 * rng.standard_normal()
            rows.append({**r.to_dict(), "run_id": f"{r['run_id']}-{lr}", "lr": lr, "final_val_loss": loss,
                         "final_test_loss": loss + 0.01})
    exp.runs = pd.DataFrame(rows)
    curves = make_curves(exp.runs)
    steps = curves[curves["metric"] == "val_loss"][["run_id", "step"]].drop_duplicates()
    exp.curves = pd.concat([curves, steps.assign(metric="step_time_ms", value=12.0)], ignore_index=True)
    exp.tune = {"lr": LRS}
    return exp


def test_judged_runs_keep_the_val_best_run_per_arm_and_seed():
    exp = tuned_experiment()
    chosen = judged_runs(exp.runs.assign(variant=exp.runs["input_combine"]), exp.tune)
    assert len(chosen) == 10
    assert set(zip(chosen["input_combine"], chosen["lr"])) == {("add", 0.001), ("concat", 0.01)}


def test_a_tuned_page_judges_best_against_best_and_shows_the_choice(tmp_path):
    exp = tuned_experiment()
    context = build_context(exp)
    verdict = context["verdicts"][0]
    assert verdict["verdict"] == "reproduced" and abs(verdict["effect"] - 0.1) < 0.01   # as claimed: +
    assert {c["tuned"] for c in context["tuning"]["chosen"]} == {"lr=0.001", "lr=0.01"}
    assert context["n_runs"] == 20
    html = render_experiment(exp, tmp_path).path.read_text()
    assert "Nuisance tuning" in html and "Isolation: val_loss against lr" in html


def test_the_tuning_table_names_the_values_each_arm_tried(tmp_path):
    exp = tuned_experiment()
    extra = exp.runs[(exp.runs["input_combine"] == "concat") & (exp.runs["lr"] == 0.01)]
    exp.runs = pd.concat([exp.runs, extra.assign(lr=0.1, run_id=extra["run_id"] + "-grown",
                                                 final_val_loss=extra["final_val_loss"] + 1)], ignore_index=True)
    tried = {c["variant"]: c["tried"] for c in build_context(exp)["tuning"]["chosen"]}
    assert tried == {"input_combine=add": "0.001, 0.01", "input_combine=concat": "0.001, 0.01, 0.1"}
    html = render_experiment(exp, tmp_path).path.read_text()
    assert "<th>tried</th>" in html and "<td>0.001, 0.01, 0.1</td>" in html


def test_every_page_shows_the_effect_over_steps_and_at_equal_time(tmp_path):
    exp = tuned_experiment()
    budget = build_context(exp)["budget"][0]
    assert budget["curve"] == "val_loss" and [t["unit"] for t in budget["tables"]] == ["step", "time"]
    assert all(t["rows"] for t in budget["tables"])
    html = render_experiment(exp, tmp_path).path.read_text()
    assert "Budget views" in html and "At equal training time" in html


def test_a_hidden_size_page_reports_the_largest_neighbour_speed_ratio(tmp_path):
    exp = make_experiment(axes={"hidden_size": [64, 128, 256]}, seeds=[0, 1, 2, 3, 4],
                          claims=[{**SCOPE,
                                   "metric": "tokens_per_s", "expect": {"hidden_size": 128, "better_than": 256}}])
    speed = {"64": 1000.0, "128": 900.0, "256": 100.0}
    exp.runs["final_tokens_per_s"] = exp.runs["hidden_size"].map(speed) + exp.runs["seed"].astype(float)
    sweep = build_context(exp)["sweep"]
    assert sweep["largest"].startswith("8.84x") and "256 down to 128" in sweep["largest"]
    assert "Largest neighbour-to-neighbour ratio" in render_experiment(exp, tmp_path).path.read_text()


def test_a_choice_at_the_grids_bound_is_said_apart_from_an_open_edge(tmp_path):
    exp = tuned_experiment()
    exp.tune = TuneSpace({"lr": LRS}, {"lr": (0.001, 0.1)})     # 0.001 is the bound, 0.01 an open edge
    tuning = build_context(exp)["tuning"]
    assert tuning["bound"] and all("lr=0.001" in line for line in tuning["bound"])
    assert tuning["edge"] and all("lr=0.01" in line for line in tuning["edge"])
    html = render_experiment(exp, tmp_path).path.read_text()
    assert "Chosen at the grid&#39;s bound" in html or "Chosen at the grid's bound" in html


def test_a_page_says_how_speed_was_measured(tmp_path):
    exp = make_experiment(axes={"hidden_size": [64, 128]}, seeds=[0, 1, 2, 3, 4],
                          claims=[{**SCOPE, "metric": "tokens_per_s",
                                   "expect": {"hidden_size": 64, "better_than": 128}}])
    exp.runs[SPEED_TAG] = EXCLUSIVE
    html = render_experiment(exp, tmp_path).path.read_text()
    assert f"How speed was measured: exclusive: {SPEED_MEASUREMENTS[EXCLUSIVE]}" in html.replace("&#39;", "'")


def test_arms_only_speed_claims_judge_are_named_as_trained_at_one_value_not_flagged_at_an_edge(tmp_path):
    """A loss claim on hidden sizes 64 and 128 (both lrs tried), a speed claim that also judges 256,
    which trained once per seed at the first lr: no edge warning for it, no isolation points, one note."""
    exp = make_experiment(axes={"hidden_size": [64, 128, 256]}, seeds=[0, 1, 2, 3, 4], claims=[
        {**SCOPE, "metric": "test_loss", "expect": {"hidden_size": 128, "better_than": 64}},
        {**SCOPE, "metric": "tokens_per_s", "expect": {"hidden_size": 256, "better_than": 128}}])
    rows = []
    for _, r in exp.runs.iterrows():
        for lr in LRS[:1] if int(r["hidden_size"]) == 256 else LRS:
            loss = 1.8 + (0.0 if lr == 0.01 else 0.2)
            rows.append({**r.to_dict(), "run_id": f"{r['run_id']}-{lr}", "lr": lr, "final_val_loss": loss,
                         "final_test_loss": loss, "final_tokens_per_s": 1000.0 / int(r["hidden_size"])})
    exp.runs = pd.DataFrame(rows)
    exp.curves, exp.tune = make_curves(exp.runs), {"lr": LRS}
    tuning = build_context(exp)["tuning"]
    assert tuning["one_value"] == ["hidden_size=256"]
    assert tuning["edge"] and not any("256" in line for line in tuning["edge"] + tuning["bound"])
    assert {c["variant"] for c in tuning["chosen"]} == {"hidden_size=64", "hidden_size=128"}
    html = render_experiment(exp, tmp_path).path.read_text()
    assert "Trained at one value (the first listed), not tuned: hidden_size=256." in html
    assert "Each arm in the table trained every value of lr it tried per seed" in html
    every_rate = exp.runs[exp.runs["hidden_size"].astype(int) < 256]
    exp.runs = pd.concat([every_rate, every_rate[every_rate["hidden_size"].astype(int) == 128].assign(
        hidden_size="256", run_id=lambda f: f["run_id"] + "-256")], ignore_index=True)
    exp.curves = make_curves(exp.runs)
    assert build_context(exp)["tuning"]["one_value"] == []   # an older store tuned it: shown as tuned
