"""Train/val/test splits, stateful evaluation and the train-eval loss (the evaluation protocol)."""
from __future__ import annotations

import math
import random

import pytest
import torch

from charrnn import registry
from charrnn.config import ConfigError, TrainConfig, make_config
from charrnn.tasks.data import make_task
from charrnn.run.train import Trainer, masked_cross_entropy
from charrnn.science.results import RUN_SUMMARY

SEQUENCE_TASKS = ("names", "arithmetic", "bitflip")

pytestmark = pytest.mark.usefixtures("one_thread")


def task_for(name: str = "tinyshakespeare", **overrides):
    return make_task(TrainConfig(task=name, **overrides))


def rows_of(examples) -> set[tuple[int, ...]]:
    return {tuple(r) for r in examples.x.tolist()}


# ----------------------------------------------------------------------------- splits

def test_corpus_test_split_is_carved_from_train_and_leaves_val_unchanged():
    plain, split = task_for(), task_for(test_split=True)
    total = len(split.train_ids) + len(split.test_ids) + len(split.val_ids)
    assert total == len(plain.train_ids) + len(plain.val_ids) == 1_115_394
    assert torch.equal(split.val_ids, plain.val_ids)
    assert len(split.test_ids) == int(total * 0.1) and len(split.val_ids) == total - int(total * 0.9)
    # contiguous, in order: | train | test | val |
    stream = torch.cat([plain.train_ids, plain.val_ids])
    assert torch.equal(torch.cat([split.train_ids, split.test_ids, split.val_ids]), stream)


def test_dataset_fraction_shrinks_train_only_with_a_test_split():
    full, part = task_for(test_split=True), task_for(test_split=True, dataset_fraction=0.25)
    assert torch.equal(part.test_ids, full.test_ids) and torch.equal(part.val_ids, full.val_ids)
    assert part.train_tokens == int(full.train_tokens * 0.25)


@pytest.mark.parametrize("name", SEQUENCE_TASKS)
def test_sequence_test_split_holds_distinct_items_and_leaves_val_unchanged(name):
    plain, split = task_for(name), task_for(name, test_split=True)
    train, test, val = rows_of(split.train), rows_of(split.test), rows_of(split.val)
    assert len(test) == len(split.test) and len(val) == len(split.val)  # no repeated item
    assert not train & test and not train & val and not test & val
    assert len(test) == len(val)
    if name != "bitflip":  # bitflip's 8-bit space is small: its val grows to MIN_HOLDOUT-ish
        assert torch.equal(split.val.x, plain.val.x)


def test_bitflip_test_split_has_enough_distinct_val_and_test_integers():
    task = task_for("bitflip", bitflip_bits=8, test_split=True)
    assert len(task.val) == len(task.test) == 64 and len(task.train) == 128
    assert len(task_for("bitflip", bitflip_bits=16, test_split=True).test) == 1000


def test_space_too_small_for_three_splits_is_a_config_error():
    with pytest.raises(ConfigError, match="too small for train, test and val"):
        task_for("bitflip", bitflip_bits=1, test_split=True)


@pytest.mark.parametrize("name", ("tinyshakespeare",) + SEQUENCE_TASKS)
def test_without_test_split_there_is_no_test_split(name):
    task = task_for(name)
    assert not task.has_test
    with pytest.raises(ConfigError, match="split='test'.*test_split=true"):
        task.eval_batches("test", 4, 16, 1)


