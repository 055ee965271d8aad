"""Every run with a test split logs its per-test-window sums (`test_windows.json`): one entry per
independently scored window, whose token-weighted means are the logged test metrics."""
import json

import pytest

from charrnn.config import make_config
from charrnn.run.runner import run_one
from charrnn.run.train import Trainer
from charrnn.tags import TEST_WINDOWS_ARTIFACT
from charrnn.tracking.store import Tracker

TINY = {"hidden_size": 8, "batch_size": 4, "seq_len": 16, "eval_batches": 3, "device": "cpu", "steps": 4,
        "eval_interval": 2, "test_split": True}


def fitted(**overrides) -> tuple[Trainer, dict[str, float]]:
    trainer = Trainer(make_config({**TINY, **overrides}), progress=False)
    return trainer, trainer.fit().final


def test_window_sums_average_to_the_logged_test_loss_one_window_per_row():
    trainer, final = fitted(task="names")
    windows = trainer.test_windows["test"]
    assert windows["unit"] == "row" and len(windows["loss_sum"]) == 3 * 4   # eval_batches × batch_size
    assert sum(windows["loss_sum"]) / sum(windows["tokens"]) == pytest.approx(final["final_test_loss"], rel=1e-6)
    assert trainer.test_windows["test_own"] == windows                     # hidden_init zero: one protocol


def test_accuracy_and_exact_match_are_window_sums_too():
    trainer, final = fitted(task="bitflip", bitflip_bits=8)
    w = trainer.test_windows["test"]
    assert len(w["correct"]) == len(w["exact"]) == len(w["rows"]) == 3 * 4
    assert sum(w["correct"]) / sum(w["tokens"]) == pytest.approx(final["final_test_accuracy"], rel=1e-9)
    assert sum(w["exact"]) / sum(w["rows"]) == pytest.approx(final["final_test_exact_match"], rel=1e-9)
    assert sum(w["loss_sum"]) / sum(w["tokens"]) == pytest.approx(final["final_test_loss"], rel=1e-6)


def test_a_carried_state_makes_each_track_one_window(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    trainer, final = fitted(task="text", path=str(corpus), eval_mode="stateful")
    windows = trainer.test_windows["test"]
    assert windows["unit"] == "track" and len(windows["tokens"]) == 4      # batch_size tracks
    assert sum(windows["loss_sum"]) / sum(windows["tokens"]) == pytest.approx(final["final_test_loss"], rel=1e-6)


def test_the_own_protocol_gets_its_own_windows():
    trainer, final = fitted(task="names", hidden_init="random")
    own = trainer.test_windows["test_own"]
    assert own != trainer.test_windows["test"]
    assert sum(own["loss_sum"]) / sum(own["tokens"]) == pytest.approx(final["final_test_own_loss"], rel=1e-6)


def test_the_run_logs_its_windows_as_an_artifact(results_dir):
    outcome = run_one(make_config({**TINY, "task": "names"}), Tracker(), experiment="windows", progress=False)
    logged = json.loads(Tracker().artifact_text(outcome.run_id, TEST_WINDOWS_ARTIFACT))
    w = logged["test"]
    assert len(w["tokens"]) == 12
    assert sum(w["loss_sum"]) / sum(w["tokens"]) == pytest.approx(outcome.final["final_test_loss"], rel=1e-6)


def test_a_run_without_a_test_split_logs_no_windows():
    trainer, _ = fitted(task="names", test_split=False)
    assert trainer.test_windows is None
