"""The learning check: every run logs `baseline_<metric>`, a trivial model of its train split
scored on the run's own evaluation batches."""
import math

import pytest
import torch

from charrnn import registry
from charrnn.config import make_config
from charrnn.run.train import Trainer
from charrnn.tasks.base import Batch
from charrnn.tasks.baseline import predictor_tables, score_table
from charrnn.tasks.data import make_task

TINY = {"hidden_size": 8, "batch_size": 4, "seq_len": 16, "eval_batches": 2, "device": "cpu"}


def tiny(**overrides):
    return make_config({**TINY, **overrides})


def test_the_bigram_of_an_alternating_text_is_its_smoothed_transition_probability(tmp_path):
    corpus = tmp_path / "ab.txt"
    corpus.write_text("ab" * 500, encoding="utf-8")
    base = Trainer(tiny(task="text", path=str(corpus), steps=1), progress=False).baselines()
    # train: 900 chars, 450 a->b and 449 b->a pairs; add-one: P(b|a) = 451/452, P(a|b) = 450/451
    low, high = -math.log(451 / 452), -math.log(450 / 451)
    assert low <= base["baseline_val_loss"] <= high          # the bigram, far below the unigram's ln 2
    assert set(base) == {"baseline_val_loss", "baseline_train_eval_loss"}   # no accuracy, no test split


def test_score_table_counts_masked_targets_only_as_the_trainer_does():
    table = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64))  # argmax: 0 -> 0, 1 -> 1
    x = torch.tensor([[0, 1, 1], [1, 0, 0]])
    y = torch.tensor([[0, 1, 0], [1, 1, 0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    scores = score_table(table, [Batch(x, y, mask)], has_accuracy=True)
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.8) + math.log(0.1) + math.log(0.9)) / 5
    assert scores["loss"] == pytest.approx(expected)
    assert scores["accuracy"] == pytest.approx(4 / 5)       # the masked miss (1 -> 0) does not count
    assert scores["exact_match"] == pytest.approx(1 / 2)     # row 0 exact on its scored targets


def test_bitflip_gets_chance_only_its_input_bit_would_answer_it():
    task = make_task(tiny(task="bitflip", test_split=True))
    assert list(predictor_tables(task)) == ["unigram"]
    base = Trainer(tiny(task="bitflip", test_split=True, steps=1), progress=False).baselines()
    assert base["baseline_test_loss"] == pytest.approx(math.log(2), abs=0.01)
    assert 0.4 <= base["baseline_test_accuracy"] <= 0.6
    assert base["baseline_test_own_accuracy"] == base["baseline_test_accuracy"]


def test_language_tasks_take_the_better_of_unigram_and_bigram():
    task = make_task(tiny(task="arithmetic", test_split=True))
    tables = predictor_tables(task)
    assert set(tables) == {"unigram", "bigram"}
    batches = task.eval_batches("test", 4, 16, 2)
    scored = {name: score_table(t, batches, True) for name, t in tables.items()}
    base = Trainer(tiny(task="arithmetic", test_split=True, steps=1), progress=False).baselines()
    assert base["baseline_test_loss"] == pytest.approx(min(s["loss"] for s in scored.values()))
    assert base["baseline_test_accuracy"] == pytest.approx(max(s["accuracy"] for s in scored.values()))


def test_a_run_logs_each_baseline_once_with_its_final_metrics_and_the_registry_knows_them():
    result = Trainer(tiny(task="names", test_split=True, steps=2, eval_interval=2), progress=False).fit()
    baselines = {k for k in result.final if k.startswith("baseline_")}
    assert baselines == {"baseline_val_loss", "baseline_train_eval_loss", "baseline_test_loss",
                         "baseline_test_own_loss"}
    assert all(k in registry.METRICS and not registry.METRICS[k].claim for k in baselines)
    assert registry.baseline_of("final_test_loss") == "baseline_test_loss"
    assert registry.baseline_of("tokens_per_s") is None
    assert "baseline_test_loss" not in registry.final_metrics() + registry.claim_metrics()
