"""Seed batching (charrnn/bench/seed_batch.py): member k of a K-member seed-batched GRU CharRNN, built
on the initial weights of the run of seed k and fed that run's batches, follows the separately
trained run (`Trainer.train_step`, backend fused: nn.GRU) step for step: each step's loss within
TOL and every parameter within TOL x max(1, |parameter|) after STEPS steps, with the trainer's
gradient clipping engaged or not. Batching is a benchmark only; nothing here trains a grid."""
from __future__ import annotations

import pytest
import torch

from charrnn.bench.seed_batch import SeedBatchRun, clip_per_member
from charrnn.config import ConfigError, make_config
from charrnn.run.train import Trainer

STEPS, TOL = 5, 1e-5
TINY = {"cell": "gru", "hidden_size": 16, "batch_size": 4, "seq_len": 8, "steps": STEPS, "eval_batches": 1,
        "sample_length": 0, "backend": "fused", "device": "cpu"}


def members(k: int = 3, **overrides):
    cfgs = [make_config({**TINY, **overrides, "seed": seed}) for seed in range(k)]
    return cfgs, [Trainer(cfg, progress=False) for cfg in cfgs]


@pytest.mark.parametrize("grad_clip", [5.0, 0.05], ids=["clip-idle", "clip-engaged"])
def test_a_batched_member_follows_its_separately_trained_run(grad_clip):
    cfgs, trainers = members(grad_clip=grad_clip, embed_size=12)
    batched = SeedBatchRun(cfgs, trainers[0].task, [t.model for t in trainers])
    clipped = 0
    for step in range(STEPS):
        separate = [t.train_step(step) for t in trainers]          # (loss, grad norm before clipping)
        clipped += sum(norm > grad_clip for _, norm in separate)
        assert batched.train_step(step) == pytest.approx([loss for loss, _ in separate], abs=TOL)
    assert (clipped > 0) == (grad_clip < 1)                          # the engaged case really clips
    for k, trainer in enumerate(trainers):
        mine = batched.model.member_state_dict(k)
        for name, want in trainer.model.state_dict().items():
            err = (mine[name] - want).abs().max().item()
            assert err <= TOL * max(1.0, want.abs().max().item()), (k, name, err)


def test_members_start_apart_and_train_apart():
    cfgs, trainers = members()
    batched = SeedBatchRun(cfgs, trainers[0].task, [t.model for t in trainers])
    first, second = batched.model.member_state_dict(0), batched.model.member_state_dict(1)
    assert not torch.equal(first["head.weight"], second["head.weight"])   # each seed's own init
    losses = batched.train_step(0)
    assert len(losses) == 3 and len(set(losses)) == 3                   # each seed's own batches


def test_per_member_clipping_scales_each_member_by_its_own_norm():
    p = torch.nn.Parameter(torch.zeros(2, 3))
    p.grad = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]])           # norms 5 and 0.5
    norms = clip_per_member([p], 1.0)
    assert norms.tolist() == pytest.approx([5.0, 0.5])
    assert p.grad.flatten().tolist() == pytest.approx([0.6, 0.8, 0.0, 0.3, 0.4, 0.0], abs=1e-6)


@pytest.mark.parametrize("overrides, why", [({"cell": "lstm"}, "cell"), ({"layers": 2}, "layers"),
                                            ({"optimizer": "sgd"}, "optimizer")])
def test_configs_it_cannot_batch_are_refused(overrides, why):
    cfgs = [make_config({**TINY, **overrides, "seed": seed}) for seed in range(2)]
    with pytest.raises(ConfigError, match=why):
        SeedBatchRun(cfgs, None, [])


def test_members_that_differ_in_more_than_the_seed_are_refused():
    cfgs = [make_config({**TINY, "seed": 0}), make_config({**TINY, "seed": 1, "lr": 0.1})]
    with pytest.raises(ConfigError, match="differ in their seed alone"):
        SeedBatchRun(cfgs, None, [])
