"""The convergence budget: the stopping rule on synthetic curves, its config keys, and a training run
that stops by patience, reports test metrics of its best-validation weights, and resumes after a kill."""
import dataclasses
import math

import pytest
from grid_support import empty_store_db, store  # noqa: F401

from charrnn.cli import main
from charrnn.config import ConfigError, make_config
from charrnn.run.convergence import EarlyStopping
from charrnn.run.train import Trainer
from charrnn.science.results import runs_frame
from charrnn.tracking.store import Tracker


def stop_step(curve, patience, min_improvement=0.0, every=10):
    """Feed `curve` (one val_loss per evaluation, every `every` steps) until the rule stops:
    (step it stopped at or None at the cap, the rule)."""
    rule = EarlyStopping(patience, min_improvement)
    for i, loss in enumerate(curve):
        rule.update((i + 1) * every, loss)
        if rule.stopped:
            return (i + 1) * every, rule
    return None, rule


# ----------------------------------------------------------------------------- the rule on synthetic curves

def test_plateau_stops_after_patience_evaluations_without_improvement():
    curve = [3.0, 2.5, 2.2, 2.1] + [2.1] * 10
    stopped, rule = stop_step(curve, patience=3)
    assert stopped == 70 and rule.best == 2.1 and rule.best_step == 40


def test_a_rising_curve_keeps_the_best_step_before_the_rise():
    stopped, rule = stop_step([2.0, 1.5, 1.4, 1.6, 1.8, 2.0], patience=2)
    assert stopped == 50 and rule.best_step == 30 and rule.best == 1.4


def test_noise_below_the_minimum_relative_improvement_does_not_reset_patience():
    noise = [1.0, 0.999, 1.001, 0.9985, 1.0, 0.9991, 1.0005]   # wiggles of < 0.2 %
    stopped, rule = stop_step([2.0, 1.2] + noise, patience=4, min_improvement=0.01)
    assert stopped == 70 and rule.best == 1.0 and rule.best_step == 30
    stopped_without_margin, _ = stop_step([2.0, 1.2] + noise, patience=4, min_improvement=0.0)
    assert stopped_without_margin is None   # every new low counts: patience never runs out in these 9 evals


def test_a_curve_still_improving_at_the_cap_never_stops():
    stopped, rule = stop_step([3.0 * 0.97 ** i for i in range(50)], patience=2, min_improvement=0.01)
    assert stopped is None and not rule.stopped and rule.best_step == 500


def test_patience_zero_never_stops_but_still_tracks_the_best():
    stopped, rule = stop_step([1.0, 2.0, 3.0, 4.0], patience=0)
    assert stopped is None and rule.best_step == 10


def test_a_non_finite_evaluation_is_never_the_best():
    stopped, rule = stop_step([math.nan, 2.0, math.inf, 2.5], patience=2)
    assert stopped == 40 and rule.best == 2.0 and rule.best_step == 20


def test_the_rule_round_trips_through_its_state():
    _, rule = stop_step([2.0, 1.0, 1.5], patience=3)
    assert EarlyStopping.from_state(rule.state_dict()) == rule


# ----------------------------------------------------------------------------- config keys

@pytest.mark.parametrize("overrides,message", [
    ({"patience": -1}, "patience=-1: out of range; valid: an integer >= 0"),
    ({"patience": 2, "min_improvement": 1.0}, r"min_improvement=1.0: out of range; valid: a number in \[0, 1\)"),
    ({"patience": 2, "min_improvement": -0.1}, "min_improvement=-0.1: out of range"),
    ({"min_improvement": 0.01}, "min_improvement=0.01: applies only with a convergence budget; valid: patience >= 1"),
])
def test_bad_convergence_keys_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_config(overrides)
    assert "\n" not in str(info.value)


def test_convergence_keys_at_their_defaults_keep_every_earlier_identity():
    assert make_config({"patience": 0, "min_improvement": 0.0}).identity_hash() == make_config({}).identity_hash()
    assert make_config({"patience": 3}).identity_hash() != make_config({}).identity_hash()


# ----------------------------------------------------------------------------- training under the budget

# a model that overfits a 0.5 % slice of tinyshakespeare within a few evaluations: val_loss turns up
OVERFIT = {"hidden_size": 32, "batch_size": 8, "seq_len": 16, "eval_batches": 4, "device": "cpu",
           "dataset_fraction": 0.005, "lr": 0.02, "steps": 300, "eval_interval": 10, "test_split": True}


