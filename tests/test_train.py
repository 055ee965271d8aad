"""The training loop: determinism, resume, every task x cell, hidden-state modes, divergence."""
import math

import pytest
import torch

from charrnn import registry
from charrnn.config import CHOICES, CUDA_ONLY, ConfigError, make_config
from charrnn.run.train import COSINE_FLOOR, Diverged, Trainer, lr_at

TINY = {"hidden_size": 16, "batch_size": 4, "seq_len": 16, "eval_batches": 2, "device": "cpu"}


def tiny(**overrides):
    return make_config({**TINY, **overrides})


@pytest.mark.parametrize("task", [t for t in CHOICES["task"] if t != "text"])
@pytest.mark.parametrize("cell", CHOICES["cell"])
def test_every_task_trains_three_steps_with_every_cell(task, cell):
    backend = "fused" if cell in registry.BACKENDS["fused"].cells else "scan"  # min cells: the scan
    result = Trainer(tiny(task=task, cell=cell, backend=backend, steps=3, eval_interval=3), progress=False).fit()
    assert len(result.train_losses) == 3
    assert all(math.isfinite(x) for x in result.train_losses)
    assert math.isfinite(result.final["final_val_loss"])
    if task in ("arithmetic", "bitflip"):
        assert 0.0 <= result.final["final_val_accuracy"] <= 1.0


def test_text_task_trains_on_any_utf8_file(tmp_path):
    corpus = tmp_path / "poem.txt"
    corpus.write_text("Grüße aus Köln — ünïcödé ✓\n" * 200, encoding="utf-8")
    result = Trainer(tiny(task="text", path=str(corpus), steps=3, eval_interval=3), progress=False).fit()
    assert len(result.train_losses) == 3


def test_first_loss_is_near_ln_vocab():
    trainer = Trainer(tiny(hidden_size=64, steps=1, eval_interval=1), progress=False)
    loss, _ = trainer.train_step(0)
    assert abs(loss - math.log(65)) < 0.15


def test_same_config_and_seed_give_bit_identical_losses():
    cfg = tiny(steps=8, eval_interval=4, hidden_init="random")
    first = Trainer(cfg, progress=False).fit().train_losses
    second = Trainer(cfg, progress=False).fit().train_losses
    assert first == second


def test_different_seeds_give_different_losses():
    a = Trainer(tiny(steps=3, eval_interval=3, seed=0), progress=False).fit().train_losses
    b = Trainer(tiny(steps=3, eval_interval=3, seed=1), progress=False).fit().train_losses
    assert a != b


@pytest.mark.parametrize("hidden_init,lr_schedule",   # one in `make test`, every protocol in `make test-all`
                         [pytest.param(h, s, marks=() if (h, s) == ("zero", "constant") else pytest.mark.slow)
                          for h, s in [(h, "constant") for h in CHOICES["hidden_init"]] + [("zero", "cosine")]])
def test_resumed_run_matches_uninterrupted_run(tmp_path, hidden_init, lr_schedule):
    cfg = tiny(steps=12, eval_interval=4, hidden_init=hidden_init, cell="lstm", lr_schedule=lr_schedule)
    full = Trainer(cfg, progress=False).fit()
    first = Trainer(cfg, checkpoint_dir=tmp_path, progress=False)
    for step in range(8):  # train part of the way, checkpoint as an eval point would
        first.train_step(step)
        first.step = step + 1
    first.save_checkpoint()
    resumed = Trainer(cfg, progress=False)
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    result = resumed.fit()
    assert result.start_step == 8
    assert result.train_losses == full.train_losses[8:]
    assert result.final["final_val_loss"] == full.final["final_val_loss"]


