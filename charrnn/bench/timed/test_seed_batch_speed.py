"""Seed batching: runs/hour of five GRU CharRNN runs that differ only in their seed, trained
as one 5-member seed-batched model (`charrnn.bench.seed_batch`: stacked weights, one bmm per step,
per-member Adam state and clipping), against the same five runs trained separately (five `Trainer`s
on backend `fused`, nn.GRU, stepped in turn in this process), at H64 and H128 B32 T64.

One round = ROUND_STEPS training steps of each arm (data, forward, backward, clip, Adam; no
evaluation), in alternation (the separate runs in the round's setup, untimed by pytest-benchmark and
recorded here), so load drift hits both. Runs/hour are for runs of RUN_STEPS steps of training alone;
`ratio` is batched / separate runs/hour per round, median (> 1: batching gains).

Seed batching is NOT wired into the grid executor: the stand-alone probe it replaces measured a
5-member batch at 0.53-0.66x the tokens/s of five separate fused models on a 2-core CPU. This
benchmark is the measurement to rerun before changing that. `test` is a tiny correctness-only version.
"""
from __future__ import annotations

import time

import pytest

from charrnn.bench.seed_batch import SeedBatchRun
from charrnn.bench.timed.test_min_speed import rounds_info
from charrnn.bench.workloads import device_timer, sync
from charrnn.config import make_config
from charrnn.run.train import Trainer

pytestmark = pytest.mark.benchmark(timer=device_timer)

MEMBERS = 5
ROUNDS = 4
RUN_STEPS = 500          # a run's length for runs/hour (TrainConfig's default steps)
SHAPES = {"test": {"batch_size": 4, "seq_len": 8}, "default": {"batch_size": 32, "seq_len": 64}}
ROUND_STEPS = {"test": 2, "default": 10}


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("hidden", [64, 128], ids=lambda h: f"h{h}")
def test_seed_batched_gru_vs_separate_runs_per_hour(benchmark, profile_name, device, quiet, hidden):
    if profile_name not in ("test", "quick"):
        pytest.skip(f"profile {profile_name}: the seed-batching comparison is timed in `quick` (CPU)")
    profile = "test" if profile_name == "test" else "default"
    H = max(4, hidden // 8) if profile == "test" else hidden
    cfgs = [make_config({"task": "tinyshakespeare", "cell": "gru", "backend": "fused", "hidden_size": H,
                         "eval_batches": 1, "sample_length": 0, "device": device.type, "seed": seed,
                         **SHAPES[profile]}) for seed in range(MEMBERS)]
    separate = [Trainer(cfg, progress=False) for cfg in cfgs]
    batched = SeedBatchRun(cfgs, separate[0].task, [t.model for t in separate])
    steps = ROUND_STEPS[profile]
    step = [0, 0]                                   # next step of: batched, separate
    batched_s: list[float] = []
    separate_s: list[float] = []

    def timed(arm: int, into: list[float]) -> None:
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            if arm == 0:
                batched.train_step(step[0])
            else:
                for trainer in separate:
                    trainer.train_step(step[1])
            step[arm] += 1
        sync(device)
        into.append(time.perf_counter() - start)

    waited = {} if benchmark.disabled else quiet()
    benchmark.pedantic(timed, args=(0, batched_s), setup=lambda: timed(1, separate_s),
                       rounds=1 if benchmark.disabled else ROUNDS, warmup_rounds=0 if benchmark.disabled else 1)
    warm = 0 if benchmark.disabled else 1
    per_hour = {arm: [MEMBERS * 3600 / (s / steps * RUN_STEPS) for s in seconds[warm:]]
                for arm, seconds in (("batched", batched_s), ("separate", separate_s))}
    cfg = cfgs[0]
    benchmark.extra_info.update({
        "shape": f"train-seed-batch-k{MEMBERS}-h{hidden}", "backend": "seed_batched", "paired_with": "fused",
        "cell": "gru", "hidden": H, "batch": cfg.batch_size, "seq_len": cfg.seq_len, "members": MEMBERS,
        "steps_per_round": steps, "run_steps": RUN_STEPS,
        "batched_runs_per_hour": per_hour["batched"], "separate_runs_per_hour": per_hour["separate"],
        "batched_tokens_per_s": [MEMBERS * cfg.batch_size * cfg.seq_len * steps / s for s in batched_s[warm:]],
        "separate_tokens_per_s": [MEMBERS * cfg.batch_size * cfg.seq_len * steps / s for s in separate_s[warm:]],
        **rounds_info(batched_s, separate_s, warm, "seed-batched/separate runs per hour"), **waited})