def budget(**overrides):
    return make_config({**OVERFIT, "patience": 2, **overrides})


class Sink:
    """Records metrics; raises KeyboardInterrupt at the flush after evaluation `kill_at` (a kill)."""

    def __init__(self, kill_at=None):
        self.logged, self.flushes, self.kill_at = [], 0, kill_at

    def log_metrics(self, metrics, step):
        self.logged.append((step, metrics))

    def log_artifact(self, *args):
        pass

    def flush(self):
        self.flushes += 1
        if self.flushes == self.kill_at:
            raise KeyboardInterrupt


def test_a_run_stops_by_patience_before_its_cap_and_says_so():
    trainer = Trainer(budget(), progress=False)
    final = trainer.fit().final
    assert final["converged"] == 1.0
    assert trainer.step < trainer.cfg.steps
    assert trainer.step == final["best_step"] + 2 * trainer.cfg.eval_interval   # patience 2 evaluations
    assert final["epochs"] == trainer.step / trainer.batches_per_epoch


def test_a_run_that_reaches_its_cap_has_not_converged():
    trainer = Trainer(budget(steps=20, patience=5), progress=False)
    final = trainer.fit().final
    assert trainer.step == 20 and final["converged"] == 0.0


def test_test_metrics_are_those_of_the_best_step_checkpoint(tmp_path):
    cfg = budget()
    trainer = Trainer(cfg, progress=False)
    final = trainer.fit().final
    best_step = int(final["best_step"])
    assert 0 < best_step < trainer.step   # val_loss rose after the best: the last weights differ
    # the same run stopped at best_step (patience off: same seed, same batches), checkpointed, reloaded
    truncated = dataclasses.replace(cfg, steps=best_step, patience=0)
    at_best = Trainer(truncated, checkpoint_dir=tmp_path, progress=False)
    at_best.fit()
    at_best.save_checkpoint()
    fresh = Trainer(truncated, progress=False)
    fresh.load_checkpoint(tmp_path / "checkpoint.pt")
    expected = fresh.evaluate_test()["test_loss"]
    assert final["final_test_loss"] == pytest.approx(expected, abs=1e-6)
    assert final["final_val_loss"] == pytest.approx(fresh.evaluate()["val_loss"], abs=1e-6)
    last_weights = Trainer(dataclasses.replace(cfg, steps=trainer.step, patience=0), progress=False).fit().final
    assert abs(last_weights["final_test_loss"] - final["final_test_loss"]) > 1e-4   # the restore mattered


@pytest.mark.parametrize("kill_at", [4, 7])   # before the best eval (step 60); after it, patience counting
def test_a_killed_run_resumes_with_its_best_weights_and_patience_count(tmp_path, kill_at):
    cfg = budget()
    full = Trainer(cfg, progress=False).fit().final
    killed = Trainer(cfg, sink=Sink(kill_at=kill_at), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    resumed = Trainer(cfg, progress=False)
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    assert resumed.step == kill_at * cfg.eval_interval
    final = resumed.fit().final
    for key in ("final_test_loss", "final_val_loss", "converged", "best_step", "epochs"):
        assert final[key] == pytest.approx(full[key], abs=1e-6), key


def test_a_run_killed_after_patience_ran_out_trains_no_further_on_resume(tmp_path):
    cfg = budget()
    finished = Trainer(cfg, checkpoint_dir=tmp_path, progress=False)
    full = finished.fit().final   # its last checkpoint: the evaluation where patience ran out
    resumed = Trainer(cfg, progress=False)
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    result = resumed.fit()
    assert result.train_losses == [] and resumed.step == finished.step
    assert result.final["final_test_loss"] == full["final_test_loss"] and result.final["converged"] == 1.0


def test_charrnn_train_logs_converged_best_step_and_epochs_to_the_run(store):
    args = [f"{k}={v}" for k, v in {**OVERFIT, "patience": 2}.items()]
    assert main(["train", *args, "sample_length=10"]) == 0
    (run,) = Tracker().runs("train")
    assert run.metrics["converged"] == 1.0 and 0 < run.metrics["best_step"] < OVERFIT["steps"]
    assert run.metrics["epochs"] > 0
    frame = runs_frame("train")
    assert {"converged", "best_step", "epochs"} <= set(frame.columns)