def test_constant_schedule_keeps_lr_and_cosine_decays_it_to_a_tenth():
    steps = 50
    constant = [lr_at(tiny(steps=steps, lr=0.01), s) for s in range(steps)]
    cosine = [lr_at(tiny(steps=steps, lr=0.01, lr_schedule="cosine"), s) for s in range(steps)]
    assert constant == [0.01] * steps
    assert cosine[0] == pytest.approx(0.01) and cosine[-1] == pytest.approx(0.01 * COSINE_FLOOR)
    assert all(a > b for a, b in zip(cosine, cosine[1:]))
    assert cosine[steps // 2] == pytest.approx(0.01 * (1 + COSINE_FLOOR) / 2, rel=0.05)


def test_optimizer_steps_with_the_scheduled_lr():
    cfg = tiny(steps=10, lr=0.01, lr_schedule="cosine")
    trainer = Trainer(cfg, progress=False)
    for step in range(4):
        trainer.train_step(step)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [lr_at(cfg, 3)]


def test_epoch_modes_carry_hidden_within_an_epoch_and_reset_at_its_start():
    trainer = Trainer(tiny(hidden_init="epoch_random", steps=4), progress=False)
    trainer.train_step(0)
    carried = trainer.initial_hidden(1)
    assert carried is not None and not carried.requires_grad
    assert (carried == trainer.hidden).all()
    fresh = trainer.initial_hidden(trainer.batches_per_epoch)
    assert not (fresh == trainer.hidden).all()


def test_zero_mode_starts_every_batch_from_zeros():
    trainer = Trainer(tiny(hidden_init="zero", steps=2), progress=False)
    trainer.train_step(0)
    assert trainer.hidden is None
    assert (trainer.initial_hidden(1) == 0).all()


def test_nan_loss_raises_diverged_with_step():
    cfg = tiny(cell="vanilla", backend="loop", activation="identity", optimizer="sgd",
               lr=1e6, grad_clip=0, steps=50)
    with pytest.raises(Diverged, match=r"diverged at step \d+"):
        Trainer(cfg, progress=False).fit()


@pytest.mark.parametrize("backend", [  # compiling backends (torch.compile: seconds per case) in `make test-all`
    pytest.param(b, marks=pytest.mark.slow if b in registry.compiling_backends() and b != "loop_native" else ())
    for b in CHOICES["backend"] if b not in CUDA_ONLY and b != "fused" and "gru" in registry.BACKENDS[b].cells])
def test_every_cpu_backend_trains_like_fused_from_the_same_weights(backend):
    cfg = tiny(cell="gru", steps=3, eval_interval=3, hidden_init="epoch_zero")
    fused = Trainer(cfg, progress=False)
    custom = Trainer(make_config({"backend": backend}, base=cfg), progress=False)
    custom.model.load_state_dict(fused.model.state_dict())
    a, b = fused.fit(), custom.fit()
    assert b.train_losses == pytest.approx(a.train_losses, abs=1e-5)
    assert b.final["final_val_loss"] == pytest.approx(a.final["final_val_loss"], abs=1e-5)


@pytest.mark.parametrize("backend", sorted(CUDA_ONLY))
def test_cuda_only_backend_on_a_machine_without_cuda_is_bad_input(backend, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=f"backend='{backend}': .*; device is cpu; valid on cpu: fused, loop"):
        Trainer(make_config({**TINY, "device": "auto", "backend": backend}), progress=False)


def test_checkpoint_from_another_config_is_refused(tmp_path):
    trainer = Trainer(tiny(steps=2), checkpoint_dir=tmp_path, progress=False)
    trainer.save_checkpoint()
    other = Trainer(tiny(steps=2, seed=5), progress=False)
    with pytest.raises(ValueError, match="belongs to config"):
        other.load_checkpoint(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("grad_clip,expected", [(0.0, 0.0), (1e-4, 1.0), (1e6, 0.0)])
def test_clip_fraction_is_the_share_of_steps_where_clipping_changed_the_gradient(grad_clip, expected):
    class Sink:
        def __init__(self):
            self.logged = []

        def log_metrics(self, metrics, step):
            self.logged.append(metrics)

        def log_artifact(self, *args):
            pass

        def flush(self):
            pass

    sink = Sink()
    result = Trainer(tiny(steps=4, eval_interval=2, grad_clip=grad_clip), sink=sink, progress=False).fit()
    assert result.final["final_clip_fraction"] == expected
    assert [m["clip_fraction"] for m in sink.logged if "clip_fraction" in m] == [expected, expected]