@pytest.mark.parametrize("name", ("tinyshakespeare",) + SEQUENCE_TASKS)
def test_eval_batches_of_every_split_are_fixed(name):
    task = task_for(name, test_split=True)
    for split in ("train", "val", "test"):
        a, b = task.eval_batches(split, 4, 16, 2), task.eval_batches(split, 4, 16, 2)
        assert len(a) == 2 and all(torch.equal(x.x, y.x) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- final metrics

def tiny(**overrides) -> TrainConfig:
    return make_config({"hidden_size": 16, "batch_size": 4, "seq_len": 16, "eval_batches": 2,
                        "device": "cpu", "steps": 4, "eval_interval": 2, **overrides})


@pytest.mark.parametrize("name", ["tinyshakespeare", "bitflip"])
def test_final_metrics_cover_train_val_and_test(name):
    final = Trainer(tiny(task=name, test_split=True), progress=False).fit().final
    assert {"final_val_loss", "final_train_eval_loss", "final_test_loss"} <= set(final)
    if name == "bitflip":
        assert {"final_test_accuracy", "final_test_exact_match"} <= set(final)
    assert all(math.isfinite(final[k]) for k in final)
    baselines = {k for k in final if k.startswith("baseline_")}
    assert set(final) - set(RUN_SUMMARY) - baselines <= set(registry.final_metrics())
    assert {registry.baseline_of(k.removeprefix("final_")) for k in final if k.startswith("final_")} >= baselines


def test_no_test_metric_without_a_test_split():
    final = Trainer(tiny(), progress=False).fit().final
    assert not any(k.startswith("final_test") for k in final)


def test_test_metrics_have_no_curve_so_nothing_selects_on_them():
    tests = [m for m in registry.METRICS.values() if m.name.startswith("test_")]
    assert tests and not any(m.curve for m in tests) and all(m.final for m in tests)
    assert "train_eval_loss" in registry.curve_metrics()


class Recorder:
    def __init__(self):
        self.logged: list[tuple[int, dict]] = []

    def log_metrics(self, metrics, step):
        self.logged.append((step, dict(metrics)))

    def log_artifact(self, *args, **kwargs):
        pass

    def flush(self):
        pass


def test_test_split_is_never_logged_during_training():
    sink = Recorder()
    Trainer(tiny(test_split=True, steps=6), sink=sink, progress=False).fit()
    assert not any(k.startswith("test") for _, metrics in sink.logged for k in metrics)
    assert [s for s, m in sink.logged if "train_eval_loss" in m] == [1, 3, 5]


def test_train_eval_loss_shows_memorisation_on_a_tiny_train_split():
    cfg = tiny(hidden_size=64, batch_size=8, seq_len=32, dataset_fraction=0.0005, steps=60,
               eval_interval=60, lr=1e-2)   # ~450 training characters
    final = Trainer(cfg, progress=False).fit().final
    assert final["final_train_eval_loss"] < final["final_val_loss"] - 1.0
    assert final["final_train_eval_loss"] < final["final_train_loss"]  # the running mean lags behind


# ----------------------------------------------------------------------------- stateful evaluation

def test_stateful_config_on_a_sequence_task_is_a_config_error():
    with pytest.raises(ConfigError, match="eval_mode='stateful'.*valid: eval_mode=windows"):
        make_config({"task": "bitflip", "eval_mode": "stateful"})


@pytest.mark.parametrize("seq_len", [5, 16, 1000])
def test_stateful_batches_cover_each_track_once_and_continue_row_by_row(seq_len):
    task, B = task_for(), 8
    batches = task.stateful_batches("val", B, seq_len)
    L = (len(task.val_ids) - 1) // B
    y = torch.cat([b.y for b in batches], dim=1)                 # (B, L)
    x = torch.cat([b.x for b in batches], dim=1)                 # (B, L)
    track = task.val_ids[:B * L + 1]
    assert torch.equal(y.reshape(-1), track[1:]) and torch.equal(x[:, 1:], y[:, :-1])
    for now, nxt in zip(batches, batches[1:]):
        assert torch.equal(now.y[:, -1], nxt.x[:, 0])


def test_stateful_train_tracks_are_as_long_as_val_tracks():
    task, B = task_for(test_split=True), 8
    val = sum(b.x.shape[1] for b in task.stateful_batches("val", B, 64))
    train = task.stateful_batches("train", B, 64)
    assert sum(b.x.shape[1] for b in train) == val
    assert int(train[-1].y[-1, -1]) == int(task.train_ids[-1])  # evenly spaced: the last track ends the split


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """A GRU trained briefly on a text of 8 random 10-letter words: which word a window is in
    is known only from context, so a cold start mid-word costs loss."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10)) for _ in range(8)]
    path = tmp_path_factory.mktemp("words") / "words.txt"
    path.write_text(" ".join(rng.choice(words) for _ in range(3000)), encoding="utf-8")
    cfg = make_config({"task": "text", "path": str(path), "hidden_size": 32, "batch_size": 16, "seq_len": 32,
                       "device": "cpu", "steps": 150, "eval_interval": 150, "lr": 1e-2, "eval_mode": "stateful"})
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    return trainer


def test_stateful_loss_does_not_depend_on_seq_len_but_windowed_loss_does(trained):
    task, B = trained.task, 16
    stateful = {T: trained.score(task.stateful_batches("val", B, T), "val")["val_loss"] for T in (32, 128)}
    windows = {T: trained.score(task.eval_batches("val", B, T, 8), "val", stateful=False)["val_loss"]
               for T in (32, 128)}
    assert abs(stateful[32] - stateful[128]) < 1e-4
    assert windows[32] - windows[128] > 0.01   # short windows pay for more cold starts
    assert stateful[128] < windows[128]


def test_stateful_loss_equals_one_pass_over_each_whole_track(trained):
    """The reference: nn.GRU over the full tracks at once, no windows, no carried state."""
    task, B = trained.task, 16
    whole = task.stateful_batches("val", B, 10**9)
    assert len(whole) == 1
    trained.model.eval()
    with torch.no_grad():
        logits, _ = trained.model(whole[0].x)                    # (B, L, V)
        reference = masked_cross_entropy(logits, whole[0]).item()
    assert trained.score(task.stateful_batches("val", B, 48), "val")["val_loss"] == pytest.approx(reference, abs=1e-5)


def test_a_test_split_too_short_for_seq_len_fails_before_training(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("abcde" * 61, encoding="utf-8")   # 305 characters: val 31, test 30
    cfg = tiny(task="text", path=str(corpus), seq_len=30)
    Trainer(cfg, progress=False)                         # val alone fits
    with pytest.raises(ConfigError, match="the test split has only 30"):
        Trainer(make_config({"test_split": True}, base=cfg), progress=False)
